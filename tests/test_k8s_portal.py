"""The portal in the cluster (``auth: embedded`` on Kubernetes), as rendered: what a platform team applies from
``_fleet/`` and what each hub is told about it must agree with what the portal serves. The sign-in itself, through
the real portal pod and two chart hubs, is tests/z2jh/test_z2jh_portal.py."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
import typer

from hubfleet.backends.kubernetes import portal as k8s_portal
from hubfleet.backends.kubernetes.controlplane import controller_objects
from hubfleet.backends.kubernetes.fleet import DEFAULT_OPTIONS, RenderOptions, options_for, render_fleet
from hubfleet.backends.kubernetes.validation import validate_manifest
from hubfleet.backends.kubernetes.values import render_values
from hubfleet.catalog import load_catalog
from hubfleet.plan import plan
from hubfleet.web.catalog_state import CatalogState
from hubfleet.web.directory import UserDirectory

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "university"
DATE = dt.date(2026, 11, 1)


def _spec(auth: dict | None = None):
    loaded = load_catalog(EXAMPLE)
    fleet = loaded.catalog.fleet
    fleet = type(fleet).model_validate({**fleet.model_dump(), "backend": "kubernetes", **({"auth": auth} if auth else {})})
    return loaded, plan(loaded.catalog.model_copy(update={"fleet": fleet}), DATE)


def _portal(spec, options: RenderOptions = DEFAULT_OPTIONS) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in k8s_portal.portal_objects(spec, options_for(spec, options))}


def test_embedded_auth_renders_the_portal_into_the_fleet_namespace_and_every_object_passes_strict_validation():
    pytest.importorskip("kubernetes_validate")
    _, spec = _spec()
    objects = render_fleet(spec)
    portal = {(o["kind"], o["metadata"]["name"]) for o in objects if "portal" in o["metadata"]["name"]}
    assert portal == {("ServiceAccount", "hubfleet-portal"), ("Secret", "hubfleet-portal"),
                      ("Secret", "hubfleet-portal-clients"), ("PersistentVolumeClaim", "hubfleet-portal"),
                      ("Deployment", "hubfleet-portal"), ("Service", "hubfleet-portal"),
                      ("Ingress", "hubfleet-portal")}
    for obj in objects + controller_objects(options_for(spec, DEFAULT_OPTIONS)):
        assert validate_manifest(obj, "1.32.0") == [], obj["metadata"]["name"]
    # Secrets are placeholders: never a value in what goes to Git.
    assert not [o for o in objects if o["kind"] == "Secret" and (o.get("data") or o.get("stringData"))]


def test_an_institutional_idp_renders_no_portal():
    _, spec = _spec({"type": "oidc", "issuer": "https://login.example.ac.uk/realms/uni", "client_id": "hubfleet"})
    assert not [o for o in render_fleet(spec) if "portal" in o["metadata"]["name"]]


def test_the_portal_may_only_scale_hubs_hub_and_proxy_deployments_in_hub_namespaces():
    """The waker's rights, as the API server's RBAC authorizer would read the rendered objects: get/update/patch
    of the two Deployments named hub and proxy in each hub namespace, and nothing else anywhere."""
    from hubfleet.backends.kubernetes.manifests import render_manifests
    from hubfleet.backends.kubernetes.material import read_material
    from hubfleet.testing.rbac import Request, allowed

    _, spec = _spec()
    options = options_for(spec, DEFAULT_OPTIONS)
    everything = render_fleet(spec) + controller_objects(options)
    for hub in spec.hubs:
        everything += render_manifests(hub, spec, options, read_material(EXAMPLE, spec))
    may = lambda req: allowed(everything, options.system_namespace, k8s_portal.NAME, req)  # noqa: E731
    hubs = [h.name for h in spec.hubs]
    assert len(hubs) >= 2
    for ns in hubs:
        for name in ("hub", "proxy"):
            for verb in ("get", "update", "patch"):
                assert may(Request(verb, "apps", "deployments", ns, name)), (verb, ns, name)
            for verb in ("delete",):
                assert not may(Request(verb, "apps", "deployments", ns, name))
        for verb in ("list", "watch", "create"):  # no name to restrict to: never granted
            assert not may(Request(verb, "apps", "deployments", ns))
        assert not may(Request("get", "apps", "deployments", ns, "user-scheduler"))
        assert not may(Request("update", "apps", "statefulsets", ns, "hub"))
        for group, resource in (("", "secrets"), ("", "pods"), ("", "configmaps"), ("", "services"),
                                ("rbac.authorization.k8s.io", "rolebindings"), ("discovery.k8s.io", "endpointslices")):
            for verb in ("get", "list", "create", "update", "delete"):
                assert not may(Request(verb, group, resource, ns, "hub")), (verb, resource, ns)
    # Nothing in the fleet's own namespace (its Secrets, the controller's Lease), another namespace, or cluster-wide.
    for ns in (options.system_namespace, "kube-system", "default", None):
        for name in ("hub", "proxy", "hubfleet-controller"):
            assert not may(Request("get", "apps", "deployments", ns, name))
            assert not may(Request("update", "apps", "deployments", ns, name))
        assert not may(Request("get", "", "secrets", ns, k8s_portal.NAME))
    assert not may(Request("list", "", "namespaces", None))
    # The controller binds the role in a new hub namespace: it holds every right the role grants there.
    for ns in hubs:
        assert allowed(everything, options.system_namespace, "hubfleet-controller",
                       Request("update", "apps", "deployments", ns, "hub"))
    pod = _portal(spec)[("Deployment", k8s_portal.NAME)]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == k8s_portal.NAME and pod["automountServiceAccountToken"] is True
    (container,) = [c for c in pod["containers"] if c["name"] == "portal"]
    assert "--wake" in container["command"]
    assert container["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]


def test_every_hub_ingress_falls_back_to_its_namespaces_waker_service():
    from hubfleet.backends.kubernetes.manifests import render_manifests
    from hubfleet.backends.kubernetes.material import read_material

    _, spec = _spec()
    material = read_material(EXAMPLE, spec)
    for hub in spec.hubs:
        values = render_values(hub, spec, material=material)
        assert values["ingress"]["annotations"]["nginx.ingress.kubernetes.io/default-backend"] == "hubfleet-waker"
        (svc,) = [o for o in render_manifests(hub, spec, material=material) if o["kind"] == "Service"]
        assert svc["metadata"]["name"] == "hubfleet-waker" and "selector" not in svc["spec"]
        assert svc["spec"]["ports"][0]["targetPort"] == k8s_portal.PORT


def test_a_servicemonitor_selecting_hubfleet_finds_one_metrics_port():
    _, spec = _spec()
    labelled = [o for o in render_fleet(spec) if o["kind"] == "Service"
                and (o["metadata"].get("labels") or {}).get("app.kubernetes.io/name") == "hubfleet"]
    (svc,) = labelled
    assert svc["metadata"]["labels"]["app.kubernetes.io/component"] == "portal"
    assert [p["name"] for p in svc["spec"]["ports"]] == ["metrics"]
    deploy = _portal(spec)[("Deployment", k8s_portal.NAME)]
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    (container,) = [c for c in deploy["spec"]["template"]["spec"]["containers"] if c["name"] == "portal"]
    assert svc["spec"]["ports"][0]["targetPort"] in [p["containerPort"] for p in container["ports"]]


def test_the_deployment_runs_a_portal_command_the_cli_accepts_with_the_controllers_catalog():
    from hubfleet.cli.main import app

    for options in (DEFAULT_OPTIONS, RenderOptions(catalog_git_repo="https://git.example.ac.uk/platform/fleet.git",
                                                   catalog_git_path="catalog")):
        _, spec = _spec()
        pod = _portal(spec, options)[("Deployment", k8s_portal.NAME)]["spec"]["template"]["spec"]
        (container,) = [c for c in pod["containers"] if c["name"] == "portal"]
        command = container["command"]
        assert command[:3] == ["hubfleet", "portal", "serve"]
        group = typer.main.get_command(app).commands["portal"]
        ctx = group.commands["serve"].make_context("serve", list(command[3:]))  # UsageError on an unknown flag
        assert ctx.params["port"] == k8s_portal.PORT and ctx.params["public_url"] == f"https://portal.{spec.domain}"
        controller = [o for o in controller_objects(options_for(spec, options)) if o["kind"] == "Deployment"][0]
        (ctl,) = [c for c in controller["spec"]["template"]["spec"]["containers"] if c["name"] == "controller"]
        # The same catalog the controller reconciles, from the same volume (mounted below /srv/hubfleet here).
        (ctl_mount,) = [m["mountPath"] for m in ctl["volumeMounts"] if m["name"] == "catalog"]
        assert str(ctx.params["catalog"]) == ctl["command"][-1].replace(ctl_mount, k8s_portal.CATALOG_DIR, 1)
        assert {m["mountPath"]: m["name"] for m in container["volumeMounts"]}[k8s_portal.CATALOG_DIR] == "catalog"
        mounted = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"] for v in pod["volumes"]}
        for flag in ("state", "secrets", "clients"):
            assert mounted[str(ctx.params[flag])] in volumes


SMALL = """\
fleet:
  name: portaltest
  backend: kubernetes
  domain: hubs.example.ac.uk
  auth: {type: embedded}
  defaults: {storage: {layout: ephemeral}}
