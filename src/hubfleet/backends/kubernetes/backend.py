"""`KubernetesBackend`: each hub is a Zero-to-JupyterHub release in its own namespace, driven from a Plan.

One hub's converge (create, update and start are the same operation, as in the local backend):

1. read the hub's seed material from the catalog (`catalog_root`) and apply the namespace objects
   `render_manifests` gives (Namespace with cost labels, quota, limits, claims kept on uninstall) with
   `apply_object`, which writes nothing when an object already matches. Material ConfigMaps are content-named
   and immutable: created when absent, never updated (material.py);
2. make sure the hub's Secret exists (secrets.py: generated once, never overwritten);
3. compare the rendered values with what the release holds (`helm get values`) and run `helm upgrade --install`
   only if they differ, the release is not deployed, or it runs another chart version. So an update whose spec
   change does not reach the values (dates, enrolment sources) costs no helm write and no hub restart;
4. delete material ConfigMaps no profile names any more (after the release stopped pointing at them), and the
   hub's other stateless objects (by label) that the render no longer has (`_prune`);
5. record the applied spec (records.py) — last, so a failed release is retried by the next plan.

Course material is not in the spec, so a plan cannot see it change: `material_updates` adds an `update` for each
running hub whose wanted material ConfigMaps are not all in its namespace.

Hubs are independent: their action lists run in parallel (`concurrency` releases at a time) and one hub's
failure is reported without stopping the others. Within a hub the plan's order holds (executor.run_plan, shared
with the local backend).

Stopping, deleting, archiving and purging a hub are retirement.py's; status, hibernation and waking are
hubstate.py's (both mixins of `KubernetesBackend`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubfleet.backends.base import (
    ApplyReport, FleetUnavailable, HubEndpoint, HubStatus, Progress, Say,
)
from hubfleet.backends.executor import run_plan
from hubfleet.plan.diff import Action, FleetState, Kind, ObservedHub, Plan, diff
from hubfleet.plan.spec import FleetSpec, HubSpec

from . import hibernation
from . import material as mat
from .prewarm import placeholders_in, prewarm_values
from . import records
from .cluster import Cluster, ClusterError, ClusterUnavailable, Conflict, NotFound
from .fleet import DEFAULT_OPTIONS, MANAGED_BY, MANAGED_SELECTOR, RenderOptions, options_for
from .helm import Helm, HelmError, HelmMissing
from .hubstate import HubStates, WakeFailed
from .manifests import namespace_name, render_manifests
from .portal import mirror_client_secret, portal_addresses, uses_portal, waker_endpoints
from .retirement import ArchiveJobFailed, LifecycleNotAvailable, RefusedDelete, Retirement
from .secrets import MissingProvidedKeys, ensure_hub_secret, read_key
from .values import render_values

if TYPE_CHECKING:  # the Lease is imported when a writer lock is asked for
    from .lease import LeaseLock

CHART = "jupyterhub"
SERVICE_TOKEN_KEY = "hubfleet-api-token"  # the key values.py points hub.extraEnv.HUBFLEET_API_TOKEN at
HUB_SELECTOR = MANAGED_SELECTOR + ",hubfleet.io/hub"  # hub namespaces, not the fleet's own hubfleet-system

# What `_prune` may delete: kinds render_manifests writes that hold no state. Labels of objects other rules own.
PRUNABLE_KINDS = (("v1", "ConfigMap"), ("v1", "ResourceQuota"), ("v1", "LimitRange"))
FLEET_PRUNABLE_KINDS = (("apps/v1", "Deployment"), ("apps/v1", "DaemonSet"), ("v1", "Service"),
                        ("networking.k8s.io/v1", "Ingress"))  # the portal's, when the fleet leaves auth: embedded
KEPT_BY_OTHER_RULES = {records.RECORD_LABEL, records.MARKER_LABEL, mat.LABEL, "hubfleet.io/archive-job"}

ExtraValues = Mapping[str, Any] | Callable[[HubSpec], Mapping[str, Any]] | None


class KubernetesUnavailable(RuntimeError):
    """No cluster to talk to, or no helm: a message a person can act on, for the CLI to print."""


def connect(kubeconfig: str | None = None, context: str | None = None, **kwargs: Any) -> "KubernetesBackend":
    """The production backend: the kubeconfig's cluster and the helm binary, or KubernetesUnavailable."""
    from .cluster import KubernetesCluster
    from .helm import HelmCli

    try:
        cluster = KubernetesCluster(kubeconfig=kubeconfig, context=context)
    except ClusterUnavailable as exc:
        raise KubernetesUnavailable(f"cannot use the kubernetes backend: {exc}") from exc
    try:
        helm = HelmCli(kubeconfig=kubeconfig, kube_context=context)
    except HelmMissing as exc:
        raise KubernetesUnavailable(f"cannot use the kubernetes backend: {exc}") from exc
    return KubernetesBackend(cluster, helm, **kwargs)


