"""`hubfleet up` on a kubernetes catalog: the shared reconcile loop against the fake cluster, gated by a Lease.

The cluster is FakeCluster + FakeHelm (answering like an API server and like helm); the Lease tests run the
real `Lease` protocol against the fake's resourceVersion checks (409 on a stale write).
"""

from __future__ import annotations

import dataclasses
import os
import shutil

import psutil
import pytest
from typer.testing import CliRunner

from test_k8s_backend import HUBS, OPEN, PV, spec_of, write_catalog

from hubfleet.backends.kubernetes import records
from hubfleet.backends.kubernetes.backend import KubernetesBackend
from hubfleet.backends.kubernetes.cluster import Conflict
from hubfleet.backends.kubernetes.controller import controller, write_status
from hubfleet.backends.kubernetes.controlplane import controller_objects
from hubfleet.backends.kubernetes.fake import FakeCluster
from hubfleet.backends.kubernetes.fleet import DEFAULT_OPTIONS
from hubfleet.backends.kubernetes.gitops import render_tree
from hubfleet.backends.kubernetes.helm import FakeHelm
from hubfleet.backends.kubernetes.lease import API_VERSION, Lease
from hubfleet.backends.kubernetes.manifests import render_manifests
from hubfleet.backends.kubernetes.material import read_material
from hubfleet.backends.kubernetes.validation import validate_manifest
from hubfleet.catalog import load_catalog
from hubfleet.cli.main import app


@pytest.fixture
def catalog(tmp_path):
    return write_catalog(tmp_path / "catalog")


@pytest.fixture
def cluster():
    return FakeCluster(extra_kinds=[PV])


def make_backend(cluster, catalog):
    return KubernetesBackend(cluster, FakeHelm(cluster), concurrency=2, catalog_root=catalog)


def released(cluster) -> set[str]:
    return {r["metadata"]["namespace"] for r in cluster.list("v1", "ConfigMap", None, f"{records.RECORD_LABEL}")}


def local_hub_processes() -> list[psutil.Process]:
    out = []
    for proc in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if any("jupyterhub" in part or "configurable-http-proxy" in part for part in proc.cmdline()):
                out.append(proc)
        except psutil.Error:
            pass
    return out


def test_up_on_kubernetes_catalog_converges_the_cluster_and_starts_no_local_hub(catalog, cluster, monkeypatch):
    monkeypatch.setattr("hubfleet.cli.local_cmds.make_backend", lambda loaded, *a, **kw: make_backend(cluster, catalog))
    result = CliRunner().invoke(app, ["up", str(catalog), "--at", OPEN.isoformat(), "--detach"])
    assert result.exit_code == 0, result.output
    assert len(released(cluster)) == len(HUBS)  # one applied-spec record per hub namespace
    assert local_hub_processes() == []
    assert not (catalog / ".hubfleet").exists()  # no local state dir either: nothing local was set up
    lease = cluster.get(API_VERSION, "Lease", "hubfleet-system", "hubfleet-controller")
    assert "holderIdentity" not in lease["spec"]  # --detach gives the Lease back when it is done


def test_the_loop_converges_then_a_step_writes_nothing_but_the_lease(catalog, cluster):
    loop, lease = controller(catalog, make_backend(cluster, catalog), load_catalog(catalog), OPEN)
    first = loop.step()
    assert first.errors == [] and len(first.results) == len(HUBS) and all(r.ok for r in first.results)
    cluster.reset_counters()
    second = loop.step()
    assert second.results == [] and second.errors == []
    assert cluster.writes == {"replace": 1}  # the Lease renewal, nothing else


def test_a_catalog_edit_reaches_the_cluster_on_the_next_step(catalog, cluster):
    loop, _ = controller(catalog, make_backend(cluster, catalog), load_catalog(catalog), OPEN)
    loop.step()
    (catalog / "courses" / "W101.yaml").unlink()
    report = loop.step()
    assert "catalog changed: re-planned" in report.notes
    # W101 is ephemeral (no student files to archive), so dropping it stops and deletes it; the others untouched.
    assert {r.action.hub for r in report.results} == {"w101-2026j"} and all(r.ok for r in report.results)
    assert released(cluster) == {"m269-2026j", "tm351-2026j"}


