"""KubernetesBackend's apply logic against FakeCluster + FakeHelm, driven by real plans of a small catalog.

The fakes answer like an API server and like helm (FakeHelm validates values against the z2jh 4.4.0 schema and
writes the chart's hub Secret and hub-db-dir claim), so these tests check what an operator would see: objects,
releases, helm calls, and what survives a delete.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hubfleet.backends.base import Backend
from hubfleet.backends.kubernetes import records
from hubfleet.backends.kubernetes.backend import KubernetesBackend, KubernetesUnavailable, connect
from hubfleet.backends.kubernetes.cluster import KindInfo, NotFound
from hubfleet.backends.kubernetes.fake import FakeCluster
from hubfleet.backends.kubernetes.helm import FakeHelm
from hubfleet.backends.kubernetes.material import LABEL as MATERIAL_LABEL
from hubfleet.backends.kubernetes.material import LIMIT_BYTES
from hubfleet.backends.kubernetes.validation import validate_chart_values
from hubfleet.catalog import load_catalog
from hubfleet.plan import diff, plan
from hubfleet.plan.diff import Action, Kind, Plan

OPEN = dt.date(2026, 11, 1)  # every presentation open
TM351_ARCHIVED = dt.date(2027, 8, 1)  # TM351-2026J past read-only (ended 2027-06-10 + 30 days); the others open
HUBS = ("m269-2026j", "tm351-2026j", "w101-2026j")
# The fake serves the kinds the backend writes; PersistentVolume (personal store) is registered here until
# cluster.BUILTIN_KINDS lists it.
PV = KindInfo("v1", "PersistentVolume", "persistentvolumes", False)


def write_catalog(root: Path, auth: str = "", tm351_image: str = "quay.io/jupyter/scipy-notebook:2026-11-24") -> Path:
    """Three hubs, one per storage layout: TM351 per-presentation (seeded), M269 personal-subfolder, W101 ephemeral."""
    (root / "courses").mkdir(parents=True, exist_ok=True)
    (root / "material" / "TM351").mkdir(parents=True, exist_ok=True)
    (root / "material" / "TM351" / "README.md").write_text("# TM351\n")
    (root / "fleet.yaml").write_text(textwrap.dedent(f"""\
        fleet:
          name: testuni
          backend: kubernetes
          domain: hubs.test.example
          kubernetes: {{personal_store: {{server: 10.0.0.5, path: /export}}}}
          {auth}
          defaults:
            image: quay.io/jupyter/minimal-notebook:2026-11-24
            resources: {{cpu: "0.5", memory: 1G}}
            storage: {{layout: per-presentation, size: 1Gi}}
            container_user: jovyan
        """))
    (root / "courses" / "TM351.yaml").write_text(textwrap.dedent(f"""\
        code: TM351
        title: Data management
        images: [{{name: default, image: "{tm351_image}", display_name: TM351}}]
        seed: [{{source: ../material/TM351}}]
        presentations:
          - {{id: 2026J, start: 2026-10-03, end: 2027-06-10, expected_students: 20, enrolment: [{{users: [alice, bob]}}]}}
        """))
    (root / "courses" / "M269.yaml").write_text(textwrap.dedent("""\
        code: M269
        title: Algorithms
        storage: {layout: personal-subfolder}
        presentations:
          - {id: 2026J, start: 2026-10-10, end: 2027-09-30, expected_students: 10, enrolment: [{users: [carol]}]}
        """))
    (root / "courses" / "W101.yaml").write_text(textwrap.dedent("""\
        code: W101
        title: Workshop
        storage: {layout: ephemeral}
        presentations:
          - {id: 2026J, start: 2026-10-20, end: 2027-09-30, expected_students: 5, enrolment: [{users: [dan]}]}
        """))
    return root


def spec_of(root: Path, date: dt.date = OPEN):
    return plan(load_catalog(root).catalog, date)


@pytest.fixture
def catalog(tmp_path):
    return write_catalog(tmp_path / "catalog")


@pytest.fixture
def cluster():
    return FakeCluster(extra_kinds=[PV])


@pytest.fixture
def helm(cluster):
    return FakeHelm(cluster)


@pytest.fixture
def backend(cluster, helm, catalog):
    return KubernetesBackend(cluster, helm, concurrency=2, catalog_root=catalog)


def converge(backend, spec):
    """Plan against what the backend observes and apply it; the report must be clean."""
    report = backend.apply(diff(spec, backend.observe()), spec)
    assert report.ok, [r.message for r in report.failures]
    return report


def secret_data(cluster) -> dict:
    return {ns: cluster.get("v1", "Secret", ns, "hubfleet")["data"] for ns in HUBS}


def material_configmaps(cluster, ns: str) -> list[dict]:
    return cluster.list("v1", "ConfigMap", ns, f"{MATERIAL_LABEL}=true")


def material_names(values: dict) -> set[str]:
    """The material ConfigMaps a release's profiles mount."""
    return {v["configMap"]["name"] for p in values["singleuser"]["profileList"]
            for v in p["kubespawner_override"]["volumes"] if v["name"].startswith("hubfleet-material-")}


