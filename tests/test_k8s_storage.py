"""Storage that mounts and state that stays: the hub database across a stop, pruning what is no longer rendered,
and the personal store's NFS server reached the way a kubelet can reach it. Against FakeCluster + FakeHelm."""

from __future__ import annotations

import pytest
from test_k8s_backend import HUBS, PV, converge, spec_of, write_catalog

from typer.testing import CliRunner

from hubfleet.backends.kubernetes.backend import KubernetesBackend
from hubfleet.backends.kubernetes.cluster import NotFound
from hubfleet.backends.kubernetes.fake import FakeCluster
from hubfleet.backends.kubernetes.fleet import render_fleet
from hubfleet.backends.kubernetes.helm import FakeHelm
from hubfleet.backends.kubernetes.manifests import render_manifests
from hubfleet.backends.kubernetes.material import read_material
from hubfleet.backends.kubernetes.validation import validate_manifest
from hubfleet.backends.kubernetes.values import render_values
from hubfleet.catalog import load_catalog
from hubfleet.catalog.errors import CatalogError
from hubfleet.cli.main import app
from hubfleet.plan import diff
from hubfleet.plan.diff import Action, Kind, Plan


@pytest.fixture
def catalog(tmp_path):
    return write_catalog(tmp_path / "catalog")


@pytest.fixture
def cluster():
    return FakeCluster(extra_kinds=[PV])


@pytest.fixture
def backend(cluster, catalog):
    return KubernetesBackend(cluster, FakeHelm(cluster), concurrency=2, catalog_root=catalog)


def test_the_hub_database_survives_a_stop_and_start_finds_it(catalog, cluster, backend):
    converge(backend, spec_of(catalog))
    ns = "m269-2026j"
    before = cluster.get("v1", "PersistentVolumeClaim", ns, "hub-db-dir")
    assert before["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    report = backend.apply(Plan(actions=(Action(kind=Kind.stop, hub=ns),)), spec_of(catalog))
    assert report.ok
    assert (ns, ns) not in backend.helm.releases
    kept = cluster.get("v1", "PersistentVolumeClaim", ns, "hub-db-dir")
    assert kept["metadata"]["uid"] == before["metadata"]["uid"]
    converge(backend, spec_of(catalog))  # planned as start: the release comes back onto the same database
    assert (ns, ns) in backend.helm.releases
    assert cluster.get("v1", "PersistentVolumeClaim", ns, "hub-db-dir")["metadata"]["uid"] == before["metadata"]["uid"]


def _with_w101_settings(catalog, on: bool) -> None:
    path = catalog / "courses" / "W101.yaml"
    text = path.read_text().replace("extensions: {settings: {\"@jupyterlab/notebook-extension:tracker\": "
                                    "{lineNumbers: true}}}\n", "")
    if on:
        text = text.replace("storage: {layout: ephemeral}",
                            "storage: {layout: ephemeral}\nextensions: {settings: "
                            "{\"@jupyterlab/notebook-extension:tracker\": {lineNumbers: true}}}")
    path.write_text(text)


def test_objects_no_longer_rendered_are_pruned_and_nothing_else(catalog, cluster, backend):
    # No fleet-wide lab settings (the default turns the news prompt off), so W101's are its hub's only lab config.
    fleet = catalog / "fleet.yaml"
    fleet.write_text(fleet.read_text().replace("    container_user: jovyan\n",
                                               "    container_user: jovyan\n    extensions: {settings: {}}\n"))
    _with_w101_settings(catalog, on=True)
    converge(backend, spec_of(catalog))
    ns = "w101-2026j"
    assert cluster.get("v1", "ConfigMap", ns, "lab-w101-2026j")
    # Someone else's ConfigMap in the namespace, and hubfleet's own record: neither is the render's to prune.
    cluster.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "site-notes", "namespace": ns},
                    "data": {"a": "b"}})
    _with_w101_settings(catalog, on=False)
    spec = spec_of(catalog)
    plan_ = diff(spec, backend.observe())
    assert [(a.kind, a.hub) for a in plan_.actions] == [(Kind.update, ns)]
    report = backend.apply(plan_, spec)
    assert report.ok
    with pytest.raises(NotFound):
        cluster.get("v1", "ConfigMap", ns, "lab-w101-2026j")
    assert cluster.get("v1", "ConfigMap", ns, "site-notes")
    assert cluster.get("v1", "ResourceQuota", ns, "hubfleet") and cluster.get("v1", "Secret", ns, "hubfleet")
    assert backend.endpoint(ns).token  # the applied-spec record and the Secret are still there
    assert diff(spec, backend.observe()) == Plan()
    # Other hubs untouched.
    for other in set(HUBS) - {ns}:
        assert cluster.get("v1", "ResourceQuota", other, "hubfleet")