class KubernetesBackend(HubStates, Retirement):
    name = "kubernetes"

    def __init__(
        self,
        cluster: Cluster,
        helm: Helm,
        *,
        chart_version: str = "4.4.0",
        concurrency: int = 4,
        chart: str = CHART,
        fleet: str | None = None,
        options: RenderOptions = DEFAULT_OPTIONS,
        extra_values: ExtraValues = None,
        hub_url: Callable[[str], str] | None = None,
        helm_timeout: float = 600,
        api_timeout: float = 5,
        catalog_root: Path | None = None,
    ):
        """`fleet` limits observe to one fleet's namespaces (several fleets may share a cluster).
        `extra_values` is laid over each hub's rendered values (site choices the catalog does not hold:
        node selectors, the proxy's service type); `hub_url(hub)` overrides where this process reaches a hub
        (default https://{hub}.{domain}/, from the applied spec), e.g. through a NodePort in tests.
        `catalog_root` is where seed sources are read from (they are relative to it); a hub that seeds
        cannot be converged without it."""
        self.cluster, self.helm = cluster, helm
        self.chart, self.chart_version = chart, chart_version
        self.concurrency = max(1, concurrency)
        self.fleet = fleet
        self.options = options
        self.extra_values = extra_values
        self.hub_url = hub_url
        self.helm_timeout, self.api_timeout = helm_timeout, api_timeout
        self.catalog_root = catalog_root
        # Hub -> the timetable's warm-up window in force now (plan.timetable); the controller sets it each step.
        self.warm: Callable[[], dict] = dict
        self._next_idle_check: dict[str, float] = {}
        self.stats = None  # the controller's LoopStats (runner): hibernations and timetable wakes are counted there

    # ---------------------------------------------------------------------------------------- the contract

    def observe(self) -> FleetState:
        selector = HUB_SELECTOR + (f",hubfleet.io/fleet={self.fleet}" if self.fleet else "")
        try:
            namespaces = [ns["metadata"]["name"] for ns in self.cluster.list("v1", "Namespace", None, selector)]
            all_records = records.read_records(self.cluster)
            markers = records.read_markers(self.cluster)
            claims = records.student_claims(self.cluster)
        except ClusterUnavailable as exc:
            raise KubernetesUnavailable(str(exc)) from exc
        # A labelled namespace without a record is a create that never finished: left out, so the next plan
        # says `create` again (and apply adopts what is there) rather than an update listing every field.
        recorded = {ns: all_records[ns] for ns in namespaces if ns in all_records}
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            statuses = dict(zip(recorded, pool.map(self._release_status, recorded)))
        hubs = {}
        for ns, applied in recorded.items():
            name = applied.get("name", ns)
            status = statuses[ns]
            try:
                asleep = hibernation.is_hibernated(self.cluster, ns)
            except ClusterUnavailable as exc:
                raise KubernetesUnavailable(str(exc)) from exc
            hubs[name] = ObservedHub(name=name, running=bool(status and status.deployed) and not asleep,
                                     applied=applied, hibernated=asleep)
        presentations = records.observed_presentations(recorded, claims, markers)
        return FleetState(hubs=hubs, presentations=presentations)

    def apply(self, plan: Plan, spec: FleetSpec, progress: Progress | None = None) -> ApplyReport:
        say: Progress = progress or (lambda action, message: None)
        wanted = {h.name: h for h in spec.hubs}
        return run_plan(plan, lambda a: self._do(a, wanted.get(a.hub), spec, lambda m: say(a, m)),
                        concurrency=self.concurrency, say=say, explain=_explain)

    def endpoint(self, hub: str) -> HubEndpoint:
        ns = hub
        applied = records.read_record(self.cluster, ns)
        if applied is None and self.hub_url is None:
            raise KeyError(f"hub {hub} has never been applied to this cluster (no {records.RECORD_NAME} in {ns})")
        base = self.hub_url(hub) if self.hub_url else applied["url"]
        token = read_key(self.cluster, ns, self.options.secret_name, SERVICE_TOKEN_KEY)
        return HubEndpoint(api_url=base.rstrip("/") + "/hub/api", token=token)

    def status(self, spec: FleetSpec, query_api: bool = True) -> list[HubStatus]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda hub: self._hub_status(hub, query_api), spec.hubs))

    def plan(self, spec: FleetSpec, state: FleetState) -> Plan:
        # Course material is content, not spec: only the cluster can say a hub's material changed.
        return self.prewarm_updates(self.material_updates(diff(spec, state), spec, state), spec, state)

    def prepare(self, spec: FleetSpec) -> None:
        """The fleet-level objects (``apply_fleet_objects``) every hub relies on, before any hub's release."""
        try:
            self.apply_fleet_objects(spec)
        except ClusterError as exc:
            raise FleetUnavailable(f"cannot apply the fleet's objects: {_explain(exc)}") from exc

    def access(self, spec: FleetSpec) -> list[str]:
        lines = [f"  {hub.name}: {self.hub_url(hub.name) if self.hub_url else hub.url}" for hub in spec.hubs]
        return [*lines, "Enrol students with `hubfleet enrol sync` if a hub did not answer from here yet."]

    def writer_lock(self) -> LeaseLock:
        """The controller's Lease (lease.LeaseLock): a CLI writer takes it like a controller replica does, so a CLI
        `apply` never runs while the controller (or another CLI) acts: it exits 2 naming the holder.
        ``holder()`` says who holds the Lease and what the controller's latest step could not do."""
        import sys

        from .controller_status import read_status
        from .lease import Lease, LeaseLock, identity

        ns = self.options.system_namespace

        def prepare() -> None:  # the Lease lives in the fleet namespace: created if missing, else left to render_fleet
            try:
                self.cluster.get("v1", "Namespace", None, ns)
            except NotFound:
                try:
                    self.cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {
                        "name": ns, "labels": {**MANAGED_BY, **({"hubfleet.io/fleet": self.fleet} if self.fleet else {})}}})
                except Conflict:
                    pass  # another writer made it just now

        def describe() -> str | None:
            try:
                lines = read_status(self.cluster, ns)
            except ClusterError:
                return None
            return "\n".join(lines) if lines else None

        lease = Lease(self.cluster, ns, holder=identity(" ".join(["hubfleet", *sys.argv[1:]])), fleet=self.fleet)
        return LeaseLock(lease, prepare=prepare, describe=describe)

    def runner(self, catalog: Path, loaded, at=None, *, allow_mass_stop: bool = False):  # noqa: ANN001
        """`up` on a kubernetes catalog: the controller (controller.py), the shared loop gated by the fleet's Lease,
        which is also its writer lock. A second replica stands by on the Lease; Ctrl-C/SIGTERM hand it over and
        leave the hubs running (they are the cluster's). Starts no local process."""
        import os
        import tempfile

        from hubfleet.backends.loopstats import LoopStats, serve_metrics
        from hubfleet.backends.reconcile import FleetRunner

        from .controller import controller, write_status

        lock = self.writer_lock()
        # The loop's figures (loopstats.py), kept in the pod's scratch space and served from memory on
        # HUBFLEET_METRICS_PORT (controlplane.py sets it; the Service hubfleet-controller-metrics selects it).
        self.stats = LoopStats(Path(os.environ.get("HUBFLEET_STATE") or tempfile.gettempdir()) / "hubfleet-controller")
        loop, lease = controller(catalog, self, loaded, at, lease=lock.lease, allow_mass_stop=allow_mass_stop,
                                 stats=self.stats)
        if port := os.environ.get("HUBFLEET_METRICS_PORT"):
            self.metrics_server = serve_metrics(int(port), self.stats)

        def after_step(report) -> list[str]:  # noqa: ANN001 - a StepReport
            try:
                write_status(self.cluster, lease.namespace, lease.holder, report, loop.catalog_problems)
            except ClusterError as exc:  # the API server away: the next step reports it, and retries
                return [f"cannot write the controller status: {exc}"]
            return []

        return FleetRunner(loop=loop, lock=lock, standby=True, unattended=True, after_step=after_step,
                           stop=lambda: "Controller stopped; the Lease is released. The hubs keep running in the cluster.")

    def configure_archive(self, store: str | None, say: Say | None) -> None:
        if store is not None:
            # The archive Jobs run in the cluster and write where the catalog's fleet says; a path on this
            # machine would silently not be used.
            raise ValueError("--archive-store applies to the local backend; on kubernetes the archive Jobs "
                             "write to the store the catalog's fleet names")

    def archive_problems(self, deep: bool = False) -> list[str]:
        return []  # the archive Job verifies in the cluster; an unverified archive shows as a refused delete

    def archive_removals(self) -> str:
        return ("Archives are made by Jobs in the cluster; a hub's namespace is deleted only once every student "
                "volume in it has a verified archive marker.")

    def apply_fleet_objects(self, spec: FleetSpec) -> int:
        """Apply `render_fleet` (fleet namespace, shared image puller, the archiver's personal-store PV/PVC, the
        NFS server if hubfleet runs it) and delete the fleet workloads it no longer renders.

        Not a plan action: the Plan is per hub. Call it before `apply`; returns how many objects were written
        or deleted (0 when nothing changed)."""
        from .fleet import render_fleet

        rendered = render_fleet(spec, self.options)
        # Secrets (the portal's) are placeholders: created and filled once, never applied over (secrets.py).
        written = sum(ensure_hub_secret(self.cluster, obj) != "kept" if obj["kind"] == "Secret"
                      else bool(self.cluster.apply(obj)) for obj in rendered)
        # Workloads the fleet no longer renders (the NFS server after a switch to a filer): by label, only the
        # kinds that hold no state. Its data claim is kept (resource-policy keep), as are the archiver's objects.
        ns = self.options.system_namespace
        from .controlplane import controller_objects

        # The controller's Deployment carries the fleet's labels but is the platform team's (``_fleet/``): kept.
        wanted = {(o["apiVersion"], o["kind"], o["metadata"]["name"])
                  for o in [*rendered, *controller_objects(self.options)]}
        for api_version, kind in FLEET_PRUNABLE_KINDS:
            for obj in self.cluster.list(api_version, kind, ns, MANAGED_SELECTOR):
                if (api_version, kind, obj["metadata"]["name"]) not in wanted:
                    self.cluster.delete(api_version, kind, ns, obj["metadata"]["name"])
                    written += 1
        return written

    # ------------------------------------------------------------------------------------------ per hub

    def _do(self, action: Action, hub: HubSpec | None, spec: FleetSpec, say: Callable[[str], None]) -> str:
        if action.kind in (Kind.create, Kind.update, Kind.start):
            if hub is None:
                raise ValueError(f"{action.kind.value} {action.hub}: the spec has no such hub")
            return self._converge(hub, spec, say)
        if action.kind == Kind.stop:
            return self._stop(action.hub, say)
        if action.kind == Kind.delete:
            return self._delete(action.hub, say)
        return self._lifecycle_job(action, spec, say)

    def _converge(self, hub: HubSpec, spec: FleetSpec, say: Callable[[str], None]) -> str:
        ns = namespace_name(hub)
        material = self.material_for(hub)  # first: a missing or oversized source changes nothing
        say("namespace objects")
        written, secret, shipped = 0, "kept", set()
        rendered = render_manifests(hub, spec, self.options, material)
        for obj in rendered:
            if obj["kind"] == "Secret" and obj["apiVersion"] == "v1":
                secret = ensure_hub_secret(self.cluster, obj)
                if hub.auth.get("type") == "embedded":  # the portal registers the hub with its client secret
                    written += mirror_client_secret(self.cluster, hub.name, ns, options_for(spec, self.options))
            elif mat.LABEL in obj["metadata"]["labels"]:
                written += self._ensure_material(obj)
                shipped.add(obj["metadata"]["name"])
            else:
                written += bool(self.cluster.apply(obj))
        if uses_portal(spec):  # the waker Service's endpoints: the portal's pods (the controller keeps them current)
            written += bool(self.cluster.apply(waker_endpoints(ns, portal_addresses(self.cluster, self.options))))
        values = self.values_for(hub, spec, material)
        status = self.helm.status(hub.name, ns)
        current = self.helm.get_values(hub.name, ns) if status is not None else None
        reason = _upgrade_reason(status, current, values, self.chart_version)
        if reason:
            say(f"helm upgrade --install ({reason})")
            release = self.helm.upgrade_install(release=hub.name, namespace=ns, chart=self.chart,
                                                version=self.chart_version, values=values,
                                                create_namespace=False, timeout=self.helm_timeout)
            done = f"release {release.status} (revision {release.revision}, {reason})"
        else:
            done = "release unchanged (values equal)"
        written += self._prune_material(ns, shipped)
        written += self._prune(ns, hub.name, rendered)
        records.write_record(self.cluster, ns, hub.name, hub.model_dump(mode="json"), self.chart_version)
        return f"{written} namespace object(s) written; secret {secret}; {done}"

    def values_for(self, hub: HubSpec, spec: FleetSpec, material: mat.Material | None = None) -> dict:
        """The values helm gets for a hub: rendered, then the site's extra values laid over them."""
        if material is None:
            material = self.material_for(hub)
        values = render_values(hub, spec, options=self.options, material=material)
        if warm := prewarm_values(self.warm().get(hub.name)):
            values = _merge(values, warm)  # a timetable warm-up window is in force (prewarm.py)
        extra = self.extra_values(hub) if callable(self.extra_values) else self.extra_values
        return _merge(values, extra) if extra else values

    def prewarm_updates(self, plan: Plan, spec: FleetSpec, state: FleetState) -> Plan:
        """`plan` plus an `update` for each running hub whose release runs another number of placeholders than its
        timetable asks for now (a window opened or closed): the spec is by date, the window by the clock."""
        busy = {a.hub for a in plan.actions}
        windows = self.warm()
        extra = []
        for hub in spec.hubs:
            seen = state.hubs.get(hub.name)
            if hub.name in busy or seen is None or not seen.running:
                continue
            want = placeholders_in(prewarm_values(windows.get(hub.name)))
            try:
                have = placeholders_in(self.helm.get_values(hub.name, namespace_name(hub)))
            except (HelmError, ClusterError):
                continue
            if want != have:
                why = f"timetable: {windows[hub.name].session}" if hub.name in windows else "timetable: window over"
                extra.append(Action(kind=Kind.update, hub=hub.name, reason=f"{why}, placeholders {have} -> {want}"))
        return Plan(actions=plan.actions + tuple(extra)) if extra else plan

    # ------------------------------------------------------------------------------------------ material

    def material_for(self, hub: HubSpec) -> dict[str, dict[str, mat.File]]:
        """The hub's seed material, read from the catalog on each converge (a few hundred KiB at most)."""
        wanted = mat.sources([hub])
        if not wanted:
            return {}
        if self.catalog_root is None:
            raise mat.MaterialError(f"hub {hub.name} seeds {', '.join(wanted)}, but this backend was given no "
                                    "catalog_root to read seed material from")
        return mat.read_material(self.catalog_root, hub)

    def _ensure_material(self, obj: dict) -> bool:
        """Create a material ConfigMap if absent. Its name is its content, so one that exists is left alone
        (no apply: that would copy up to 900 KiB into an annotation); one someone changed is put back."""
        meta = obj["metadata"]
        try:
            live = self.cluster.get("v1", "ConfigMap", meta["namespace"], meta["name"])
        except NotFound:
            self.cluster.create(obj)
            return True
        if all(live.get(k) == obj.get(k) for k in ("data", "binaryData", "immutable")):
            return False
        self.cluster.delete("v1", "ConfigMap", meta["namespace"], meta["name"])
        self.cluster.create(obj)
        return True

    def _prune_material(self, ns: str, keep: set[str]) -> int:
        """Delete older material versions. Running pods keep what they mounted; new spawns use the new name."""
        old = [cm["metadata"]["name"] for cm in self.cluster.list("v1", "ConfigMap", ns, f"{mat.LABEL}=true")]
        for name in (n for n in old if n not in keep):
            self.cluster.delete("v1", "ConfigMap", ns, name)
        return len(set(old) - keep)

    def _prune(self, ns: str, hub: str, rendered: list[dict]) -> int:
        """Delete the hub's objects hubfleet rendered before and renders no more (a JupyterLab settings ConfigMap
        of a presentation that left the hub, a quota of a kind we stopped setting), found by label.

        Only kinds that hold no state: never a Secret (generated once), a claim or a volume (student files), nor
        the objects hubfleet keeps by other rules (records, archive markers, material, archive Jobs' support)."""
        selector = f"{MANAGED_SELECTOR},hubfleet.io/hub={hub}"
        from .controlplane import controller_objects

        # The controller's Deployment carries the fleet's labels but is the platform team's (``_fleet/``): kept.
        wanted = {(o["apiVersion"], o["kind"], o["metadata"]["name"])
                  for o in [*rendered, *controller_objects(self.options)]}
        gone = 0
        for api_version, kind in PRUNABLE_KINDS:
            for obj in self.cluster.list(api_version, kind, ns, selector):
                meta = obj["metadata"]
                if (api_version, kind, meta["name"]) in wanted or set(meta.get("labels") or {}) & KEPT_BY_OTHER_RULES:
                    continue
                self.cluster.delete(api_version, kind, ns, meta["name"])
                gone += 1
        return gone

    def material_updates(self, plan: Plan, spec: FleetSpec, state: FleetState) -> Plan:
        """`plan` plus an `update` for each running hub whose current material is not all in the cluster: the
        spec does not carry material content, so only this read-only check (one list call) sees it change."""
        busy = {a.hub for a in plan.actions}
        candidates = [h for h in spec.hubs if h.name not in busy and mat.sources([h])
                      and state.hubs.get(h.name) and state.hubs[h.name].running]
        if not candidates:
            return plan
        live = {(cm["metadata"]["namespace"], cm["metadata"]["name"])
                for cm in self.cluster.list("v1", "ConfigMap", None, f"{mat.LABEL}=true")}
        extra = []
        for hub in candidates:
            ns, material = namespace_name(hub), self.material_for(hub)
            missing = [s for s in material if (ns, mat.configmap_name(s, material[s])) not in live]
            if missing:
                extra.append(Action(kind=Kind.update, hub=hub.name,
                                    reason=f"course material changed: {', '.join(missing)}"))
        return Plan(actions=plan.actions + tuple(extra)) if extra else plan

def _upgrade_reason(status, current: dict | None, values: dict, chart_version: str) -> str:
    """Why the release needs helm (empty: it does not). Values compare as helm stores them (JSON)."""
    if status is None:
        return "not installed"
    if not status.deployed:
        return f"release {status.status}"
    if status.chart_version and status.chart_version != chart_version:
        return f"chart {status.chart_version} -> {chart_version}"
    if _canonical(current or {}) != _canonical(values):
        return "values changed"
    return ""


def _canonical(value: Any) -> Any:
    # Helm drops null values from user-supplied values and round-trips numbers through float64 (1.0 -> 1);
    # Python's 1 == 1.0 covers the latter, dropping None covers the former.
    value = json.loads(json.dumps(value))

    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    return strip(value)


def _merge(base: dict, extra: Mapping[str, Any]) -> dict:
    """Helm's own rule for several values files: maps merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _explain(exc: Exception) -> str:
    if isinstance(exc, HelmMissing):
        return str(exc)
    if isinstance(exc, ClusterUnavailable):
        return f"cluster not reachable: {exc}"
    if isinstance(exc, (MissingProvidedKeys, RefusedDelete, LifecycleNotAvailable, ArchiveJobFailed, HelmError,
                        mat.MaterialError, WakeFailed)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
