"""The guard against mass destruction: a plan that would stop too many running hubs at once is refused.

A plan is computed from whatever catalog is on disk, so a ``courses/`` folder that went missing, a checkout of the
wrong branch or a mistyped ``--at`` date plans most of the fleet away, and an apply would stop every hub it no
longer sees, students mid-session included. Stopping is not deleting data (the storage guard in ``diff`` and the
archive rules protect files), but it takes courses offline for everyone. So the CLI, for both backends, refuses a
plan that stops (or deletes) more than ``MASS_STOP_SHARE`` of the running hubs, naming each hub and why the plan
drops it, unless the operator passes ``--allow-mass-stop``. The ``up`` loop drops those hubs' actions and reports.

The share, and why: **a quarter of the running hubs, and at least two of them**, or every running hub. A normal
day retires one or two presentations of a fleet of dozens (the lifecycle spreads end dates); a quarter at once is
what a missing folder looks like. A single hub is not counted (one presentation ending in a two-hub fleet is
routine), unless it is the last one running: a plan that empties the fleet always asks. Year-end runs that
retire many presentations on one date pass ``--allow-mass-stop`` after reading the list.

Pure: Plan + FleetState + FleetSpec in, a verdict out; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from hubfleet.plan.diff import FleetState, Kind, Plan
from hubfleet.plan.spec import FleetSpec

__all__ = ["MASS_STOP_SHARE", "MassStop", "mass_stop", "without_hubs"]

MASS_STOP_SHARE = 0.25
_STOPS = (Kind.stop, Kind.delete)


@dataclass(frozen=True)
class MassStop:
    running: int
    hubs: tuple[tuple[str, str], ...]  # (hub, why the plan stops it), sorted by hub

    @property
    def names(self) -> list[str]:
        return [hub for hub, _ in self.hubs]

    def lines(self) -> list[str]:
        head = (f"this plan would stop {len(self.hubs)} of the {self.running} running hub(s), more than "
                f"{MASS_STOP_SHARE:.0%} of them (the guard against a missing catalog folder or a wrong --at "
                "date):")  # fmt: skip
        return [head, *(f"  {hub}: {why}" for hub, why in self.hubs)]


def mass_stop(plan: Plan, state: FleetState, spec: FleetSpec, share: float = MASS_STOP_SHARE) -> MassStop | None:
    """The hubs this plan would take down, if they are too many of the running ones; None if the plan may go ahead."""
    running = {name for name, hub in state.hubs.items() if hub.running}
    stopping = sorted({a.hub for a in plan.actions if a.kind in _STOPS and a.hub in running})
    if not stopping:
        return None
    too_many = len(stopping) >= 2 and len(stopping) > share * len(running)
    if not too_many and len(stopping) < len(running):
        return None
    return MassStop(running=len(running), hubs=tuple((hub, _why(hub, state, spec)) for hub in stopping))


def without_hubs(plan: Plan, hubs: list[str]) -> Plan:
    """The plan minus every action on ``hubs`` (what the ``up`` loop applies while the guard holds)."""
    return Plan(actions=tuple(a for a in plan.actions if a.hub not in hubs))


def _why(hub: str, state: FleetState, spec: FleetSpec) -> str:
    keys = [str(p.get("key")) for p in state.hubs[hub].applied.get("presentations", []) if isinstance(p, dict)]
    retired = {p.key: p for p in spec.retired}
    elsewhere = {p.key: h.name for h in spec.hubs for p in h.presentations}
    reasons = []
    for key in keys:
        if key in retired:
            reasons.append(f"{key} is {retired[key].phase.value} on {spec.date} (it ended {retired[key].end})")
        elif key in elsewhere:
            reasons.append(f"{key} moves to hub {elsewhere[key]} (topology changed)")
        else:
            reasons.append(f"{key} is no longer in the catalog (its course file or presentation is missing)")
    return "; ".join(reasons) or "no presentation of the catalog needs it"