# ------------------------------------------------------------------------------------ the personal store


def _fleet_yaml(catalog, kubernetes: str) -> None:
    path = catalog / "fleet.yaml"
    lines = [ln for ln in path.read_text().splitlines() if not ln.strip().startswith("kubernetes:")]
    at = next(i for i, ln in enumerate(lines) if ln.strip().startswith("domain:")) + 1
    if kubernetes:
        lines.insert(at, f"  kubernetes: {kubernetes}")
    path.write_text("\n".join(lines) + "\n")


def _store_volumes(spec, catalog) -> list[dict]:
    material = read_material(catalog, spec)
    objects = render_fleet(spec) + [o for hub in spec.hubs for o in render_manifests(hub, spec, material=material)]
    return [o for o in objects if o["kind"] == "PersistentVolume"]


def test_the_store_is_mounted_by_an_address_the_node_can_reach(catalog):
    # External filer: every PV (fleet namespace and each personal-subfolder hub) names its IP and export.
    spec = spec_of(catalog)
    pvs = _store_volumes(spec, catalog)
    assert len(pvs) == 2  # the archiver's view in hubfleet-system, and M269's
    assert {(pv["spec"]["nfs"]["server"], pv["spec"]["nfs"]["path"]) for pv in pvs} == {("10.0.0.5", "/export")}

    # hubfleet runs the server: a Service at the fixed ClusterIP the PVs name, so no PV needs cluster DNS.
    _fleet_yaml(catalog, "{personal_store: {cluster_ip: 10.96.0.200, storage_class: fast-rwo}}")
    spec = spec_of(catalog)
    fleet = render_fleet(spec)
    # The store's own Service (NFS, 2049) and Deployment; the fleet also renders the portal and the controller.
    (svc,) = [o for o in fleet if o["kind"] == "Service" and any(p["port"] == 2049 for p in o["spec"]["ports"])]
    (server,) = [o for o in fleet if o["kind"] == "Deployment" and o["metadata"]["name"] == svc["metadata"]["name"]]
    (data,) = [o for o in fleet if o["kind"] == "PersistentVolumeClaim" and o["metadata"]["name"] == svc["metadata"]["name"]]
    assert svc["spec"]["clusterIP"] == "10.96.0.200"
    assert svc["spec"]["selector"].items() <= server["spec"]["template"]["metadata"]["labels"].items()
    assert {p["port"] for p in svc["spec"]["ports"]} >= {2049}
    assert data["spec"]["storageClassName"] == "fast-rwo"
    assert data["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert server["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == data["metadata"]["name"]
    assert {pv["spec"]["nfs"]["server"] for pv in _store_volumes(spec, catalog)} == {"10.96.0.200"}
    for obj in fleet:
        assert validate_manifest(obj, "1.32.0") == [], obj["kind"]


@pytest.mark.parametrize("server", ["personal-store.hubfleet-system.svc.cluster.local", "nfs.store.svc"])
def test_a_cluster_dns_name_for_the_store_is_refused_at_validate(catalog, server):
    _fleet_yaml(catalog, f"{{personal_store: {{server: {server}}}}}")
    with pytest.raises(CatalogError) as err:
        load_catalog(catalog)
    text = str(err.value)
    assert "fleet.yaml:5:" in text and "cluster DNS name" in text and "cluster_ip" in text


def test_personal_subfolder_without_a_store_is_a_clear_render_error(catalog, tmp_path):
    _fleet_yaml(catalog, "")
    result = CliRunner().invoke(app, ["render", str(catalog), "--backend", "kubernetes", "--out", str(tmp_path / "o"),
                                      "--at", "2026-11-01"])
    assert result.exit_code == 2
    assert "fleet.kubernetes.personal_store" in result.output
    assert not (tmp_path / "o").exists()


def test_a_sized_extra_mount_is_an_unknown_key(catalog):
    # Extra mounts live on the student's own storage on both backends; `size` promised a volume that never came.
    path = catalog / "courses" / "W101.yaml"
    path.write_text(path.read_text().replace(
        "storage: {layout: ephemeral}",
        "storage: {layout: ephemeral, extra_mounts: [{name: pg, path: \"{course_dir}/pg\", size: 1Gi}]}"))
    with pytest.raises(CatalogError) as err:
        load_catalog(catalog)
    assert "W101.yaml:3:" in str(err.value) and "size" in str(err.value)


def test_a_fleet_without_personal_stores_prunes_the_nfs_server_but_keeps_its_data(catalog, cluster, backend):
    _fleet_yaml(catalog, "{personal_store: {cluster_ip: 10.96.0.200}}")
    assert backend.apply_fleet_objects(spec_of(catalog)) > 0
    assert cluster.get("apps/v1", "Deployment", "hubfleet-system", "personal-store-nfs")
    assert backend.apply_fleet_objects(spec_of(catalog)) == 0  # nothing to write, nothing to prune
    # The one personal-subfolder course moves to per-presentation storage: the fleet renders no NFS server.
    m269 = catalog / "courses" / "M269.yaml"
    m269.write_text(m269.read_text().replace("layout: personal-subfolder", "layout: per-presentation"))
    assert backend.apply_fleet_objects(spec_of(catalog)) == 2
    for kind, api in (("Deployment", "apps/v1"), ("Service", "v1")):
        with pytest.raises(NotFound):
            cluster.get(api, kind, "hubfleet-system", "personal-store-nfs")
    # The image puller stays; the server's data claim is never pruned (it holds every home).
    assert cluster.get("apps/v1", "DaemonSet", "hubfleet-system", "hubfleet-image-puller")
    assert cluster.get("v1", "PersistentVolumeClaim", "hubfleet-system", "personal-store-nfs")


def test_moving_the_store_to_another_server_is_refused_not_repointed(catalog, cluster, backend):
    # A PV's NFS source is immutable: the store's address is frozen, and moving it is a migration (docs).
    backend.apply_fleet_objects(spec_of(catalog))
    _fleet_yaml(catalog, "{personal_store: {server: 10.0.0.6}}")
    with pytest.raises(Exception, match="persistentvolumesource"):
        backend.apply_fleet_objects(spec_of(catalog))
    pv = next(o for o in cluster.list("v1", "PersistentVolume", None) if o["metadata"]["name"].endswith("personal-store"))
    assert pv["spec"]["nfs"]["server"] == "10.0.0.5"


def test_per_presentation_claims_take_the_catalogs_storage_class(catalog):
    _fleet_yaml(catalog, "{personal_store: {server: 10.0.0.5}, storage_class: ceph-rbd}")
    spec = spec_of(catalog)
    tm351 = next(h for h in spec.hubs if h.name == "tm351-2026j")  # per-presentation storage
    values = render_values(tm351, spec, material=read_material(catalog, spec))
    (profile,) = values["singleuser"]["profileList"]
    assert profile["kubespawner_override"]["storage_class"] == "ceph-rbd"
