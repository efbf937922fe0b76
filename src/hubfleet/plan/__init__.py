"""The pure planner: Catalog + date -> FleetSpec; FleetSpec + FleetState -> Plan."""

from hubfleet.plan.diff import Action, FleetState, Kind, ObservedHub, ObservedPresentation, OrphanError, Plan, diff
from hubfleet.plan.planner import plan
from hubfleet.plan.spec import FleetSpec, HubSpec, Phase, PresentationSpec

__all__ = [
    "Action", "FleetSpec", "FleetState", "HubSpec", "Kind", "ObservedHub", "ObservedPresentation",
    "OrphanError", "Phase", "Plan", "PresentationSpec", "diff", "plan",
]