def add_student_claim(cluster, ns: str, presentation: str, user: str = "alice") -> None:
    """The claim KubeSpawner makes at a student's first start (labels as kubespawner + storage_extra_labels)."""
    cluster.create({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": f"claim-{presentation}-{user}", "namespace": ns,
                     "annotations": {"hub.jupyter.org/username": user},
                     "labels": {"app": "jupyterhub", "component": "singleuser-storage",
                                "hub.jupyter.org/username": user, "hubfleet.io/presentation": presentation}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    })


# --------------------------------------------------------------------------------------------- create


def test_create_namespaces_objects_secret_and_release(catalog, cluster, helm, backend):
    assert isinstance(backend, Backend)
    spec = spec_of(catalog)
    seen = []
    plan_ = diff(spec, backend.observe())
    assert [(a.kind, a.hub) for a in plan_.actions] == [(Kind.create, h) for h in HUBS]
    report = backend.apply(plan_, spec, lambda action, message: seen.append((action.hub, message)))
    assert report.ok, [r.message for r in report.failures]
    for hub in spec.hubs:
        ns = cluster.get("v1", "Namespace", None, hub.name)
        labels = ns["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "hubfleet"
        assert labels["hubfleet.io/fleet"] == "testuni" and labels["hubfleet.io/hub"] == hub.name
        assert cluster.get("v1", "ResourceQuota", hub.name, "hubfleet")["spec"]["hard"]["pods"]
        assert cluster.get("v1", "LimitRange", hub.name, "hubfleet")["spec"]["limits"]
        secret = cluster.get("v1", "Secret", hub.name, "hubfleet")["data"]
        # embedded auth: hubfleet mints the service token, the portal's client secret, and the chart's cookie
        # secret and auth-state keys (read through hub.existingSecret)
        assert set(secret) == {"hubfleet-api-token", "oauth-client-secret", "hub.config.JupyterHub.cookie_secret",
                               "hub.config.CryptKeeper.keys"}
        assert len(base64.b64decode(secret["hubfleet-api-token"])) == 64
        release = helm.releases[(hub.name, hub.name)]
        assert (release.chart, release.version, release.status) == ("jupyterhub", "4.4.0", "deployed")
        assert validate_chart_values(release.values) == []
        assert release.values == backend.values_for(hub, spec)
        assert records.read_record(cluster, hub.name) == hub.model_dump(mode="json")
    assert cluster.get("v1", "PersistentVolumeClaim", "m269-2026j", "personal-store")
    (material,) = material_configmaps(cluster, "tm351-2026j")
    assert material["immutable"] is True and material["data"] == {"README.md": "# TM351\n"}
    assert material_names(helm.releases[("tm351-2026j", "tm351-2026j")].values) == {material["metadata"]["name"]}
    with pytest.raises(NotFound):  # course material is data in ConfigMaps now, not a claim to keep and fill
        cluster.get("v1", "PersistentVolumeClaim", "tm351-2026j", "hubfleet-material")
    assert {hub for hub, _ in seen} == set(HUBS)
    assert any("helm upgrade --install" in m for _, m in seen)


def test_forced_converge_of_unchanged_hubs_writes_nothing(catalog, cluster, helm, backend):
    """An update whose spec change never reaches the values (or a re-run after a crash) writes nothing.
    (An empty re-apply writing nothing is in tests/test_backend_contract.py, for both backends.)"""
    spec = spec_of(catalog)
    converge(backend, spec)
    cluster.reset_counters()
    helm.counts.clear()
    forced = Plan(actions=tuple(Action(kind=Kind.update, hub=h) for h in HUBS))
    assert backend.apply(forced, spec).ok
    assert cluster.write_count == 0
    assert helm.write_count == 0


def test_list_field_changes_apply_cleanly_and_reach_the_release(catalog, cluster, helm, backend):
    """Admins, tutors and a profile's groups are lists: a diff carrying them must apply, not raise (issue 9.4)."""
    converge(backend, spec_of(catalog))
    fleet = (catalog / "fleet.yaml").read_text()
    (catalog / "fleet.yaml").write_text(fleet.replace("  domain: hubs.test.example\n",
                                                      "  domain: hubs.test.example\n  platform_team: [root1, root2]\n"))
    course = (catalog / "courses" / "TM351.yaml").read_text()
    (catalog / "courses" / "TM351.yaml").write_text(course.replace("title: Data management\n",
                                                                   "title: Data management\nteam: {tutors: [tess]}\n"))
    spec = spec_of(catalog)
    plan_ = diff(spec, backend.observe())
    assert {a.hub for a in plan_.actions} == set(HUBS) and all(a.kind == Kind.update for a in plan_.actions)
    listed = [c for a in plan_.actions for c in a.changes if isinstance(c.new, list) or isinstance(c.old, list)]
    assert {c.field.split(".")[0].split("[")[0] for c in listed} >= {"admins", "presentations"}
    seen = []
    report = backend.apply(plan_, spec, lambda action, message: seen.append(action.hub))
    assert report.ok, [r.message for r in report.failures]
    assert [r.action for r in report.results] == list(plan_.actions)  # one result per action, in plan order
    values = helm.releases[("tm351-2026j", "tm351-2026j")].values
    assert values["hub"]["config"]["Authenticator"]["admin_users"] == ["root1", "root2"]
    (tm351,) = records.read_record(cluster, "tm351-2026j")["presentations"]
    assert tm351["tutors"] == ["tess"]  # recorded, so the next plan sees the change as applied
    assert diff(spec, backend.observe()) == Plan()


def test_spec_change_without_values_change_makes_no_helm_write(catalog, cluster, helm, backend):
    spec = spec_of(catalog)
    converge(backend, spec)
    hub = spec.hub("w101-2026j")
    # A field the values do not depend on: expected_students only sizes the namespace quota.
    bigger = hub.model_copy(update={"expected_students": 500})
    spec2 = spec.model_copy(update={"hubs": tuple(bigger if h.name == hub.name else h for h in spec.hubs)})
    assert backend.values_for(bigger, spec2) == backend.values_for(hub, spec)
    plan_ = diff(spec2, backend.observe())
    assert [(a.kind, a.hub) for a in plan_.actions] == [(Kind.update, "w101-2026j")]
    helm.counts.clear()
    report = backend.apply(plan_, spec2)
    assert report.ok and "release unchanged" in report.results[0].message
    assert helm.counts["upgrade_install"] == 0
    assert cluster.get("v1", "ResourceQuota", "w101-2026j", "hubfleet")["spec"]["hard"]["pods"] == "260"
    assert diff(spec2, backend.observe()) == Plan()


# ------------------------------------------------------------------------------------------- material


def test_material_change_rolls_out_as_a_new_configmap_and_the_old_one_goes(catalog, cluster, helm, backend):
    spec = spec_of(catalog)
    converge(backend, spec)
    (old,) = material_configmaps(cluster, "tm351-2026j")
    (catalog / "material" / "TM351" / "week1.ipynb").write_text("{}\n")
    state = backend.observe()
    assert diff(spec, state) == Plan()  # the spec does not carry material content ...
    plan_ = backend.material_updates(diff(spec, state), spec, state)  # ... so the backend checks for it
    assert [(a.kind, a.hub) for a in plan_.actions] == [(Kind.update, "tm351-2026j")]
    assert "course material changed: material/TM351" in plan_.actions[0].reason
    helm.counts.clear()
    report = backend.apply(plan_, spec)
    assert report.ok, [r.message for r in report.failures]
    (new,) = material_configmaps(cluster, "tm351-2026j")  # the old version pruned after the upgrade
    assert new["metadata"]["name"] != old["metadata"]["name"]
    assert set(new["data"]) == {"README.md", "week1.ipynb"}
    assert material_names(helm.releases[("tm351-2026j", "tm351-2026j")].values) == {new["metadata"]["name"]}
    assert helm.counts["upgrade_install"] == 1
    state = backend.observe()
    assert backend.material_updates(diff(spec, state), spec, state) == Plan()
    cluster.reset_counters()
    assert backend.apply(Plan(actions=(Action(kind=Kind.update, hub="tm351-2026j"),)), spec).ok
    assert cluster.write_count == 0


def test_oversized_material_fails_that_hub_only_and_writes_nothing_for_it(catalog, cluster, helm, backend):
    (catalog / "material" / "TM351" / "data.csv").write_bytes(b"x" * (LIMIT_BYTES + 1))
    spec = spec_of(catalog)
    report = backend.apply(diff(spec, backend.observe()), spec)
    assert [r.action.hub for r in report.failures] == ["tm351-2026j"]
    message = report.failures[0].message
    assert "'material/TM351'" in message and "900 KiB" in message and "image" in message
    with pytest.raises(NotFound):
        cluster.get("v1", "Namespace", None, "tm351-2026j")


def test_a_seeding_hub_needs_the_catalog_root(catalog, cluster, helm):
    backend = KubernetesBackend(cluster, helm)
    spec = spec_of(catalog)
    report = backend.apply(diff(spec, backend.observe()), spec)
    assert [r.action.hub for r in report.failures] == ["tm351-2026j"]
    assert "catalog_root" in report.failures[0].message


# ------------------------------------------------------------------------------------------- failures


def test_failed_release_is_planned_as_start(catalog, cluster, helm, backend):
    spec = spec_of(catalog)
    converge(backend, spec)
    helm.releases[("w101-2026j", "w101-2026j")].status = "failed"  # e.g. someone's manual upgrade timed out
    plan_ = diff(spec, backend.observe())
    assert [(a.kind, a.hub) for a in plan_.actions] == [(Kind.start, "w101-2026j")]
    helm.counts.clear()
    converge(backend, spec)
    assert helm.counts["upgrade_install"] == 1
    assert helm.releases[("w101-2026j", "w101-2026j")].status == "deployed"


def test_oidc_client_secret_must_be_provided_and_is_never_touched(tmp_path, cluster, helm, backend):
    root = write_catalog(tmp_path / "oidc", auth='auth: {type: oidc, issuer: "https://login.test.example", client_id: hubs}')
    spec = spec_of(root)
    report = backend.apply(diff(spec, backend.observe()), spec)
    assert len(report.failures) == 3
    assert "kubectl -n tm351-2026j create secret generic hubfleet --from-literal=oauth-client-secret" in (
        next(r.message for r in report.results if r.action.hub == "tm351-2026j"))
    assert helm.counts["upgrade_install"] == 0
    for ns in HUBS:  # the operator registers each hub with the IdP and stores the client secret
        cluster.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hubfleet", "namespace": ns},
                        "data": {"oauth-client-secret": base64.b64encode(b"from-the-idp").decode()}})
    converge(backend, spec)
    for ns in HUBS:
        data = cluster.get("v1", "Secret", ns, "hubfleet")["data"]
        assert base64.b64decode(data["oauth-client-secret"]) == b"from-the-idp"
        assert backend.endpoint(ns).token == base64.b64decode(data["hubfleet-api-token"]).decode()


