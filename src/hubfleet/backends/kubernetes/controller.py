"""``hubfleet up`` for a Kubernetes fleet: the shared reconcile loop, gated by the fleet's Lease.

Same loop as a local ``up`` (backends/reconcile.py: catalog edits, phases by date, enrolment sync, lifecycle
actions, backoff, the mass-stop guard); what differs comes in as hooks: every step first applies the fleet-level
objects (``apply_fleet_objects``, a no-op write-wise when nothing changed), and adds an update for hubs whose course
material changed (the planner cannot see material). It never starts a local process: the hubs are releases.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from hubfleet.backends.reconcile import LoopHooks, Reconciler, StepReport
from hubfleet.catalog import LoadedCatalog

from .backend import KubernetesBackend
from .cluster import Cluster, NotFound
from .fleet import MANAGED_BY
from .lease import API_VERSION, NAME as LEASE_NAME, Lease

STATUS_DOCUMENT = "hubfleet-controller-status"


def controller_hooks(backend: KubernetesBackend) -> LoopHooks:
    def before(spec) -> list[str]:
        written = backend.apply_fleet_objects(spec)
        return [f"fleet objects: {written} written"] if written else []

    return LoopHooks(before=before, extend=backend.material_updates)


def controller(
    catalog: Path,
    backend: KubernetesBackend,
    loaded: LoadedCatalog,
    at: dt.date | None = None,
    *,
    lease: Lease | None = None,
    allow_mass_stop: bool = False,
    **kwargs,
) -> tuple[Reconciler, Lease]:
    """The loop and the Lease it steps under (in the fleet namespace, created first if missing)."""
    ns = backend.options.system_namespace
    backend.cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": ns, "labels": {**MANAGED_BY, "hubfleet.io/fleet": loaded.catalog.fleet.name}}})
    lease = lease or Lease(backend.cluster, ns)
    loop = Reconciler(catalog, backend, at, loaded=loaded, hooks=controller_hooks(backend), leader=lease.hold,
                      allow_mass_stop=allow_mass_stop, **kwargs)
    return loop, lease


def write_status(cluster: Cluster, namespace: str, holder: str, report: StepReport, catalog_problems: list[str]) -> bool:
    """The leader's last word for `hubfleet status`: the problems of its latest step (catalog errors, refused
    plans, failed actions) and the hubs waiting out a backoff. Written only when that changes (a quiet fleet costs
    no write per step). Only the leader calls it (``Reconciler.standing_by is None``)."""
    problems = [*dict.fromkeys([*catalog_problems, *report.errors]), *(f"{r.action.hub} {r.action.kind.value}: {r.message}" for r in report.results if not r.ok)]
    data = {"holder": holder, "problems": json.dumps(problems), "deferred": json.dumps(sorted(set(report.deferred)))}
    return cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "data": data,
                          "metadata": {"name": STATUS_DOCUMENT, "namespace": namespace, "labels": dict(MANAGED_BY)}})


def read_status(cluster: Cluster, namespace: str) -> list[str]:
    """What `hubfleet status` says about the controller: who holds the Lease, and its latest problems."""
    try:
        lease = cluster.get(API_VERSION, "Lease", namespace, LEASE_NAME).get("spec") or {}
    except NotFound:
        return ["no controller has run (no Lease); `hubfleet up` or the _fleet/ Deployment runs one"]
    holder = lease.get("holderIdentity")
    lines = [f"controller {holder}, Lease renewed {lease.get('renewTime')}" if holder
             else "no controller holds the Lease now"]
    try:
        data = cluster.get("v1", "ConfigMap", namespace, STATUS_DOCUMENT).get("data") or {}
    except NotFound:
        return lines
    lines += [f"controller problem: {p}" for p in json.loads(data.get("problems") or "[]")]
    deferred = json.loads(data.get("deferred") or "[]")
    if deferred:
        lines.append(f"controller backing off: {', '.join(deferred)}")
    return lines
