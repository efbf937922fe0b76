"""Hosts of their own (issue 16, item 1), without a fleet: the local URL layout, the front door's route store (run
in node, as CHP loads it), and the Kubernetes values (a wildcard host per hub, with TLS). The real fleet and the
attack in a browser are in tests/security/test_origins.py; the front door's routing in tests/test_local_fleet.py."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hubfleet.backends.kubernetes.material import read_material
from hubfleet.backends.kubernetes.values import render_values
from hubfleet.backends.local.frontdoor import HOST_STORE
from hubfleet.backends.local.hosts import FleetHosts
from hubfleet.catalog import load_catalog
from hubfleet.plan import plan

K8S_CATALOG = Path(__file__).parent / "fixtures" / "k8s-catalog"


def test_local_layout_gives_portal_hubs_and_students_hosts_of_their_own() -> None:
    hosts = FleetHosts("localhost", 8123)
    assert hosts.portal_url == "http://portal.localhost:8123"
    assert hosts.hub_url("tm351-2026j") == "http://tm351-2026j.localhost:8123/"
    assert FleetHosts("hubs.example.org", 80).hub_url("m269") == "http://m269.hubs.example.org/"
    # For clients without *.localhost: one /etc/hosts line per name (hosts files have no wildcards).
    assert hosts.hosts_lines(["m269"], {"m269": ["alice"]}) == [
        "127.0.0.1 localhost", "127.0.0.1 portal.localhost", "127.0.0.1 m269.localhost", "127.0.0.1 alice.m269.localhost",
    ]  # fmt: skip
    # A username that is no DNS label gets JupyterHub's own name for its host (the hub routes by that name).
    dotted = hosts.user_host("m269", "a.smith")
    assert dotted.endswith(".m269.localhost") and dotted.count(".") == 2 and dotted != "a.smith.m269.localhost"


def test_hosts_command_prints_lines_for_clients_that_cannot_resolve_them(two_course_catalog: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "hubfleet.cli.main", "hosts", str(two_course_catalog), "--users",
                          "--at", "2026-11-01"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[:2] == ["127.0.0.1 localhost", "127.0.0.1 portal.localhost"]
    assert {"127.0.0.1 tm351-2026j.localhost", "127.0.0.1 alice.tm351-2026j.localhost",
            "127.0.0.1 alice.m269-2026j.localhost", "127.0.0.1 tina.tm351-2026j.localhost"} <= set(lines)  # fmt: skip


def _lookups(routes: dict[str, dict], paths: list[str]) -> list[str | None]:
    """Load the front door's store in node, add ``routes``, look up each ``/<host>/<path>`` as CHP does."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed for the front door (configurable-http-proxy); install nodejs")
    script = f"""
      const Store = require({json.dumps(str(HOST_STORE))});
      const store = new Store();
      (async () => {{
        for (const [path, data] of Object.entries({json.dumps(routes)})) await store.add(path, data);
        const out = [];
        for (const path of {json.dumps(paths)}) {{ const r = await store.getTarget(path); out.push(r ? r.data.target : null); }}
        console.log(JSON.stringify(out));
      }})();
    """
    run = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=30, check=True)
    return json.loads(run.stdout)


def test_front_door_routes_a_hubs_students_hosts_to_that_hub_only() -> None:
    routes = {
        "/": {"target": "portal-default"},
        "/portal.localhost": {"target": "portal"},
        "/tm351.localhost": {"target": "tm351", "subdomains": True},
        "/m269.localhost": {"target": "m269", "subdomains": True},
    }
    assert _lookups(routes, [
        "/tm351.localhost/hub/login",
        "/alice.tm351.localhost/user/alice/lab",
        "/ALICE.TM351.localhost/user/alice/",      # host names are case-insensitive
        "/alice.m269.localhost/user/alice/",
        "/x.alice.tm351.localhost/",               # one label only: not a host JupyterHub gives out
        "/evil.portal.localhost/portal/",          # the portal takes no subdomains
        "/localhost/",
        "/tm351.localhost.evil.example/",
    ]) == ["tm351", "tm351", "tm351", "m269", "portal-default", "portal-default", "portal-default", "portal-default"]  # fmt: skip


def test_kubernetes_hub_has_a_wildcard_host_for_its_students_with_tls() -> None:
    catalog = load_catalog(K8S_CATALOG).catalog
    fleet = catalog.fleet.model_copy(update={"backend": "kubernetes"})
    spec = plan(catalog.model_copy(update={"fleet": fleet}), dt.date(2026, 7, 1))
    assert spec.hubs
    for hub in spec.hubs:
        values = render_values(hub, spec, material=read_material(K8S_CATALOG, spec))
        host = f"{hub.name}.{spec.domain}"
        # JupyterHub puts each user's server on {user}.{host}; the chart then runs its proxy with --host-routing.
        assert values["hub"]["config"]["JupyterHub"]["subdomain_host"] == f"https://{host}"
        assert values["ingress"]["hosts"] == [host, f"*.{host}"]
        assert values["ingress"]["tls"] == [{"hosts": [host, f"*.{host}"], "secretName": f"{hub.name}-tls"}]


@pytest.fixture
def portal(tmp_path: Path):  # noqa: ANN201
    """The portal app in process, as the fleet runs it: fleet.json names its own host."""
    from fastapi.testclient import TestClient

    from hubfleet.backends.local.members import hash_password
    from hubfleet.web.portal import PortalSource, create_app

    state = tmp_path / "state"
    state.mkdir()
    (state / "fleet.json").write_text(json.dumps({"fleet": "f", "portal_url": "http://portal.localhost:8000",
                                                  "front_door": "http://portal.localhost:8000", "hubs": []}))  # fmt: skip
    (state / "passwords.json").write_text(json.dumps({"alice": hash_password("alice-pw")}))
    (state / "passwords.json").chmod(0o600)
    return TestClient(create_app(PortalSource(state)), base_url="http://portal.localhost:8000", follow_redirects=False)


def test_portal_serves_its_own_host_only_and_redirects_any_other(portal) -> None:  # noqa: ANN001
    assert portal.get("/").status_code == 200
    for other in ("http://localhost:8000", "http://alice.tm351.localhost:8000", "http://127.0.0.1:8000"):
        moved = portal.get(f"{other}/portal/login?next=/portal/")
        assert moved.status_code == 307 and moved.headers["location"] == "http://portal.localhost:8000/portal/login?next=/portal/"
    # The provider's machine endpoints answer the hubs at the front door's address, whatever the host.
    assert portal.post("http://127.0.0.1:8000/portal/oauth/token", data={"grant_type": "authorization_code"}).status_code == 401
    assert portal.get("http://127.0.0.1:8000/healthz").status_code == 200


def test_portal_forms_refuse_posts_from_a_sibling_host(portal) -> None:  # noqa: ANN001
    """A student's host (alice.tm351.localhost) is same-site with the portal for a browser on some setups, and may
    toss cookies onto a shared parent domain: only the portal's own pages may post its forms."""
    from conftest import portal_sign_in

    forged = portal_sign_in(portal, "alice", "alice-pw", headers={"Sec-Fetch-Site": "same-site"})
    assert forged.status_code == 403 and "hubfleet-portal-session" not in forged.cookies
    own = portal_sign_in(portal, "alice", "alice-pw", headers={"Sec-Fetch-Site": "same-origin"})
    assert own.status_code == 303