# ------------------------------------------------------------------------------------- stop and delete


def test_delete_refused_until_verified_archive_and_student_claim_survives(catalog, cluster, helm, backend):
    converge(backend, spec_of(catalog))
    add_student_claim(cluster, "tm351-2026j", "tm351-2026j")
    spec = spec_of(catalog, TM351_ARCHIVED)
    plan_ = diff(spec, backend.observe())
    assert [(a.kind, a.hub) for a in plan_.actions] == [
        (Kind.archive, "tm351-2026j"), (Kind.stop, "tm351-2026j"), (Kind.delete, "tm351-2026j")]
    report = backend.apply(plan_, spec)
    outcome = {r.action.kind: r for r in report.results}
    assert outcome[Kind.archive].ok and "archive Job hubfleet-archive-tm351-2026j created" in outcome[Kind.archive].message
    assert outcome[Kind.stop].ok  # the release goes; namespace, Secret and claims stay
    assert not outcome[Kind.delete].ok
    assert "claim-tm351-2026j-alice (TM351-2026J)" in outcome[Kind.delete].message
    assert ("tm351-2026j", "tm351-2026j") not in helm.releases
    assert cluster.get("v1", "PersistentVolumeClaim", "tm351-2026j", "claim-tm351-2026j-alice")
    # The chart's hub-db-dir is annotated helm.sh/resource-policy: keep, so the hub's database survives a stop.
    assert cluster.get("v1", "PersistentVolumeClaim", "tm351-2026j", "hub-db-dir")

    # Still refused on the next run, and now planned without a stop (nothing runs).
    plan_ = diff(spec, backend.observe())
    assert [a.kind for a in plan_.actions] == [Kind.archive, Kind.delete]
    assert not backend.apply(plan_, spec).ok

    # The archive Job's verified marker, in the fleet namespace so it outlives the hub's.
    cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "hubfleet-system"}})
    cluster.create(records.marker_object("hubfleet-system", "TM351-2026J", layout="per-presentation",
                                         volume="presentations/TM351-2026J/{username}"))
    state = backend.observe()
    assert state.presentations["TM351-2026J"].archived
    plan_ = diff(spec, state)
    assert [a.kind for a in plan_.actions] == [Kind.delete]
    converge(backend, spec)
    with pytest.raises(NotFound):
        cluster.get("v1", "Namespace", None, "tm351-2026j")
    after = backend.observe()
    assert "tm351-2026j" not in after.hubs and after.presentations["TM351-2026J"].archived
    assert set(after.hubs) == {"m269-2026j", "w101-2026j"}
    assert diff(spec, after) == Plan()


