"""The one contract every backend implements: observe, apply a plan, and reach a hub's API.

It speaks only in planner types (FleetSpec, FleetState, Plan), so the CLI, enrolment sync and the
lifecycle work the same against local processes and Zero-to-JupyterHub releases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, runtime_checkable

from hubfleet.plan.diff import Action, FleetState, Plan
from hubfleet.plan.spec import FleetSpec


@dataclass(frozen=True)
class HubEndpoint:
    """Where hubfleet's own service account reaches a hub's REST API (``.../hub/api``)."""

    api_url: str
    token: str


@dataclass
class ActionResult:
    action: Action
    ok: bool
    message: str = ""


@dataclass
class ApplyReport:
    results: list[ActionResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failures(self) -> list[ActionResult]:
        return [r for r in self.results if not r.ok]


@dataclass(frozen=True)
class HubStatus:
    name: str
    url: str
    up: bool
    users: int | None = None
    running_servers: int | None = None
    detail: str = ""


Progress = Callable[[Action, str], None]


@runtime_checkable
class Backend(Protocol):
    name: str

    def observe(self) -> FleetState:
        """What runs now, including the spec each hub was last applied with."""

    def apply(self, plan: Plan, spec: FleetSpec, progress: Progress | None = None) -> ApplyReport:
        """Carry out the plan's actions in order; one hub's failure does not stop the others."""

    def endpoint(self, hub: str) -> HubEndpoint:
        """The hub's API URL and hubfleet's service token for it."""

    def status(self, spec: FleetSpec) -> list[HubStatus]:
        """Each hub: up or down, users and running servers."""
