"""Opt-in: the kubernetes backend against a real cluster and the real helm (`pytest -m k8s`).

Needs KUBECONFIG (k3s: /etc/rancher/k3s/k3s.yaml) and helm on PATH; skipped with the reason otherwise. CI runs it
on k3s (.github/workflows/k8s.yaml). It applies a two-hub catalog with the real z2jh 4.4.0 chart, waits for both
hubs' REST APIs, creates a student through the API, spawns and stops their server, and deletes both hubs.

How the test reaches the hubs: NodePort. There is no DNS for https://{hub}.{domain} on a CI runner and no ingress
controller for the rendered `nginx` class on k3s (it ships traefik); `kubectl port-forward` needs a background
process per hub, and the API server's service proxy eats the Authorization header the hub token travels in.
So the test lays `proxy.service.type: NodePort` over the rendered values (`extra_values`, the same hook a site
uses for its own choices) and points `hub_url` at a node address. Storage is `ephemeral`, so no provisioner is
needed for student volumes (the hub database uses k3s's local-path default class).

Knobs: HUBFLEET_K8S_NODE_ADDRESS (default: the first node's InternalIP), HUBFLEET_K8S_TEST_IMAGE (default the
chart's own small singleuser sample image).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.k8s

if not os.environ.get("KUBECONFIG"):
    pytest.skip("needs a real cluster: set KUBECONFIG (e.g. k3s's /etc/rancher/k3s/k3s.yaml)", allow_module_level=True)
if shutil.which("helm") is None:
    pytest.skip("needs helm 3 on PATH", allow_module_level=True)
pytest.importorskip("kubernetes", reason="needs the kubernetes extra: pip install 'hubfleet[kubernetes]'")

from hubfleet.backends.kubernetes.backend import KubernetesBackend, connect  # noqa: E402
from hubfleet.backends.kubernetes.cluster import NotFound  # noqa: E402
from hubfleet.catalog import load_catalog  # noqa: E402
from hubfleet.hubapi import HubClient  # noqa: E402
from hubfleet.plan import Plan, diff, plan  # noqa: E402
from hubfleet.plan.diff import Action, Kind  # noqa: E402

DATE = dt.date(2026, 11, 1)
HUBS = ("e2ea-2026j", "e2eb-2026j")
IMAGE = os.environ.get("HUBFLEET_K8S_TEST_IMAGE", "quay.io/jupyterhub/k8s-singleuser-sample:4.4.0")
STUDENT = "e2e-student"


def write_catalog(root: Path) -> Path:
    (root / "courses").mkdir(parents=True)
    (root / "fleet.yaml").write_text(textwrap.dedent(f"""\
        fleet:
          name: e2e
          backend: kubernetes
          domain: hubs.invalid
          defaults:
            image: "{IMAGE}"
            resources: {{cpu: "0.1", memory: 256M}}
            storage: {{layout: ephemeral}}
            container_user: jovyan
        """))
    for code in ("E2EA", "E2EB"):
        (root / "courses" / f"{code}.yaml").write_text(textwrap.dedent(f"""\
            code: {code}
            title: End-to-end {code}
            presentations:
              - {{id: 2026J, start: 2026-10-01, end: 2027-06-01, expected_students: 2, enrolment: [{{users: [{STUDENT}]}}]}}
            """))
    return root


def node_address(backend: KubernetesBackend) -> str:
    if os.environ.get("HUBFLEET_K8S_NODE_ADDRESS"):
        return os.environ["HUBFLEET_K8S_NODE_ADDRESS"]
    for node in backend.cluster.list("v1", "Node"):
        for address in (node.get("status") or {}).get("addresses") or []:
            if address["type"] == "InternalIP":
                return address["address"]
    return "127.0.0.1"


def node_port(backend: KubernetesBackend, hub: str) -> int:
    service = backend.cluster.get("v1", "Service", hub, "proxy-public")
    return next(p["nodePort"] for p in service["spec"]["ports"] if p["name"] == "http")


def wait_for(what: str, check, timeout: float = 300, every: float = 3):
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - keep polling; reported on timeout
            last = exc
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:g}s (last error: {last})")


def delete_hubs(backend: KubernetesBackend, spec) -> None:
    report = backend.apply(Plan(actions=tuple(Action(kind=Kind.delete, hub=h) for h in HUBS)), spec)
    assert report.ok, [r.message for r in report.failures]

    def gone() -> bool:
        for hub in HUBS:
            try:
                backend.cluster.get("v1", "Namespace", None, hub)
                return False
            except NotFound:
                pass
        return True

    wait_for("namespaces deleted", gone)  # a real namespace sits in Terminating for a while


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = write_catalog(tmp_path_factory.mktemp("k8s") / "catalog")
    spec = plan(load_catalog(root).catalog, DATE)
    assert [h.name for h in spec.hubs] == list(HUBS)
    holder: dict = {}
    backend = connect(
        fleet="e2e",
        concurrency=2,
        extra_values={"proxy": {"service": {"type": "NodePort"}}},
        hub_url=lambda hub: f"http://{holder['node']}:{node_port(backend, hub)}/",
        helm_timeout=900,
        api_timeout=10,
    )
    holder["node"] = node_address(backend)
    leftovers = [h for h in HUBS if h in backend.observe().hubs]
    if leftovers:  # an earlier run that died before its teardown
        delete_hubs(backend, spec)
    yield backend, spec
    delete_hubs(backend, spec)


def test_apply_reaches_both_hubs_and_spawns_a_server(fleet):
    backend, spec = fleet
    report = backend.apply(diff(spec, backend.observe()), spec, lambda a, m: print(f"{a.hub}: {m}", flush=True))
    assert report.ok, [r.message for r in report.failures]
    assert diff(spec, backend.observe()) == Plan()  # the real helm and API server agree with the record

    for hub in spec.hubs:
        ep = backend.endpoint(hub.name)
        with HubClient(ep.api_url, ep.token, timeout=10) as client:
            wait_for(f"{hub.name} API", lambda: client.info().get("version"))
            client.create_users([STUDENT])
            presentation = hub.presentations[0]
            if client.group(presentation.group) is None:
                client.create_group(presentation.group, [STUDENT])
            else:
                client.add_group_members(presentation.group, [STUDENT])
            client.start_server(STUDENT, {"profile": hub.profiles[0].name})
            model = client.wait_ready(STUDENT, timeout=600)
            assert model["ready"]
            client.stop_server(STUDENT)
            wait_for(f"{hub.name} server stopped",
                     lambda: not (client.server_status(STUDENT) or {}).get("ready"), timeout=180)

    rows = {r.name: r for r in backend.status(spec)}
    assert all(r.up for r in rows.values()), rows
    assert all(r.users is not None and r.users >= 1 for r in rows.values())