def test_personal_store_holds_delete_back_and_its_pv_is_removed_after(catalog, cluster, helm, backend):
    converge(backend, spec_of(catalog))
    applied = records.read_record(cluster, "m269-2026j")
    claims = records.student_claims(cluster, "m269-2026j")
    assert records.unarchived_claims(claims, applied, {}) == ["personal-store (personal store of M269-2026J)"]
    cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "hubfleet-system"}})
    cluster.create(records.marker_object("hubfleet-system", "M269-2026J", layout="personal-subfolder",
                                         volume="home/{username}"))
    report = backend.apply(Plan(actions=(Action(kind=Kind.delete, hub="m269-2026j"),)), spec_of(catalog))
    assert report.ok, report.results[0].message
    assert not [pv for pv in cluster.list("v1", "PersistentVolume") if "m269" in pv["metadata"]["name"]]


# ---------------------------------------------------------------------------------- endpoint and status


def test_endpoint_reads_the_token_from_the_hub_secret(catalog, cluster, backend):
    converge(backend, spec_of(catalog))
    ep = backend.endpoint("tm351-2026j")
    assert ep.api_url == "https://tm351-2026j.hubs.test.example/hub/api"
    raw = cluster.get("v1", "Secret", "tm351-2026j", "hubfleet")["data"]["hubfleet-api-token"]
    assert ep.token == base64.b64decode(raw).decode()
    with pytest.raises(KeyError, match="never been applied"):
        backend.endpoint("nope")


