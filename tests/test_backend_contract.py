"""The backend contract, one suite for both backends: the same plans, faults and assertions against the local
backend (real JupyterHub processes, demo mode) and the Kubernetes backend on the z2jh tier (the fake API server
over HTTPS with the kubernetes client, real ``helm template`` of the chart written through it, the process kubelet
running the chart's hub and proxy pods). "Zero writes" counts the API server's write requests.

Each backend gets one small two-hub fleet for the whole module (real hubs take seconds to boot), and the tests run
in file order against it; each says what it leaves behind. What differs between backends is only how a test looks
at the fleet from outside (``Harness``): pids and file mtimes for local processes, objects' resourceVersions and
helm revisions for the cluster. Everything the test *does* goes through the ``Backend`` protocol.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import free_port, running_in

from hubfleet.backends.base import Backend
from hubfleet.catalog import load_catalog
from hubfleet.plan import plan
from hubfleet.plan.diff import Action, Kind, Plan

OPEN = dt.date(2026, 11, 1)  # both presentations open
RETIRED = dt.date(2027, 8, 1)  # TM351-2026J past read-only (ended 2027-06-10 + 30 days): archive, stop, delete
A, B = "tm351-2026j", "m269-2026j"
A_KEY = "TM351-2026J"
pytestmark = pytest.mark.slow


def write_catalog(root: Path, backend: str, tm351_image: str = "quay.io/jupyter/minimal-notebook:2026-11-24") -> Path:
    (root / "courses").mkdir(parents=True, exist_ok=True)
    extra = "domain: hubs.test.example" if backend == "kubernetes" else ""
    (root / "fleet.yaml").write_text(textwrap.dedent(f"""\
        fleet:
          name: contract
          backend: {backend}
          topology: per-presentation
          {extra}
          defaults:
            image: quay.io/jupyter/minimal-notebook:2026-11-24
            storage: {{layout: per-presentation, size: 1Gi}}
        """))
    (root / "courses" / "TM351.yaml").write_text(textwrap.dedent(f"""\
        code: TM351
        title: Data management
        images: [{{name: default, image: "{tm351_image}", display_name: TM351}}]
        presentations:
          - {{id: 2026J, start: 2026-10-03, end: 2027-06-10, enrolment: [{{users: [alice, bob]}}]}}
        """))
    (root / "courses" / "M269.yaml").write_text(textwrap.dedent("""\
        code: M269
        title: Algorithms
        presentations:
          - {id: 2026J, start: 2026-10-10, end: 2027-09-30, enrolment: [{users: [carol]}]}
        """))
    return root


class Harness:
    """How a test sees one backend's fleet from outside, and the faults it can inject. Not part of the contract."""

    kind: str
    catalog: Path
    backend: Backend
    partial_secrets: dict[str, bytes] = {}

    def spec(self, date: dt.date = OPEN):  # noqa: ANN201
        return plan(load_catalog(self.catalog).catalog, date)

    def reload(self) -> None:
        """Pick up an edited catalog (a new backend object, as a new CLI command would make)."""
        raise NotImplementedError

    def footprint(self, hub: str) -> Any:
        """Anything a write to this hub would change."""
        raise NotImplementedError

    def writes(self) -> int | None:
        """Writes counted since the last reset_writes, where the backend's world can count them."""
        return None

    def reset_writes(self) -> None:
        pass

    def secrets(self, hub: str) -> dict[str, bytes]:
        """The hub's generated secrets ({} if it has none yet)."""
        raise NotImplementedError

    def break_hub(self, hub: str) -> None:
        """A fault that makes converging this hub (only) fail."""
        raise NotImplementedError

    def mend_hub(self, hub: str) -> None:
        raise NotImplementedError

    def student_work(self, hub: str, presentation: str, user: str) -> None:
        """A student of the hub has files that only an archive may outlive."""
        raise NotImplementedError

    def has_student_work(self, hub: str, presentation: str, user: str) -> bool:
        raise NotImplementedError

    def archive_completes(self, presentation: str) -> None:
        """Whatever runs an archive out of band (the cluster's archive Job) finishes and records it verified."""

    def settle(self) -> None:
        """After an apply: what the backend's world does on its own (the cluster's controllers start the new
        releases' pods and stop the removed ones; the hubs come up)."""


