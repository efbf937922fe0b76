"""The ``hubfleet up`` loop: keep a fleet equal to its catalog, one ``step()`` every few seconds, on any backend.

A step reloads the catalog if one of its files changed (a bad edit is reported and the last good catalog stays in
force, so a typo never takes the fleet down), plans, observes, diffs and applies. A hub that crashed shows up as
"configured but not running" and is started again; a hub that keeps failing or crashing is retried with
exponential backoff instead of being hammered every tick.

``step()`` is the unit tests call directly; ``run()`` only adds the sleeping.

The loop speaks only the ``Backend`` contract (observe, apply, status, endpoint); ``Backend.runner`` hands it to
``hubfleet up`` as a ``FleetRunner`` with the writer lock it runs under. What one backend needs beyond it comes
in as ``LoopHooks``: the local backend re-reads rosters on a catalog change and refreshes running hubs
between applies; the Kubernetes backend applies its fleet-level objects every step. ``leader`` gates every step: a controller that does not hold the fleet's Lease observes nothing and
writes nothing (two replicas never act at once).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hubfleet.backends.base import ActionResult, Backend, Progress, WriterLock
from hubfleet.backends.loopstats import LoopStats
from hubfleet.catalog import CatalogError, LoadedCatalog, load_catalog
from hubfleet.enrol.membership import SourceError
from hubfleet.enrol.sync import HubChanges, sync_spec
from hubfleet.plan import OrphanError, plan as make_plan
from hubfleet.plan.diff import Kind, Plan
from hubfleet.plan.guard import mass_stop, without_hubs
from hubfleet.plan.spec import FleetSpec
from hubfleet.plan.timetable import warmup_schedule

__all__ = ["FleetRunner", "LoopHooks", "Reconciler", "StepReport", "catalog_signature", "sync_enrolment"]


def sync_enrolment(backend: Backend, loaded: LoadedCatalog, spec, hubs: set[str] | None = None) -> list[HubChanges]:
    def endpoint(name: str) -> tuple[str, str]:
        ep = backend.endpoint(name)
        return ep.api_url, ep.token

    return sync_spec(loaded, spec, endpoint, hubs=hubs)


def _nothing(*_args) -> list[str]:
    return []


@dataclass
class LoopHooks:
    """A backend's additions to the loop; every default does nothing."""

    # The catalog was re-read (the local backend keeps it for rosters, passwords, branding).
    reloaded: Callable[[LoadedCatalog], None] = lambda loaded: None
    # Before the hubs' actions, every step: fleet-level objects (Kubernetes: `_fleet/`). Returns notes.
    before: Callable[[FleetSpec], list[str]] = _nothing
    # A step with nothing to apply (local: running hubs pick up members and branding). Returns notes.
    idle: Callable[[FleetSpec], list[str]] = _nothing
    # After every step's actions: hibernate hubs idle for their hibernate_after (plan.hibernation). Returns notes.
    rest: Callable[[FleetSpec], list[str]] = _nothing


@dataclass
class FleetRunner:
    """What ``hubfleet up`` runs on a backend (``Backend.runner``): the shared loop wired to it, the writer lock it
    holds for as long as it runs, and what differs at the edges. ``up`` itself is one code path for every backend:
    take ``lock``, apply once (plan shown), then ``loop.run`` until Ctrl-C/SIGTERM, then ``stop()``.
    """

    loop: "Reconciler"
    lock: WriterLock
    # A second `up` waits until the fleet's writer lets go (a controller replica standing by on the Lease) instead
    # of exiting 2 naming it (a second `up` in a terminal, which is a mistake).
    standby: bool = False
    # Nobody reads a prompt or an exit code (a controller pod): where `up` would refuse its first plan with exit 2
    # (a mass stop), it holds those hubs back and reports it, as the loop does, instead of crash-looping the pod.
    unattended: bool = False
    # After each step the loop acted in (not standing by): e.g. the controller's status document for `hubfleet
    # status`. Returns problems to print (it must not raise: the loop goes on).
    after_step: Callable[["StepReport"], list[str]] = lambda report: []
    # Ctrl-C or SIGTERM: what `up` does on its way out, before the lock is released (the local fleet is stopped;
    # a cluster's hubs keep running). Returns what to tell the operator.
    stop: Callable[[], str] = lambda: "Stopped."


