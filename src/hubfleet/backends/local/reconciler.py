"""The shared ``up`` loop (hubfleet.backends.reconcile) wired to a LocalBackend.

The local backend keeps the loaded catalog (rosters, passwords, branding), so a reload hands it over; a step with
nothing to apply refreshes running hubs' members and branding (``LocalBackend.refresh``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from hubfleet.backends.local.backend import LocalBackend
from hubfleet.backends.loopstats import LoopStats
from hubfleet.backends.reconcile import LoopHooks, Reconciler as _Reconciler, StepReport, catalog_signature
from hubfleet.backends.reconcile import sync_enrolment as _sync_enrolment
from hubfleet.enrol.sync import HubChanges

__all__ = ["Reconciler", "StepReport", "catalog_signature", "local_hooks", "sync_enrolment"]


def sync_enrolment(backend: LocalBackend, spec, hubs: set[str] | None = None) -> list[HubChanges]:
    return _sync_enrolment(backend, backend.loaded, spec, hubs=hubs)


def local_hooks(backend: LocalBackend) -> LoopHooks:
    return LoopHooks(reloaded=lambda loaded: setattr(backend, "loaded", loaded), idle=backend.refresh,
                     rest=backend.hibernate_idle)


class Reconciler(_Reconciler):
    def __init__(self, catalog: Path, backend: LocalBackend, at: dt.date | None = None, **kwargs) -> None:
        kwargs.setdefault("loaded", backend.loaded)
        kwargs.setdefault("hooks", local_hooks(backend))
        kwargs.setdefault("stats", LoopStats(backend.paths.state))
        kwargs.setdefault("wall_clock", lambda: backend.wall_clock())  # tests move the backend's clock
        super().__init__(catalog, backend, at, **kwargs)