class LocalHarness(Harness):
    kind = "local"

    def __init__(self, root: Path) -> None:
        from hubfleet.backends.local.fleetstate import FleetPaths

        self.catalog = write_catalog(root / "catalog", "local")
        self.state = root / "state"
        self.port = free_port()
        self.paths = FleetPaths(self.state)
        self.reload()

    def reload(self) -> None:
        from hubfleet.backends.local.backend import LocalBackend

        self.backend = LocalBackend(self.state, self.state / "storage", load_catalog(self.catalog), port=self.port)

    def footprint(self, hub: str) -> Any:
        from hubfleet.backends.local import process

        hp = self.paths.hub(hub)
        pids = {p.name: (r.pid if (r := process.read_alive(p)) else None) for p in (hp.hub_pidfile, hp.proxy_pidfile)}
        files = [hp.hub_json, hp.members, hp.applied, hp.config, *hp.secrets()]
        return pids, {f.name: f.stat().st_mtime_ns for f in files if f.exists()}

    def secrets(self, hub: str) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in self.paths.hub(hub).secrets() if p.exists()}

    def break_hub(self, hub: str) -> None:
        # A file where the hub's log folder goes: the disk refuses this hub's converge and nothing else.
        logs = self.paths.hub(hub).logs
        logs.parent.mkdir(parents=True, exist_ok=True)
        logs.write_text("not a folder")

    def mend_hub(self, hub: str) -> None:
        self.paths.hub(hub).logs.unlink()

    def _course_dir(self, hub: str, presentation: str, user: str) -> Path:
        from hubfleet.backends.local.workspace import workspace_for

        pres = next(p for h in self.spec().hubs if h.name == hub for p in h.presentations if p.key == presentation)
        return workspace_for(self.state / "storage", hub, user, pres).course_dir

    def student_work(self, hub: str, presentation: str, user: str) -> None:
        folder = self._course_dir(hub, presentation, user)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "essay.md").write_text("week 1: normal forms\n")

    def has_student_work(self, hub: str, presentation: str, user: str) -> bool:
        return (self._course_dir(hub, presentation, user) / "essay.md").is_file()

    def close(self) -> None:
        from hubfleet.backends.local import process
        from hubfleet.backends.local.backend import stop_fleet

        seen = running_in(self.state)
        for pidfile in self.state.rglob("*.pid.json"):
            record = process.read_alive(pidfile)
            if record and (proc := record.process()):
                seen += [proc, *proc.children(recursive=True)]
        stop_fleet(self.state)
        _, alive = psutil.wait_procs(seen, timeout=30)
        assert alive == [] and running_in(self.state) == [], f"left running: {alive}"