class _Hub(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        ok = self.path.startswith("/hub/api/users") and self.headers.get("Authorization", "").startswith("token ")
        body = json.dumps([{"name": "ada", "servers": {"": {"ready": True}}}, {"name": "bob", "servers": {}}])
        self.send_response(200 if ok else 403)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode() if ok else b"{}")

    def log_message(self, *args):
        pass


def test_status_counts_users_and_survives_unreachable_hubs(catalog, cluster, helm):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        urls = {"tm351-2026j": f"http://127.0.0.1:{server.server_port}/", "m269-2026j": "http://127.0.0.1:9/"}
        backend = KubernetesBackend(cluster, helm, hub_url=lambda hub: urls.get(hub, "http://127.0.0.1:9/"),
                                    api_timeout=2, catalog_root=catalog)
        spec = spec_of(catalog)
        plan_ = diff(spec, backend.observe())
        backend.apply(Plan(actions=tuple(a for a in plan_.actions if a.hub != "w101-2026j")), spec)
        rows = {r.name: r for r in backend.status(spec)}
    finally:
        server.shutdown()
    assert rows["tm351-2026j"].up and (rows["tm351-2026j"].users, rows["tm351-2026j"].running_servers) == (2, 1)
    assert not rows["m269-2026j"].up and "release deployed" in rows["m269-2026j"].detail
    assert not rows["w101-2026j"].up and rows["w101-2026j"].detail == "no release"


