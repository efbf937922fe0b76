"""The one contract every backend implements: observe, apply a plan, and reach a hub's API.

It speaks only in planner types (FleetSpec, FleetState, Plan), so the CLI, enrolment sync and the
lifecycle work the same against local processes and Zero-to-JupyterHub releases. Everything a command needs from a
backend is here (writer lock, archive reporting, what to prepare before hubs, where people sign in): the CLI never
asks which backend it has. tests/test_backend_contract.py runs the same assertions against both backends.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol, runtime_checkable

from hubfleet.plan.diff import Action, FleetState, Plan
from hubfleet.plan.spec import FleetSpec

if TYPE_CHECKING:  # reconcile.py builds on this module
    from hubfleet.backends.reconcile import FleetRunner
    from hubfleet.catalog import LoadedCatalog


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
Say = Callable[[str], None]


class FleetUnavailable(RuntimeError):
    """A fleet-wide fault found before any hub is touched. ``exit_code`` 2: the operator's input must change."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class WriterBusy(RuntimeError):
    """Another writer (an ``up``, ``apply`` or ``lifecycle run``) acts on this fleet now."""


class WriterLock(Protocol):
    """One writer per fleet: ``acquire()`` (raises WriterBusy naming the holder), ``release()``, ``holder()``."""

    def acquire(self) -> None: ...

    def release(self) -> None: ...

    def holder(self) -> str | None:
        """Who holds the fleet now, for ``status``; None if nobody (or the backend cannot tell)."""


class NoWriterLock:
    """A backend whose writers are serialised elsewhere (or not yet at all): acquiring always succeeds."""

    def acquire(self) -> None:
        pass

    def release(self) -> None:
        pass

    def holder(self) -> str | None:
        return None


def removal_summary(removed: int, kept: int) -> str:
    """What a lifecycle run deleted, in the words every backend's ``archive_removals`` report uses."""
    text = (f"{removed} course folder(s) removed, each right after its archive was re-verified."
            if removed else "No course folder was removed.")
    if kept:
        text += f" {kept} folder(s) kept because their archive failed that check."
    return text


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

    def plan(self, spec: FleetSpec, state: FleetState) -> Plan:
        """The actions from ``state`` to ``spec``: the planner's diff, plus what only this backend can see
        (e.g. changed course material, which is content, not spec). Read-only; raises OrphanError like diff."""

    def prepare(self, spec: FleetSpec) -> None:
        """What every apply needs before it touches a hub (the local front door's port; the cluster's fleet-level
        objects). Raises FleetUnavailable, having changed no hub."""

    def access(self, spec: FleetSpec) -> list[str]:
        """Where people sign in and reach each hub, for after an apply (rich markup)."""

    def writer_lock(self) -> WriterLock:
        """The lock every command that changes this fleet holds while it does."""

    def configure_archive(self, store: str | None, say: Say | None) -> None:
        """Where archives go (None: the fleet's remembered or default store) and who hears what they hold."""

    def archive_problems(self, deep: bool = False) -> list[str]:
        """Recorded archives that are missing, corrupt or unverified (``deep``: read each back in full)."""

    def archive_removals(self) -> str:
        """What this process's lifecycle actions deleted, and what they kept because an archive failed."""

    def runner(self, catalog: Path, loaded: LoadedCatalog, at: dt.date | None, *,
               allow_mass_stop: bool = False) -> FleetRunner:
        """What ``hubfleet up`` runs: the shared reconcile loop with this backend's hooks, the lock it holds while
        it runs, and what it does on the way out (local: stop the fleet; Kubernetes: hand the Lease over)."""
