"""Storage that mounts and state that stays: the hub database across a stop, pruning what is no longer rendered,
and the personal store's NFS server reached the way a kubelet can reach it. Against FakeCluster + FakeHelm."""

from __future__ import annotations

import pytest
from test_k8s_backend import HUBS, PV, converge, spec_of, write_catalog

from hubfleet.backends.kubernetes.backend import KubernetesBackend
from hubfleet.backends.kubernetes.cluster import NotFound
from hubfleet.backends.kubernetes.fake import FakeCluster
from hubfleet.backends.kubernetes.helm import FakeHelm
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