def test_two_controllers_never_both_act(catalog, cluster):
    loaded = load_catalog(catalog)
    a, _ = controller(catalog, make_backend(cluster, catalog), loaded, OPEN, lease=Lease(cluster, "hubfleet-system", holder="a"))
    b, _ = controller(catalog, make_backend(cluster, catalog), loaded, OPEN, lease=Lease(cluster, "hubfleet-system", holder="b"))
    acted = a.step()
    waited = b.step()
    assert len(acted.results) == len(HUBS)
    assert waited.results == [] and waited.notes == ["standing by: Lease hubfleet-system/hubfleet-controller is held by a"]
    shutil.rmtree(catalog / "courses")  # B would see this catalog edit if it acted: it must not
    assert b.step().quiet


def test_of_two_writers_racing_for_the_lease_the_server_lets_one_through(cluster):
    cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}})
    a, b = Lease(cluster, "ns", holder="a"), Lease(cluster, "ns", holder="b")
    assert a.hold() is None
    a.release()
    # B reads the free Lease, then A takes it before B writes: B's write carries a stale resourceVersion.
    stale = b.read()
    assert a.hold() is None
    with pytest.raises(Conflict):
        cluster.replace({**stale, "spec": {**stale["spec"], "holderIdentity": "b"}})
    original_read = b.read
    b.read = lambda: stale  # B acts on what it read before A's write
    assert "changed while we renewed" in b.hold()
    b.read = original_read
    assert cluster.get(API_VERSION, "Lease", "ns", "hubfleet-controller")["spec"]["holderIdentity"] == "a"


def test_a_holder_that_stops_renewing_is_taken_over_after_the_lease_expires(cluster):
    cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}})
    now = [1000.0]
    a = Lease(cluster, "ns", holder="a", duration=30)
    b = Lease(cluster, "ns", holder="b", duration=30, clock=lambda: now[0])
    assert a.hold() is None
    assert b.hold() == "Lease ns/hubfleet-controller is held by a"
    now[0] += 29
    assert b.hold() is not None  # not yet: A might still renew
    assert a.hold() is None  # A renews: B's wait starts over
    now[0] += 29
    assert b.hold() is not None
    now[0] += 30  # A went silent (killed) for a whole duration
    assert b.hold() is None
    live = cluster.get(API_VERSION, "Lease", "ns", "hubfleet-controller")["spec"]
    assert live["holderIdentity"] == "b" and live["leaseTransitions"] == 1
    assert a.hold() == "Lease ns/hubfleet-controller is held by b"  # A coming back stands by


# ------------------------------------------------------------------------------------- the rendered controller

GIT = dataclasses.replace(DEFAULT_OPTIONS, catalog_git_repo="https://git.example.edu/hubs/catalog.git",
                          catalog_git_path="fleet", catalog_git_secret="catalog-git", controller_image="registry.example.edu/hubfleet:1.0")


@pytest.mark.parametrize("options", [DEFAULT_OPTIONS, GIT], ids=["configmap", "git-sync"])
def test_every_fleet_object_passes_strict_validation_for_1_32(catalog, options):
    pytest.importorskip("kubernetes_validate")
    tree = render_tree(spec_of(catalog), options=options, material=read_material(catalog, spec_of(catalog)))
    fleet = tree["_fleet/manifests.yaml"]
    assert {"Deployment", "ServiceAccount", "ClusterRole", "Role", "RoleBinding"} <= {o["kind"] for o in fleet}
    for obj in fleet:
        assert validate_manifest(obj, "1.32.0") == [], obj["kind"]


