"""`hubfleet up` on a kubernetes catalog, as processes, against the fake API server over HTTPS.

Two controllers started at once (two replicas of the Deployment): one leads, the other stands by on the Lease and
acts on nothing. The leader is killed with SIGKILL in the middle of its first apply: once its Lease has gone
unrenewed for a whole duration, the standby takes over and converges the fleet, with no object made twice, no
secret regenerated and no release installed twice. SIGTERM (a pod's stop) hands the Lease over at once.
The command is the real CLI (tests/fixtures/hubfleet_up.py swaps only how the backend reaches the cluster).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_until

from test_k8s_backend import HUBS, OPEN, PV, write_catalog

from hubfleet.backends.kubernetes import records
from hubfleet.backends.kubernetes.cluster import NotFound
from hubfleet.backends.kubernetes.lease import API_VERSION

LEASE_SECONDS = 3
SCRIPT = Path(__file__).parent / "fixtures" / "hubfleet_up.py"


@pytest.fixture
def api(tmp_path):
    from hubfleet.testing.kubeapi import KubeApiServer, ServedCluster

    store = ServedCluster()
    store.register_kind(PV)
    server = KubeApiServer(store, tmp_path / "ca").start()
    yield server, str(server.kubeconfig(tmp_path / "kubeconfig"))
    server.stop()


def release(store, hub: str) -> dict | None:
    try:
        return store.get("v1", "ConfigMap", hub, f"release-{hub}")["data"]
    except NotFound:
        return None


def lease(store) -> dict:
    try:
        return store.get(API_VERSION, "Lease", "hubfleet-system", "hubfleet-controller").get("spec") or {}
    except NotFound:
        return {}


def test_two_ups_one_acts_a_kill_9_mid_apply_is_taken_over_and_converges(api, tmp_path):
    server, kubeconfig = api
    store = server.cluster
    catalog = write_catalog(tmp_path / "catalog")
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}

    def up(name: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(SCRIPT), kubeconfig, str(LEASE_SECONDS), "up", str(catalog),
                                 "--at", OPEN.isoformat(), "--interval", "0.5"],
                                stdout=logs[name].open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    procs = {"a": up("a"), "b": up("b")}
    try:
        wait_until(lambda: any(release(store, hub) for hub in HUBS), what="the first release")
        holder = lease(store)["holderIdentity"]
        (leader,) = [n for n, p in procs.items() if f"_{p.pid}_" in holder]
        standby = "b" if leader == "a" else "a"
        procs[leader].send_signal(signal.SIGKILL)  # mid-apply: one release a second and a half
        procs[leader].wait(10)
        done = {hub: dict(release(store, hub)) for hub in HUBS if release(store, hub)}
        assert 1 <= len(done) < len(HUBS), done
        secrets = {hub: store.get("v1", "Secret", hub, "hubfleet")["data"] for hub in done}
        assert all(r["installed-by-1"] == str(procs[leader].pid) for r in done.values())  # the standby made none

        wait_until(lambda: all(release(store, hub) for hub in HUBS)
                   and len(store.list("v1", "ConfigMap", None, records.RECORD_LABEL)) == len(HUBS),
                   timeout=120, what="the standby converging the fleet")
        heir = lease(store)
        assert f"_{procs[standby].pid}_" in heir["holderIdentity"] and heir["leaseTransitions"] == 1
        for hub in HUBS:
            rel = release(store, hub)
            assert rel["revision"] == "1", rel  # never installed twice: the standby adopted what was there
            assert rel["installed-by-1"] == str(procs[leader if hub in done else standby].pid)
            assert len(store.list("v1", "Secret", hub)) == 1  # one hub Secret, not a second one
        assert {hub: store.get("v1", "Secret", hub, "hubfleet")["data"] for hub in done} == secrets
        said = logs[standby].read_text()
        # It stood by on the leader's Lease, and acted only once it had taken it over.
        assert 0 <= said.find("standing by: ") < said.find("leading: this process acts now") and "FAILED" not in said

        # A pod's stop: SIGTERM hands the Lease over at once; the hubs keep running (they are the cluster's).
        procs[standby].send_signal(signal.SIGTERM)
        assert procs[standby].wait(30) == 0, logs[standby].read_text()
        assert "holderIdentity" not in lease(store)
        assert all(release(store, hub) for hub in HUBS)
        assert "The hubs keep running in the cluster." in logs[standby].read_text()
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_a_controller_holds_a_mass_stop_back_instead_of_crash_looping(tmp_path, capsys):
    """The controller's first plan would stop every hub (a wrong date, a catalog folder missing from git): nobody
    reads an exit code in a pod, so it keeps them running and says so, as the loop does; an operator's `up` in a
    terminal is refused with exit 2 instead (tests/security/test_processes.py)."""
    import datetime as dt

    from hubfleet.backends.kubernetes.backend import KubernetesBackend
    from hubfleet.backends.kubernetes.fake import FakeCluster
    from hubfleet.backends.kubernetes.helm import FakeHelm
    from hubfleet.catalog import load_catalog
    from hubfleet.cli.local_cmds import _apply_once
    from hubfleet.plan import plan as make_plan

    catalog = write_catalog(tmp_path / "catalog")
    cluster = FakeCluster(extra_kinds=[PV])
    backend = KubernetesBackend(cluster, FakeHelm(cluster), catalog_root=catalog)
    loaded = load_catalog(catalog)
    report, _ = _apply_once(backend, loaded, make_plan(loaded.catalog, OPEN), False, hold_back=True)
    assert report.ok and len(report.results) == len(HUBS)
    later = make_plan(loaded.catalog, dt.date(2031, 1, 1))  # every presentation long over
    report, _ = _apply_once(backend, loaded, later, False, hold_back=True)
    assert report.results == []  # nothing stopped, archived or deleted
    assert all(hub.running for hub in backend.observe().hubs.values())
    said = " ".join(capsys.readouterr().err.split())
    assert "this plan would stop 3 of the 3 running hub(s)" in said and "kept running" in said