@dataclass
class StepReport:
    results: list[ActionResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. "catalog reloaded", "members of x updated"
    errors: list[str] = field(default_factory=list)  # catalog errors, refused plans
    deferred: list[str] = field(default_factory=list)  # hubs waiting out their backoff

    @property
    def quiet(self) -> bool:
        return not (self.results or self.notes or self.errors)


@dataclass
class _Backoff:
    failures: int = 0
    not_before: float = 0.0
    last_start: float | None = None


def catalog_signature(catalog: Path, rosters: list[Path]) -> tuple:
    """(path, mtime, size) of every file the catalog is made of; cheap enough to poll every tick."""
    files = [catalog]
    if catalog.is_dir():
        files = [catalog / "fleet.yaml", *sorted((catalog / "courses").glob("*.y*ml"))]
    out = []
    for path in [*files, *rosters]:
        try:
            st = path.stat()
            out.append((str(path), st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            out.append((str(path), None, None))
    return tuple(out)


class Reconciler:
    def __init__(
        self,
        catalog: Path,
        backend: Backend,
        at: dt.date | None = None,
        *,
        base_delay: float = 2.0,
        max_delay: float = 300.0,
        stable_after: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sync_every: float = 300.0,
        allow_mass_stop: bool = False,
        loaded: LoadedCatalog,
        hooks: LoopHooks | None = None,
        leader: Callable[[], str | None] | None = None,
        stats: LoopStats | None = None,
        wall_clock: Callable[[], dt.datetime] = dt.datetime.now,
    ) -> None:
        """``leader()`` returns None while this process may act, else why not (e.g. who holds the Lease).
        ``stats``: where the step and sync figures go for ``/metrics`` (``loopstats``); ``wall_clock``: the fleet's
        local time, for the warm windows reported there."""
        self.stats = stats
        self.wall_clock = wall_clock
        self._drift: int | None = None
        self.catalog = Path(catalog)
        self.backend = backend
        self.loaded = loaded
        self.hooks = hooks or LoopHooks()
        self.leader = leader
        # The current catalog's errors while an edit is broken (reported once as errors; kept here for a status page).
        self.catalog_problems: list[str] = []
        self._waiting: str | None = None  # the last "not the leader" reason, reported once per change
        self.at = at  # fixed date (--at) or None for "today", which moves phases at midnight
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.stable_after = stable_after  # a hub that ran this long after a start is healthy again
        self.clock = clock
        self._signature = self._current_signature()
        self._backoff: dict[str, _Backoff] = {}
        # Enrolment sync runs after a catalog change or a hub (re)start, and every sync_every seconds so that
        # LDAP group changes arrive without hammering the directory every tick.
        self.sync_every = sync_every
        self._next_sync = 0.0
        self.allow_mass_stop = allow_mass_stop
        self._held_back: list[str] = []  # hubs the mass-stop guard keeps running (reported once, not every tick)

    @property
    def standing_by(self) -> str | None:
        """Why the last step did nothing (another controller leads), or None when this one acted."""
        return self._waiting

    def _current_signature(self) -> tuple:
        loaded = self.loaded
        return catalog_signature(self.catalog, [loaded.root / rel for rel in sorted(loaded.rosters)])

    def _reload(self, report: StepReport) -> None:
        signature = self._current_signature()
        if signature == self._signature:
            return
        self._signature = signature
        self._next_sync = 0.0
        try:
            self.loaded = load_catalog(self.catalog)
        except CatalogError as exc:
            self.catalog_problems = [*(str(p) for p in exc.problems),
                                     "the catalog has errors; the fleet keeps running as last applied"]
            report.errors += self.catalog_problems
            return
        self.catalog_problems = []
        self.hooks.reloaded(self.loaded)
        self._signature = self._current_signature()  # rosters may have changed with the catalog
        report.notes.append("catalog changed: re-planned")

    def _delay(self, failures: int) -> float:
        return min(self.base_delay * 2 ** (failures - 1), self.max_delay)

    def step(self, progress: Progress | None = None) -> StepReport:
        started = time.monotonic()
        self._drift = None
        report = self._step(progress)
        if self.stats is not None and self._waiting is None:
            # Figures are written only by the leader (a standing-by controller measures nothing it did).
            self.stats.step(time.monotonic() - started, self._drift)
            self._note_warm_windows()
            self.stats.save()
        return report

    def _note_warm_windows(self) -> None:
        at = self.wall_clock()
        try:
            windows = warmup_schedule(self.loaded.catalog, at - dt.timedelta(days=1), days=2,
                                      calendars=self.loaded.calendars)  # fmt: skip
        except Exception:  # noqa: BLE001 - an unreadable iCal file: the backend's own pre-warming reports it
            return
        top: dict[str, tuple[str, str, int, dt.datetime]] = {}
        for w in windows:
            if w.active(at) and (w.presentation not in top or w.placeholders > top[w.presentation][2]):
                top[w.presentation] = (w.hub, w.presentation, w.placeholders, w.warm_until)
        self.stats.warm(sorted(top.values()))

    def _step(self, progress: Progress | None) -> StepReport:
        report = StepReport()
        if self.leader is not None:
            try:
                waiting = self.leader()
            except Exception as exc:  # noqa: BLE001 - the Lease unreadable (API server away): act on nothing
                waiting = f"cannot reach the Lease: {exc}"
            if waiting is not None:
                if waiting != self._waiting:
                    report.notes.append(f"standing by: {waiting}")
                self._waiting = waiting
                return report
            if self._waiting is not None:
                report.notes.append("leading: this controller acts now")
                self._next_sync = 0.0
            self._waiting = None
        self._reload(report)
        spec = make_plan(self.loaded.catalog, self.at or dt.date.today())
        try:
            report.notes += self.hooks.before(spec)
        except Exception as exc:  # noqa: BLE001 - e.g. the API server unreachable; report it, try again next tick
            report.errors.append(f"reconcile failed: {exc}")
            return report
        try:
            state = self.backend.observe()
            plan = self.backend.plan(spec, state)  # the diff, plus what only the backend sees (course material)
            self._drift = len(plan.actions)
        except OrphanError as exc:
            report.errors += [f"refused: {r}" for r in exc.reasons]
            return report
        except Exception as exc:  # noqa: BLE001 - the cluster unreachable, a course's material unreadable: next tick
            report.errors.append(f"reconcile failed: {exc}")
            return report
        verdict = None if self.allow_mass_stop else mass_stop(plan, state, spec)
        if verdict is not None:
            # A catalog edit that drops most of the fleet (a folder moved away mid-edit) is held back, not applied;
            # the rest of the plan (restarting a crashed hub...) goes ahead.
            if verdict.names != self._held_back:
                report.errors += [*verdict.lines(), "kept running; restart `up` with --allow-mass-stop if intended"]
            plan = without_hubs(plan, verdict.names)
        self._held_back = verdict.names if verdict is not None else []
        now = self.clock()
        due = []
        for action in plan.actions:
            state = self._backoff.get(action.hub)
            if state and now < state.not_before:
                report.deferred.append(action.hub)
            else:
                due.append(action)
        try:
            if not due:
                report.notes += self.hooks.idle(spec)
            else:
                applied = self.backend.apply(Plan(actions=tuple(due)), spec, progress)
                report.results = applied.results
                self._record(applied.results, now)
                if any(r.ok and r.action.kind in (Kind.create, Kind.start, Kind.update) for r in applied.results):
                    self._next_sync = 0.0
        except Exception as exc:  # noqa: BLE001 - e.g. the front door's port taken; report it, try again next tick
            report.errors.append(f"reconcile failed: {exc}")
            return report
        try:
            report.notes += self.hooks.rest(spec)
        except Exception as exc:  # noqa: BLE001 - a hub's API away mid-check: it stays awake, try again next tick
            report.errors.append(f"hibernation check failed: {exc}")
        if now >= self._next_sync:
            self._sync(spec, report)
            self._next_sync = now + self.sync_every
        return report

    def _sync(self, spec, report: StepReport) -> None:
        """Enrolment into the running hubs; an unreadable source changes nothing and is reported."""
        up = {h.name for h in self.backend.status(spec) if h.up}
        if not up:
            return
        started = time.monotonic()
        try:
            results = sync_enrolment(self.backend, self.loaded, spec, hubs=up)
        except SourceError as exc:
            report.errors.append(str(exc))
            return
        if self.stats is not None:
            self.stats.sync(time.monotonic() - started,
                            {r.hub: {kind.replace(" ", "_"): n for kind, n in r.counts().items() if n}
                             for r in results if not r.error and not r.empty})  # fmt: skip
        for r in results:
            if r.error:
                report.errors.append(f"enrolment sync of {r.hub} failed: {r.error}")
            elif not r.empty:
                counts = ", ".join(f"{n} {k}" for k, n in r.counts().items() if n)
                report.notes.append(f"enrolment {r.hub}: {counts}")

    def _record(self, results: list[ActionResult], now: float) -> None:
        for result in results:
            state = self._backoff.setdefault(result.action.hub, _Backoff())
            if not result.ok:
                state.failures += 1
            elif result.action.kind in (Kind.start, Kind.create):
                # Started fine, but if it needed starting again soon after the last start it is crash-looping.
                looping = state.last_start is not None and now - state.last_start < self.stable_after
                state.failures = state.failures + 1 if looping else 0
                state.last_start = now
            else:
                state.failures = 0
            state.not_before = now + self._delay(state.failures) if state.failures else 0.0
            if not state.failures and state.last_start is None:
                self._backoff.pop(result.action.hub, None)

    def run(self, interval: float = 3.0, progress: Progress | None = None, on_step: Callable[[StepReport], None] | None = None) -> None:
        """Step forever (until KeyboardInterrupt, which the caller turns into a clean stop)."""
        while True:
            report = self.step(progress)
            if on_step:
                on_step(report)
            time.sleep(interval)