def test_the_controller_runs_up_on_the_synced_catalog_with_its_own_account():
    (deployment,) = [o for o in controller_objects(GIT) if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (controller,) = [c for c in pod["containers"] if c["name"] == "controller"]
    assert controller["image"] == "registry.example.edu/hubfleet:1.0"
    assert controller["command"] == ["hubfleet", "up", "/catalog/current/fleet"]
    sync = [c for c in pod["containers"] + pod["initContainers"] if c["image"].startswith("registry.k8s.io/git-sync/git-sync:v4.")]
    assert len(sync) == 2 and all("--repo=https://git.example.edu/hubs/catalog.git" in c["args"] for c in sync)
    assert pod["serviceAccountName"] == "hubfleet-controller"


def test_rbac_grants_nothing_in_namespaces_hubfleet_does_not_manage(catalog):
    objects = controller_objects(DEFAULT_OPTIONS)
    cluster_rules = [r for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "hubfleet-controller"
                     for r in o["rules"]]
    # Bound cluster-wide: never Secrets or workloads, only namespaces, the store's PVs, ConfigMap lists, binding.
    assert {res for r in cluster_rules for res in r["resources"]} == {
        "namespaces", "persistentvolumes", "configmaps", "rolebindings", "clusterroles"}
    assert not any("*" in r["verbs"] or "*" in r["resources"] for o in objects if "rules" in o for r in o["rules"])
    bindings = [o for o in objects if o["kind"] == "ClusterRoleBinding"]
    assert [b["roleRef"]["name"] for b in bindings] == ["hubfleet-controller"]  # hubfleet-hub is never bound cluster-wide
    # Each hub namespace is rendered with its own binding of hubfleet-hub to the controller.
    spec = spec_of(catalog)
    for hub in spec.hubs:
        manifests = render_manifests(hub, spec, DEFAULT_OPTIONS, read_material(catalog, spec))
        (binding,) = [o for o in manifests if o["kind"] == "RoleBinding" and o["metadata"]["name"] == "hubfleet-controller"]
        assert binding["roleRef"]["name"] == "hubfleet-hub" and binding["metadata"]["namespace"] == hub.name
        assert manifests[0]["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "hubfleet"


# ------------------------------------------------------------------ over HTTP: the served fake API, the real client


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The fake API server over HTTPS and a kubeconfig for it; controllers reach it with the kubernetes client."""
    import yaml

    from hubfleet.testing.kubeapi import KubeApiServer, ServedCluster

    work = tmp_path_factory.mktemp("kubeapi")
    store = ServedCluster()
    store.register_kind(PV)
    api = KubeApiServer(store, work / "ca").start()
    kubeconfig = work / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": api.url, "certificate-authority": str(work / "ca" / "ca.crt")}}],
        "users": [{"name": "fake", "user": {"token": api.token}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
    }))
    yield store, str(kubeconfig)
    api.stop()


def client(kubeconfig: str):
    from hubfleet.backends.kubernetes.cluster import KubernetesCluster

    return KubernetesCluster(kubeconfig=kubeconfig)


def test_over_http_a_stale_lease_write_is_refused_with_409(served):
    store, kubeconfig = served
    api = client(kubeconfig)
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "stale"}})
    a = Lease(api, "stale", holder="a")
    assert a.hold() is None
    stale = api.get(API_VERSION, "Lease", "stale", "hubfleet-controller")
    assert a.hold() is None  # renewal: a new resourceVersion
    with pytest.raises(Conflict):
        api.replace({**stale, "spec": {**stale["spec"], "holderIdentity": "b"}})


def test_two_controllers_started_at_once_over_http_only_one_acts(served, catalog):
    import threading

    store, kubeconfig = served
    loaded = load_catalog(catalog)
    helm = FakeHelm(store)
    pairs = [controller(catalog, KubernetesBackend(client(kubeconfig), helm, catalog_root=catalog), loaded, OPEN,
                        lease=Lease(client(kubeconfig), "hubfleet-system", holder=name)) for name in ("a", "b")]
    loops = [loop for loop, _ in pairs]
    start = threading.Barrier(2)
    reports: dict[int, object] = {}

    def run(i: int) -> None:
        start.wait()
        reports[i] = loops[i].step()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    acted = [r for r in reports.values() if r.results]
    waited = [r for r in reports.values() if not r.results]
    assert len(acted) == 1 and len(waited) == 1, [r.notes + r.errors for r in reports.values()]
    assert all(r.ok for r in acted[0].results) and len(acted[0].results) == len(HUBS)
    assert waited[0].notes[0].startswith("standing by: ")
    assert len(released(store)) == len(HUBS)
    # The standby takes over once the leader is gone for good: a clean stop releases the Lease at once.
    leader = next(i for i, r in reports.items() if r.results)
    assert pairs[leader][1].release()
    assert loops[1 - leader].step().notes[0] == "leading: this controller acts now"


def test_over_http_a_dead_holder_is_taken_over_after_the_lease_expires(served):
    store, kubeconfig = served
    api = client(kubeconfig)
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dead"}})
    now = [0.0]
    dead = Lease(api, "dead", holder="dead", duration=10)
    assert dead.hold() is None  # then it is killed: never renews
    heir = Lease(client(kubeconfig), "dead", holder="heir", duration=10, clock=lambda: now[0])
    assert heir.hold() == "Lease dead/hubfleet-controller is held by dead"
    now[0] = 9.0
    assert heir.hold() is not None
    now[0] = 10.0
    assert heir.hold() is None
    assert api.get(API_VERSION, "Lease", "dead", "hubfleet-controller")["spec"]["holderIdentity"] == "heir"


def test_status_reads_what_the_controller_wrote(catalog, cluster, monkeypatch):
    loop, lease = controller(catalog, make_backend(cluster, catalog), load_catalog(catalog), OPEN,
                             lease=Lease(cluster, "hubfleet-system", holder="controller-7f9c"))
    assert write_status(cluster, "hubfleet-system", lease.holder, loop.step(), loop.catalog_problems)
    (catalog / "courses" / "W101.yaml").write_text("code: [unclosed\n")  # a broken edit in git
    report = loop.step()
    assert report.errors and loop.standing_by is None
    assert write_status(cluster, "hubfleet-system", lease.holder, report, loop.catalog_problems)
    # Still broken a step later: the problem stays in the document, and an unchanged document costs no write.
    assert not write_status(cluster, "hubfleet-system", lease.holder, loop.step(), loop.catalog_problems)
    (catalog / "courses" / "W101.yaml").unlink()  # (so `status` can load the catalog)
    monkeypatch.setattr("hubfleet.cli.local_cmds.make_backend", lambda loaded, *a, **kw: KubernetesBackend(
        cluster, FakeHelm(cluster), hub_url=lambda hub: "http://127.0.0.1:9/"))
    result = CliRunner().invoke(app, ["status", str(catalog), "--at", OPEN.isoformat()])
    assert result.exit_code == 0, result.output
    assert "in use by controller controller-7f9c, Lease renewed" in result.output
    assert "controller problem: " in result.output and "W101.yaml" in result.output


def test_render_takes_the_controller_image_and_catalog_repository(catalog, tmp_path):
    import yaml

    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["render", str(catalog), "--out", str(out), "--at", OPEN.isoformat(),
                                      "--controller-image", "registry.example.edu/hubfleet:2.0",
                                      "--catalog-git", "https://git.example.edu/c.git", "--catalog-git-path", "uni"])
    assert result.exit_code == 0, result.output
    fleet = list(yaml.safe_load_all((out / "_fleet" / "manifests.yaml").read_text()))
    (deployment,) = [o for o in fleet if o["kind"] == "Deployment" and o["metadata"]["name"] == "hubfleet-controller"]
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    assert containers["controller"]["image"] == "registry.example.edu/hubfleet:2.0"
    assert containers["controller"]["command"] == ["hubfleet", "up", "/catalog/current/uni"]
    assert "--repo=https://git.example.edu/c.git" in containers["git-sync"]["args"]


def test_a_leader_busy_in_a_long_step_keeps_its_lease(cluster):
    """A helm upgrade can outlast the Lease: the background renewal keeps a standby from taking over meanwhile."""
    import threading

    cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}})
    leader = Lease(cluster, "ns", holder="leader", duration=2)
    assert leader.hold() is None
    stop = threading.Event()
    renewal = leader.renew_in_background(stop)
    standby = Lease(cluster, "ns", holder="standby", duration=2)
    try:
        seen = set()
        for _ in range(8):  # 4 s of the leader "applying" without a step of its own: twice the duration
            assert standby.hold() == "Lease ns/hubfleet-controller is held by leader"
            seen.add(cluster.get(API_VERSION, "Lease", "ns", "hubfleet-controller")["metadata"]["resourceVersion"])
            stop.wait(0.5)
        assert len(seen) > 1  # renewed meanwhile, so the standby never saw it silent for a whole duration
    finally:
        stop.set()
        renewal.join(5)


def test_a_controller_that_cannot_reach_its_lease_acts_on_nothing(catalog, cluster):
    class Unreachable(Lease):
        def hold(self):
            raise ConnectionError("api server down")

    loop, _ = controller(catalog, make_backend(cluster, catalog), load_catalog(catalog), OPEN,
                         lease=Unreachable(cluster, "hubfleet-system"))
    report = loop.step()
    assert report.results == [] and report.notes == ["standing by: cannot reach the Lease: api server down"]
    assert released(cluster) == set()


def test_a_controller_killed_mid_apply_is_restarted_and_converges(served, tmp_path):
    """kill -9 between two hubs' releases: the restarted process (a new Lease holder, after the dead one's Lease
    expired) finishes the fleet, and the hubs the first one made keep their secrets."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from conftest import wait_until

    store, kubeconfig = served
    for ns in list(store.list("v1", "Namespace")):  # the module's earlier tests used this store too
        if ns["metadata"]["name"] in HUBS:
            store.delete("v1", "Namespace", None, ns["metadata"]["name"])
    if _has_lease(store):
        store.delete(API_VERSION, "Lease", "hubfleet-system", "hubfleet-controller")
    catalog = write_catalog(tmp_path / "catalog")
    script = Path(__file__).parent / "fixtures" / "controller_process.py"

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), kubeconfig, str(catalog), OPEN.isoformat()],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def releases() -> set[str]:
        return {ns for ns in HUBS if _exists(store, ns, f"release-{ns}")}

    def secrets() -> dict[str, dict]:
        return {ns: store.get("v1", "Secret", ns, "hubfleet")["data"] for ns in releases()}

    first = start()
    try:
        wait_until(lambda: len(releases()) >= 1, what="the first release")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        before = secrets()
        assert 1 <= len(before) < len(HUBS)  # killed mid-apply: part of the fleet done
        second = start()
        try:
            wait_until(lambda: releases() == set(HUBS) and len(released(store)) == len(HUBS), what="convergence")
            assert {ns: s for ns, s in secrets().items() if ns in before} == before  # nothing regenerated
            holder = store.get(API_VERSION, "Lease", "hubfleet-system", "hubfleet-controller")["spec"]
            assert holder["leaseTransitions"] == 1  # the restarted process took the dead one's Lease over
        finally:
            second.send_signal(signal.SIGKILL)
            second.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)