# --------------------------------------------------------------------------------- options and errors


def test_extra_values_are_laid_over_and_stay_idempotent(catalog, cluster, helm):
    backend = KubernetesBackend(cluster, helm, extra_values={"proxy": {"service": {"type": "NodePort"}}},
                                catalog_root=catalog)
    spec = spec_of(catalog)
    converge(backend, spec)
    values = helm.releases[("w101-2026j", "w101-2026j")].values
    assert values["proxy"]["service"] == {"type": "NodePort"}
    assert values["ingress"]["enabled"] is True  # the rest of the rendered values untouched
    helm.counts.clear()
    backend.apply(Plan(actions=tuple(Action(kind=Kind.update, hub=h) for h in HUBS)), spec)
    assert helm.counts["upgrade_install"] == 0


class _CountingHelm(FakeHelm):
    """Records how many upgrades overlap (the short sleep only gives threads a chance to overlap)."""

    def __init__(self, cluster):
        super().__init__(cluster)
        self.active = self.peak = 0
        self.lock = threading.Lock()

    def upgrade_install(self, *args, **kwargs):
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(0.05)
            return super().upgrade_install(*args, **kwargs)
        finally:
            with self.lock:
                self.active -= 1


@pytest.mark.parametrize("concurrency", [1, 2])
def test_concurrency_bounds_parallel_releases(catalog, cluster, concurrency):
    helm = _CountingHelm(cluster)
    backend = KubernetesBackend(cluster, helm, concurrency=concurrency, catalog_root=catalog)
    converge(backend, spec_of(catalog))
    assert 1 <= helm.peak <= concurrency
    assert helm.counts["upgrade_install"] == 3


def test_connect_explains_a_missing_kubeconfig_or_helm(tmp_path, monkeypatch):
    pytest.importorskip("kubernetes")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubernetesUnavailable, match="KUBECONFIG"):
        connect(kubeconfig=str(tmp_path / "missing.yaml"))
    kubeconfig = tmp_path / "kubeconfig.yaml"
    kubeconfig.write_text(textwrap.dedent("""\
        apiVersion: v1
        kind: Config
        clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
        users: [{name: u, user: {token: t}}]
        contexts: [{name: x, context: {cluster: c, user: u}}]
        current-context: x
        """))
    monkeypatch.setenv("PATH", str(tmp_path))  # no helm here
    with pytest.raises(KubernetesUnavailable, match="helm binary"):
        connect(kubeconfig=str(kubeconfig))


def test_fleet_objects_apply_once(catalog, cluster, backend):
    spec = spec_of(catalog)
    assert backend.apply_fleet_objects(spec) > 0
    assert cluster.get("apps/v1", "DaemonSet", "hubfleet-system", "hubfleet-image-puller")
    assert backend.apply_fleet_objects(spec) == 0
    converge(backend, spec)
    assert "hubfleet-system" not in backend.observe().hubs  # the fleet namespace is not a hub
