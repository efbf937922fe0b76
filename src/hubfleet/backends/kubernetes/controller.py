"""``hubfleet up`` for a Kubernetes fleet: the shared reconcile loop, gated by the fleet's Lease.

Same loop as a local ``up`` (backends/reconcile.py: catalog edits, phases by date, enrolment sync, lifecycle
actions, backoff, the mass-stop guard); what differs comes in as hooks: every step first applies the fleet-level
objects (``apply_fleet_objects``, a no-op write-wise when nothing changed); ``backend.plan`` adds an update for hubs
whose course material changed (the planner cannot see material); after each step ``backend.hibernate_idle``
hibernates hubs idle for their ``hibernate_after`` by the local backend's rule (plan.hibernation), and wakes one a
timetable window wants warm. A hibernated hub is observed as such, never as down: nothing restarts it. It never starts a local process: the hubs are releases.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from hubfleet.backends.reconcile import LoopHooks, Reconciler
from hubfleet.catalog import LoadedCatalog
from hubfleet.plan.timetable import active_windows, warmup_schedule

from .backend import KubernetesBackend
from .controller_status import read_status, write_status
from .fleet import MANAGED_BY, options_for
from .lease import Lease
from .portal import sync_waker_endpoints

__all__ = ["controller", "controller_hooks", "read_status", "write_status"]


def controller_hooks(backend: KubernetesBackend) -> LoopHooks:
    def before(spec) -> list[str]:
        written = backend.apply_fleet_objects(spec)
        # The ingress's fallback for sleeping hubs follows the portal's pods (portal.waker_endpoints).
        written += sync_waker_endpoints(backend.cluster, spec, options_for(spec, backend.options))
        return [f"fleet objects: {written} written"] if written else []

    # material updates come from backend.plan, as in `apply`; after each step, idle hubs hibernate (hubstate.py)
    return LoopHooks(before=before, rest=backend.hibernate_idle)


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
    backend.warm = lambda: warm_now(loop.loaded, dt.datetime.now())
    return loop, lease


def warm_now(loaded: LoadedCatalog, at: dt.datetime) -> dict:
    """Hub -> the timetable's warm-up window in force at ``at`` (local wall-clock time, as timetables are written);
    ``backend.plan`` turns a window opening or closing into an update of that release's placeholders."""
    windows = warmup_schedule(loaded.catalog, at - dt.timedelta(days=1), days=2, calendars=loaded.calendars)
    return active_windows(windows, at)