def _exists(store, ns: str, name: str) -> bool:
    try:
        store.get("v1", "ConfigMap", ns, name)
        return True
    except Exception:  # noqa: BLE001 - NotFound, or the namespace is not there yet
        return False


def _has_lease(store) -> bool:
    try:
        store.get(API_VERSION, "Lease", "hubfleet-system", "hubfleet-controller")
        return True
    except Exception:  # noqa: BLE001
        return False


# ------------------------------------------------------------------ the controller's /metrics


def _scrape(url: str) -> dict[tuple[str, tuple], float]:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url, timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_controller_serves_the_loop_metrics_and_they_move_with_each_step(catalog, cluster, tmp_path, monkeypatch):
    from conftest import free_port

    port = free_port()
    monkeypatch.setenv("HUBFLEET_METRICS_PORT", str(port))
    monkeypatch.setenv("HUBFLEET_STATE", str(tmp_path / "state"))
    backend = make_backend(cluster, catalog)
    runner = backend.runner(catalog, load_catalog(catalog), OPEN)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        before = _scrape(url)
        assert before[("hubfleet_reconcile_duration_seconds_count", ())] == 0
        assert before[("hubfleet_hibernations_total", ())] == 0
        assert before[("hubfleet_wakes_total", (("outcome", "ok"), ("reason", "timetable")))] == 0
        first = runner.loop.step()
        assert len(first.results) == len(HUBS)
        after = _scrape(url)
        assert after[("hubfleet_reconcile_duration_seconds_count", ())] == 1
        assert after[("hubfleet_reconcile_duration_seconds_sum", ())] > 0
        assert after[("hubfleet_reconcile_drift", ())] == len(HUBS)  # the first plan created every hub
        runner.loop.step()
        again = _scrape(url)
        assert again[("hubfleet_reconcile_duration_seconds_count", ())] == 2
        assert again[("hubfleet_reconcile_drift", ())] == 0  # converged
        assert (tmp_path / "state" / "hubfleet-controller" / "loop_stats.json").is_file()  # survives a restart
    finally:
        backend.metrics_server.shutdown()
        backend.metrics_server.server_close()


def test_the_controllers_metrics_port_is_what_its_service_selects():
    from hubfleet.backends.kubernetes.controlplane import METRICS_PORT

    objects = controller_objects(DEFAULT_OPTIONS)
    (svc,) = [o for o in objects if o["kind"] == "Service"]
    assert svc["metadata"]["labels"]["app.kubernetes.io/name"] == "hubfleet"
    assert svc["metadata"]["labels"]["app.kubernetes.io/component"] == "controller"
    (deploy,) = [o for o in objects if o["kind"] == "Deployment"]
    assert svc["spec"]["selector"].items() <= deploy["spec"]["template"]["metadata"]["labels"].items()
    (ctl,) = [c for c in deploy["spec"]["template"]["spec"]["containers"] if c["name"] == "controller"]
    assert {"name": "HUBFLEET_METRICS_PORT", "value": str(METRICS_PORT)} in ctl["env"]
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": METRICS_PORT, "targetPort": METRICS_PORT,
                                     "protocol": "TCP"}]