class KubernetesHarness(Harness):
    """The z2jh tier as the cluster: the fake API server over HTTPS, reached by the backend with the kubernetes
    client; real ``helm template`` of the chart, written through the same API server (helm's own writes count
    too); and the process kubelet running each release's hub and proxy pods, so a hub that was created answers
    its REST API. The harness plays the Deployment controller (``settle``); nothing else stands in."""

    kind = "kubernetes"

    def __init__(self, root: Path) -> None:
        from hubfleet.backends.kubernetes.cluster import KindInfo, KubernetesCluster
        from hubfleet.testing.chart import ChartCluster, TemplateHelm

        self.catalog = write_catalog(root / "catalog", "kubernetes")
        self.chart = ChartCluster(self.catalog, root / "cluster").start()
        self.store = self.chart.cluster
        self.store.register_kind(KindInfo("v1", "PersistentVolume", "persistentvolumes", False))
        self.client = KubernetesCluster(kubeconfig=str(self.chart.api.kubeconfig(root / "kubeconfig")))

        class Helm(TemplateHelm):  # a release can be made to fail, like a helm upgrade that times out
            fail_on: dict[str, str] = {}

            def upgrade_install(self, release: str, namespace: str, *args: Any, **kwargs: Any):  # noqa: ANN202
                from hubfleet.backends.kubernetes.helm import HelmError

                if release in self.fail_on:
                    raise HelmError(f"helm upgrade --install {release}", self.fail_on[release], 1)
                return super().upgrade_install(release, namespace, *args, **kwargs)

        self.helm = Helm(self.client)
        self.reload()

    def reload(self) -> None:
        from hubfleet.backends.kubernetes.backend import KubernetesBackend
        from hubfleet.testing.chart import chart_dir

        self.backend = KubernetesBackend(self.client, self.helm, chart=str(chart_dir()), concurrency=2,
                                         catalog_root=self.catalog, hub_url=self.proxy_url)

    def proxy_url(self, hub: str) -> str:
        """Where the hub's proxy pod listens (what its Ingress would reach)."""
        from hubfleet.testing.chart import PROXY_PORT

        pods = [p for p in self.store.list("v1", "Pod", hub) if p["metadata"]["labels"].get("component") == "proxy"]
        ip = pods[0]["status"].get("podIP") if pods else None
        return f"http://{ip}:{PROXY_PORT}/" if ip else "http://127.0.0.1:9/"  # no proxy pod: nothing answers

    def settle(self) -> None:
        import httpx

        from hubfleet.hubapi.tls import tls_context
        from conftest import wait_until

        self.chart.kubelet.reconcile_deployments()
        for hub in {ns for (ns, _release) in self.helm.releases}:
            def answers(hub: str = hub) -> bool:
                try:
                    return httpx.get(self.proxy_url(hub) + "hub/api/", timeout=2, verify=tls_context()).status_code == 200
                except httpx.HTTPError:
                    return False

            try:
                wait_until(answers, timeout=120, what=f"hub {hub} answering through its proxy pod")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{self.chart.logs(hub, 'hub')[-3000:]}") from None

    def footprint(self, hub: str) -> Any:
        # Pods and Events are the kubelet's to write; which pods run (their names) is part of the footprint. A
        # Deployment's status is the Deployment controller's (ready replicas, as the pods' probes pass): its
        # spec and metadata are what a write by the backend or helm would change.
        import json

        def version(o: dict) -> str | None:
            if o["kind"] == "Deployment":
                return json.dumps([o["spec"], o["metadata"].get("annotations"), o["metadata"].get("labels")],
                                  sort_keys=True)
            return o["metadata"].get("resourceVersion")

        objects = sorted((o["kind"], o["metadata"]["name"], version(o))
                         for o in self.store.objects()
                         if o["metadata"].get("namespace") == hub and o["kind"] not in ("Pod", "Event"))
        pods = sorted(p["metadata"]["name"] for p in self.store.list("v1", "Pod", hub))
        release = self.helm.status(hub, hub)
        return objects, pods, release.revision if release else None

    def writes(self) -> int | None:
        return self.chart.api.writes()  # every write request the API server got: the backend's and helm's

    def reset_writes(self) -> None:
        self.chart.api.requests.clear()

    def secrets(self, hub: str) -> dict[str, bytes]:
        from hubfleet.backends.kubernetes.cluster import NotFound

        try:
            return {k: v.encode() for k, v in self.store.get("v1", "Secret", hub, "hubfleet")["data"].items()}
        except NotFound:
            return {}

    def break_hub(self, hub: str) -> None:
        self.helm.fail_on[hub] = "Error: INSTALLATION FAILED: context deadline exceeded"

    def mend_hub(self, hub: str) -> None:
        self.helm.fail_on.pop(hub)

    def student_work(self, hub: str, presentation: str, user: str) -> None:
        # The claim KubeSpawner makes at a student's first start (labels as kubespawner + storage_extra_labels).
        self.store.create({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": f"claim-{hub}-{user}", "namespace": hub,
                         "annotations": {"hub.jupyter.org/username": user},
                         "labels": {"app": "jupyterhub", "component": "singleuser-storage",
                                    "hub.jupyter.org/username": user, "hubfleet.io/presentation": hub}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        })

    def has_student_work(self, hub: str, presentation: str, user: str) -> bool:
        from hubfleet.backends.kubernetes.cluster import NotFound

        try:
            return bool(self.store.get("v1", "PersistentVolumeClaim", hub, f"claim-{hub}-{user}"))
        except NotFound:
            return False

    def archive_completes(self, presentation: str) -> None:
        from hubfleet.backends.kubernetes import records
        from hubfleet.backends.kubernetes.cluster import NotFound

        # What the archive Job writes once it has read its archive back: the verified marker, in the fleet
        # namespace so it outlives the hub's. (The Job itself: tests/test_lifecycle_k8s.py.)
        try:
            self.store.get("v1", "Namespace", None, "hubfleet-system")
        except NotFound:
            self.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "hubfleet-system"}})
        self.store.create(records.marker_object("hubfleet-system", presentation, layout="per-presentation",
                                                volume=f"presentations/{presentation}/{{username}}"))

    def close(self) -> None:
        self.chart.stop()
        assert self.chart.kubelet.pods == {}, "pods left running"


