"""One writer per Kubernetes fleet: the CLI takes the controller's own Lease (coordination.k8s.io/v1), over HTTP.

Against the fake API server (HTTPS, the kubernetes client, resourceVersion checks), like the local flock
(tests/security/test_processes.py): a second writer exits 2 naming the one at work and changes nothing; the
controller stands by while a CLI applies; a writer killed while holding the fleet is taken over once its Lease
has gone unrenewed for a whole duration.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from test_k8s_backend import HUBS, OPEN, PV, write_catalog

from hubfleet.backends.kubernetes.backend import KubernetesBackend
from hubfleet.backends.kubernetes.cluster import KubernetesCluster, NotFound
from hubfleet.backends.kubernetes.controller import controller
from hubfleet.backends.kubernetes.helm import FakeHelm
from hubfleet.backends.kubernetes.lease import API_VERSION, Lease, LeaseBusy, LeaseLock
from hubfleet.catalog import load_catalog
from hubfleet.cli.main import app

NS = "hubfleet-system"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from hubfleet.testing.kubeapi import KubeApiServer, ServedCluster

    work = tmp_path_factory.mktemp("kubeapi")
    store = ServedCluster()
    store.register_kind(PV)
    server = KubeApiServer(store, work / "ca").start()
    server.kubeconfig(work / "kubeconfig")
    yield server
    server.stop()


@pytest.fixture
def fresh(api):
    """No hub and no Lease left by an earlier test; the fleet namespace there."""
    store = api.cluster
    for ns in HUBS:
        try:
            store.delete("v1", "Namespace", None, ns)
        except NotFound:
            pass
    try:
        store.delete(API_VERSION, "Lease", NS, "hubfleet-controller")
    except NotFound:
        pass
    try:
        store.get("v1", "Namespace", None, NS)
    except NotFound:
        store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    return api


def client(api) -> KubernetesCluster:
    return KubernetesCluster(kubeconfig=str(api.ca_dir.parent / "kubeconfig"))


def backend(api, catalog, helm=None) -> KubernetesBackend:
    return KubernetesBackend(client(api), helm or FakeHelm(api.cluster), catalog_root=catalog,
                             hub_url=lambda hub: "http://127.0.0.1:9/")  # no hub answers: enrolment skipped


def cli_apply(api, catalog, monkeypatch, helm):
    monkeypatch.setattr("hubfleet.cli.local_cmds.make_backend", lambda loaded, *a, **kw: backend(api, catalog, helm))
    return CliRunner().invoke(app, ["apply", str(catalog), "--yes", "--at", OPEN.isoformat()])


def holder(api) -> str | None:
    return (api.cluster.get(API_VERSION, "Lease", NS, "hubfleet-controller").get("spec") or {}).get("holderIdentity")


def test_an_apply_while_the_controller_leads_exits_2_naming_it_and_changes_nothing(fresh, tmp_path, monkeypatch):
    catalog = write_catalog(tmp_path / "catalog")
    controller_lease = Lease(client(fresh), NS, holder="hubfleet-controller-5d9f_1_a1b2c3 `hubfleet up /catalog`")
    assert controller_lease.hold() is None
    helm = FakeHelm(fresh.cluster)
    fresh.requests.clear()
    result = cli_apply(fresh, catalog, monkeypatch, helm)
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert "is in use by hubfleet-controller-5d9f_1_a1b2c3 `hubfleet up /catalog`" in said
    assert "One command at a time changes a fleet" in said
    assert fresh.writes(but=("Lease",)) == 0 and helm.write_count == 0  # not one object, not one release
    assert holder(fresh).startswith("hubfleet-controller-5d9f")  # the controller's Lease untouched
    # Once the controller hands the Lease over (a clean stop), the same apply goes through and lets go after.
    assert controller_lease.release()
    result = cli_apply(fresh, catalog, monkeypatch, helm)
    assert result.exit_code == 0, result.output
    assert {ns for (ns, _) in helm.releases} == set(HUBS)
    assert holder(fresh) is None


def test_a_second_cli_writer_is_refused_naming_the_first(fresh, tmp_path, monkeypatch):
    catalog = write_catalog(tmp_path / "catalog")
    first = LeaseLock(Lease(client(fresh), NS, holder="laptop_4242_c0ffee `hubfleet apply uni --yes`"))
    first.acquire()  # an apply in progress (its Lease renewed in the background meanwhile)
    try:
        result = cli_apply(fresh, catalog, monkeypatch, FakeHelm(fresh.cluster))
        assert result.exit_code == 2, result.output
        assert "in use by laptop_4242_c0ffee `hubfleet apply uni --yes`" in " ".join(result.output.split())
        with pytest.raises(LeaseBusy, match="laptop_4242_c0ffee"):
            LeaseLock(Lease(client(fresh), NS, holder="b")).acquire()
    finally:
        first.release()
    assert holder(fresh) is None


def test_the_controller_stands_by_while_a_cli_applies_then_leads(fresh, tmp_path):
    catalog = write_catalog(tmp_path / "catalog")
    cli = LeaseLock(Lease(client(fresh), NS, holder="laptop_4242_c0ffee `hubfleet apply uni --yes`"))
    cli.acquire()
    ctl = backend(fresh, catalog)
    loop, _ = controller(catalog, ctl, load_catalog(catalog), OPEN, lease=Lease(ctl.cluster, NS, holder="controller"))
    try:
        fresh.requests.clear()
        waited = loop.step()
        assert waited.results == [] and waited.notes == [
            "standing by: Lease hubfleet-system/hubfleet-controller is held by laptop_4242_c0ffee `hubfleet apply uni --yes`"]
        assert fresh.writes(but=("Lease",)) == 0  # the controller wrote nothing while the CLI held the fleet
    finally:
        cli.release()
    acted = loop.step()
    assert acted.notes[0] == "leading: this controller acts now" and len(acted.results) == len(HUBS)
    assert holder(fresh) == "controller"


def test_a_writer_killed_holding_the_fleet_is_taken_over_after_its_lease_runs_out(fresh):
    import time

    t = time.time()  # the dead writer's last renewal, and the wall clocks of those who come after it
    dead = Lease(client(fresh), NS, holder="killed `hubfleet apply uni --yes`", duration=1, wall=lambda: t)
    assert dead.hold() is None  # ... then kill -9: it never renews nor releases
    # Within its duration the record says it is alive: refused at once (refusing is safe whatever the clocks say).
    with pytest.raises(LeaseBusy, match="killed"):
        LeaseLock(Lease(client(fresh), NS, holder="next", wall=lambda: t + 0.5)).acquire()
    # Older than its duration: the next writer watches it unchanged for one duration by its own clock, then takes it.
    heir = LeaseLock(Lease(client(fresh), NS, holder="next", wall=lambda: t + 2))
    heir.acquire()
    try:
        assert holder(fresh) == "next"
    finally:
        heir.release()


def test_up_detach_while_the_controller_leads_exits_2_naming_it(fresh, tmp_path, monkeypatch):
    """`up --detach` is a one-off writer like `apply`; only a running `up` (a controller replica) stands by."""
    catalog = write_catalog(tmp_path / "catalog")
    controller_lease = Lease(client(fresh), NS, holder="hubfleet-controller-5d9f_1_a1b2c3 `hubfleet up /catalog`")
    assert controller_lease.hold() is None
    helm = FakeHelm(fresh.cluster)
    monkeypatch.setattr("hubfleet.cli.local_cmds.make_backend", lambda loaded, *a, **kw: backend(fresh, catalog, helm))
    try:
        fresh.requests.clear()
        result = CliRunner().invoke(app, ["up", str(catalog), "--detach", "--at", OPEN.isoformat()])
        assert result.exit_code == 2, result.output
        assert "is in use by hubfleet-controller-5d9f_1_a1b2c3" in " ".join(result.output.split())
        assert helm.write_count == 0 and fresh.writes(but=("Lease", "Namespace")) == 0
    finally:
        controller_lease.release()