courses:
  - code: A101
    title: Course A
    presentations: [{id: 2026J, start: 2026-10-01, end: 2027-06-01, enrolment: [{users: [alice, bob]}]}]
  - code: B202
    title: Course B
    presentations: [{id: 2026J, start: 2026-10-01, end: 2027-06-01, enrolment: [{users: [alice]}]}]
"""


def test_each_hub_signs_in_with_the_client_the_portal_registers_for_it(tmp_path):
    # A small catalog: the example's thousands of students would each get a scrypt hash here.
    (tmp_path / "fleet.yaml").write_text(SMALL)
    loaded = load_catalog(tmp_path / "fleet.yaml")
    spec = plan(loaded.catalog, DATE)
    assert len(spec.hubs) == 2
    clients = tmp_path / "clients"  # the mounted clients Secret: one file per hub
    clients.mkdir()
    for hub in spec.hubs:
        (clients / hub.name).write_text(f"{hub.name}-secret".encode().hex())
    public = k8s_portal.public_url(spec.domain)
    CatalogState(tmp_path / "fleet.yaml", tmp_path / "state", public, clients, lambda: DATE).write(loaded, spec)
    directory = UserDirectory(tmp_path / "state")
    service = f"http://{k8s_portal.NAME}.{DEFAULT_OPTIONS.system_namespace}.svc.cluster.local:{k8s_portal.PORT}"
    for hub in spec.hubs:
        oauth = render_values(hub, spec)["hub"]["config"]["GenericOAuthenticator"]
        client = directory.client(oauth["client_id"])
        assert client is not None, hub.name
        assert client.redirect_uri == oauth["oauth_callback_url"] == f"https://{hub.name}.{spec.domain}/hub/oauth_callback"
        assert client.secret == (clients / hub.name).read_text()
        # The browser goes to the portal's host; the hub's own calls stay inside the cluster.
        assert oauth["authorize_url"] == f"{public}/portal/oauth/authorize"
        assert oauth["token_url"] == f"{service}/portal/oauth/token"
        assert oauth["userdata_url"] == f"{service}/portal/oauth/userinfo"
        assert "claim_groups_key" not in oauth and oauth["manage_groups"] is False
    # A hub without a mirrored client secret yet is not a client (its logins fail at the portal, not elsewhere).
    (clients / spec.hubs[0].name).unlink()
    CatalogState(tmp_path / "fleet.yaml", tmp_path / "state", public, clients, lambda: DATE).write(loaded, spec)
    assert UserDirectory(tmp_path / "state").client(spec.hubs[0].name) is None


GOLDEN = Path(__file__).parent / "golden" / "k8s" / "embedded-portal.yaml"


def test_golden_portal_objects_and_hub_sign_in_config(tmp_path):
    """The portal's `_fleet/` objects and each hub's GenericOAuthenticator config for a small embedded fleet.
    Regenerate with ``UPDATE_GOLDEN=1 pytest tests/test_k8s_portal.py -k golden``."""
    from hubfleet.backends.kubernetes.gitops import dump_yaml

    (tmp_path / "fleet.yaml").write_text(SMALL)
    spec = plan(load_catalog(tmp_path / "fleet.yaml").catalog, DATE)
    docs = k8s_portal.portal_objects(spec, options_for(spec, DEFAULT_OPTIONS)) + [
        {hub.name: render_values(hub, spec)["hub"]["config"]["GenericOAuthenticator"] for hub in spec.hubs}]
    text = dump_yaml(docs)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8"), "UPDATE_GOLDEN=1 pytest tests/test_k8s_portal.py -k golden"


def test_hubs_use_only_current_oauthenticator_option_names(tmp_path):
    from oauthenticator.generic import GenericOAuthenticator
    from test_k8s_oidc import deprecated_names

    (tmp_path / "fleet.yaml").write_text(SMALL)
    spec = plan(load_catalog(tmp_path / "fleet.yaml").catalog, DATE)
    for hub in spec.hubs:
        oauth = set(render_values(hub, spec)["hub"]["config"]["GenericOAuthenticator"])
        assert oauth & deprecated_names() == set()
        assert oauth <= set(GenericOAuthenticator.class_traits(config=True))  # a typo would be ignored silently


def test_the_fleet_objects_apply_once_and_leaving_embedded_auth_removes_the_portal_but_keeps_its_data(tmp_path):
    from hubfleet.backends.kubernetes.backend import KubernetesBackend
    from hubfleet.backends.kubernetes.fake import FakeCluster
    from hubfleet.backends.kubernetes.helm import FakeHelm
    from test_k8s_backend import PV

    (tmp_path / "fleet.yaml").write_text(SMALL)
    catalog = load_catalog(tmp_path / "fleet.yaml").catalog
    spec = plan(catalog, DATE)
    cluster = FakeCluster(extra_kinds=[PV])
    backend = KubernetesBackend(cluster, FakeHelm(cluster), catalog_root=tmp_path / "fleet.yaml")
    assert backend.apply_fleet_objects(spec) > 0
    keys = cluster.get("v1", "Secret", "hubfleet-system", k8s_portal.NAME)["data"]
    assert backend.apply_fleet_objects(spec) == 0  # a second step writes nothing, regenerates nothing
    assert cluster.get("v1", "Secret", "hubfleet-system", k8s_portal.NAME)["data"] == keys

    fleet = type(catalog.fleet).model_validate({**catalog.fleet.model_dump(), "auth": {
        "type": "oidc", "issuer": "https://login.example.ac.uk/realms/uni", "client_id": "hubfleet"}})
    backend.apply_fleet_objects(plan(catalog.model_copy(update={"fleet": fleet}), DATE))
    left = {(o["kind"], o["metadata"]["name"]) for kind in ("Deployment", "Service", "Ingress", "Secret",
                                                            "PersistentVolumeClaim")
            for o in cluster.list({"Deployment": "apps/v1", "Ingress": "networking.k8s.io/v1"}.get(kind, "v1"),
                                  kind, "hubfleet-system") if "portal" in o["metadata"]["name"]}
    # Nothing serves the old portal; its keys and students' passwords stay, should the fleet come back to it.
    assert left == {("Secret", k8s_portal.NAME), ("Secret", k8s_portal.CLIENTS_SECRET),
                    ("PersistentVolumeClaim", k8s_portal.NAME)}
    assert cluster.get("v1", "Secret", "hubfleet-system", k8s_portal.NAME)["data"] == keys


def test_your_courses_links_a_sleeping_hub_through_the_waker_on_the_portals_own_host(tmp_path):
    """A hibernated hub's "Open" link goes to ``/portal/wake/<hub>/hub/`` on the portal's host (woken whatever the
    ingress controller); an awake hub's link stays its own host. The waker hooks here stand for the cluster's
    (which the chart tier runs for real, test_z2jh_hibernation.py): hub one sleeps, hub two does not."""
    import re

    from fastapi.testclient import TestClient

    from conftest import portal_sign_in
    from hubfleet.web.portal import PortalSource, create_app

    (tmp_path / "fleet.yaml").write_text(SMALL)
    loaded = load_catalog(tmp_path / "fleet.yaml")
    spec = plan(loaded.catalog, DATE)
    public = k8s_portal.public_url(spec.domain)
    state = tmp_path / "state"
    CatalogState(tmp_path / "fleet.yaml", state, public, None, lambda: DATE).write(loaded, spec)
    asleep, awake = (h.name for h in spec.hubs)
    source = PortalSource(state)
    app = create_app(source, waking={"fleet": source.fleet, "asleep": lambda name: name == asleep,
                                     "alive": lambda name: name == awake, "wake": lambda name: None})
    passwords = dict(line.split(" ", 1) for line in (state / "passwords.txt").read_text().splitlines() if " " in line)
    user = next(u for u in passwords if all(
        u in json.loads((state / "hubs" / h / "members.json").read_text()) for h in (asleep, awake)))
    with TestClient(app, base_url=public, follow_redirects=False) as browser:
        assert portal_sign_in(browser, user, passwords[user].strip()).status_code == 303
        page = browser.get("/portal/")
    links = dict((hub, href) for href, hub in re.findall(r'class="open" href="([^"]+)" data-hub="([^"]+)"', page.text))
    assert links == {asleep: f"/portal/wake/{asleep}/hub/", awake: f"https://{awake}.{spec.domain}/hub/"}


def test_without_the_portal_there_is_no_waker_to_route_to():
    """A fleet signing in elsewhere (OIDC) renders no portal, so no waker: no fallback annotations, no waker
    Service or binding (and the controller keeps its hubs awake, hubstate.hibernate_idle)."""
    from hubfleet.backends.kubernetes.manifests import render_manifests
    from hubfleet.backends.kubernetes.material import read_material

    _, spec = _spec({"type": "oidc", "issuer": "https://login.example.ac.uk/realms/uni", "client_id": "hubfleet"})
    material = read_material(EXAMPLE, spec)
    for hub in spec.hubs:
        annotations = render_values(hub, spec, material=material)["ingress"]["annotations"]
        assert not [k for k in annotations if k.startswith("nginx.ingress.kubernetes.io/")]
        names = {(o["kind"], o["metadata"]["name"]) for o in render_manifests(hub, spec, material=material)}
        assert ("Service", "hubfleet-waker") not in names and ("RoleBinding", "hubfleet-waker") not in names