@pytest.fixture(scope="module", params=["kubernetes", "local"])
def h(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp(f"contract-{request.param}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUBFLEET_DEMO_MODE", "1")  # local: no system users; the in-hub detail has its own tests
        harness = LocalHarness(root) if request.param == "local" else KubernetesHarness(root)
        try:
            yield harness
        finally:
            harness.close()


def apply(h: Harness, date: dt.date = OPEN):  # noqa: ANN201
    """What `hubfleet apply` does through the contract: prepare the fleet, plan against what runs, apply."""
    spec = h.spec(date)
    h.backend.prepare(spec)
    report = h.backend.apply(h.backend.plan(spec, h.backend.observe()), spec)
    h.settle()
    return report


def kinds(p: Plan) -> list[tuple[Kind, str]]:
    return [(a.kind, a.hub) for a in p.actions]


# ------------------------------------------------------------------------------------------------ tests


def test_a_failure_on_one_hub_does_not_stop_the_others(h: Harness) -> None:
    assert isinstance(h.backend, Backend)
    h.break_hub(B)
    spec = h.spec()
    assert sorted(kinds(h.backend.plan(spec, h.backend.observe()))) == [(Kind.create, B), (Kind.create, A)]
    report = apply(h)
    assert [r.action.hub for r in report.failures] == [B]
    assert {r.action.hub for r in report.results if r.ok} == {A}
    state = h.backend.observe()
    assert state.hubs[A].running and B not in state.hubs  # B was never verified up, so it is planned again
    h.mend_hub(B)
    h.partial_secrets = h.secrets(B)  # whatever B's failed create made on the way (the cluster: its Secret)
    # Leaves: A up; B not recorded, its fault removed.


def test_create_retries_exactly_the_failed_hub_and_brings_every_hub_up(h: Harness) -> None:
    spec = h.spec()
    assert kinds(h.backend.plan(spec, h.backend.observe())) == [(Kind.create, B)]
    report = apply(h)
    assert report.ok, [r.message for r in report.failures]
    state = h.backend.observe()
    for hub in spec.hubs:
        assert state.hubs[hub.name].running
        assert state.hubs[hub.name].applied == hub.model_dump(mode="json")
        assert h.secrets(hub.name) and all(h.secrets(hub.name).values())
    assert h.secrets(B).items() >= h.partial_secrets.items()  # the retry reused them, did not regenerate
    # Real hubs on both backends (the cluster's run as pods of the process kubelet): each answers its REST API.
    assert [(s.name, s.up) for s in h.backend.status(spec)] == [(hub.name, True) for hub in spec.hubs]
    # Leaves: both hubs up.


def test_reapply_is_a_no_op_with_zero_writes(h: Harness) -> None:
    before = {hub: h.footprint(hub) for hub in (A, B)}
    secrets = {hub: h.secrets(hub) for hub in (A, B)}
    h.reset_writes()
    spec = h.spec()
    h.backend.prepare(spec)  # the fleet-level objects too (the cluster's `_fleet/`): unchanged, so not written
    p = h.backend.plan(spec, h.backend.observe())
    assert p == Plan()
    assert h.backend.apply(p, spec).results == []
    assert {hub: h.footprint(hub) for hub in (A, B)} == before  # no process restarted, no record rewritten
    assert {hub: h.secrets(hub) for hub in (A, B)} == secrets
    assert h.writes() in (0, None)  # the cluster counts: not one API or helm write


def test_one_field_change_touches_one_hub_only(h: Harness) -> None:
    untouched = h.footprint(B)
    secrets = {hub: h.secrets(hub) for hub in (A, B)}
    write_catalog(h.catalog, h.kind, tm351_image="ghcr.io/example/tm351:2026J-r2")
    h.reload()
    spec = h.spec()
    p = h.backend.plan(spec, h.backend.observe())
    assert kinds(p) == [(Kind.update, A)] and [c.field for c in p.actions[0].changes] == ["profiles[default].image"]
    h.reset_writes()
    report = apply(h)
    assert report.ok and [r.action.hub for r in report.results] == [A], [r.message for r in report.failures]
    assert h.footprint(B) == untouched
    state = h.backend.observe()
    assert state.hubs[A].applied == next(x for x in spec.hubs if x.name == A).model_dump(mode="json")
    assert {hub: h.secrets(hub) for hub in (A, B)} == secrets  # a changed hub keeps its secrets too
    assert h.backend.plan(spec, state) == Plan()
    # Leaves: both hubs up, A on the new image.


def test_delete_without_a_verified_archive_is_refused_and_changes_nothing(h: Harness) -> None:
    h.student_work(A, A_KEY, "alice")
    spec = h.spec(RETIRED)
    state = h.backend.observe()
    assert not state.presentations[A_KEY].archived
    report = h.backend.apply(Plan(actions=(Action(kind=Kind.delete, hub=A),)), spec)  # a delete with no archive
    assert not report.ok and "archive" in report.results[0].message
    state = h.backend.observe()
    assert A in state.hubs and state.hubs[A].running
    assert h.has_student_work(A, A_KEY, "alice")
    # Leaves: both hubs up; alice has work in A's presentation, not archived.


def test_archive_comes_before_delete_and_delete_waits_for_a_verified_archive(h: Harness) -> None:
    spec = h.spec(RETIRED)
    b_before = h.footprint(B)
    b_secrets = h.secrets(B)
    assert kinds(h.backend.plan(spec, h.backend.observe())) == [(Kind.archive, A), (Kind.stop, A), (Kind.delete, A)]
    for _ in range(3):
        report = apply(h, RETIRED)
        done = [r.action.kind for r in report.results if r.action.hub == A]
        if Kind.delete in done:
            assert Kind.archive not in done or done.index(Kind.archive) < done.index(Kind.delete)
        state = h.backend.observe()
        if A not in state.hubs:
            break
        # Not deleted yet: only because its archive is not verified yet, and the student's work is still there.
        assert not state.presentations[A_KEY].archived and h.has_student_work(A, A_KEY, "alice")
        h.archive_completes(A_KEY)
    state = h.backend.observe()
    assert A not in state.hubs, "the hub was never deleted"
    assert state.presentations[A_KEY].archived  # gone only with a verified archive behind it
    assert h.footprint(B) == b_before and h.secrets(B) == b_secrets and state.hubs[B].running
    assert h.backend.plan(spec, state) == Plan()
