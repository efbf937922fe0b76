"""What the fleet dashboard shows about each hub, gathered from the catalog, the planner and the local state dir.

One row per hub: the planner's hubs for today (their presentations, phases, units, next lifecycle date), plus hubs
the fleet still runs that the catalog no longer wants. Facts come from where they already live, read-only:

* phase, units, next transition: ``plan(catalog, today)`` and each presentation's ``timeline``;
* up or down: ``<state>/fleet.json`` (written at every apply and reconcile);
* users, running servers, last activity: the hub's own database (``<state>/hubs/<hub>/jupyterhub.sqlite``, opened
  read-only, so the dashboard never holds a write lock on a hub's database);
* archive problems: the archive ledger (``archives.sqlite``) rows with a problem, and retired presentations whose
  files are not archived yet;
* enrolment sync: the last sync started from the dashboard (``<state>/portal/actions.json``);
* pending actions: ``diff(plan, observe())``, what the next reconcile would do (at most ``PENDING_TTL`` s old).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubfleet.catalog.model import Catalog
from hubfleet.lifecycle.ledger import DEFAULT_NAME as LEDGER_NAME
from hubfleet.lifecycle.ledger import Ledger
from hubfleet.plan import FleetState, OrphanError, diff, plan
from hubfleet.plan.spec import timeline

__all__ = ["HubRow", "fleet_rows"]

_TRANSITIONS = (("provision_on", "provisioned"), ("start", "open"), ("read_only_on", "read-only"),
                ("archive_on", "archived"), ("purge_on", "purged"))  # fmt: skip


@dataclass
class HubRow:
    name: str
    url: str
    units: set[str | None]
    presentations: list[dict[str, Any]]  # key, title, phase, start, end
    wanted: bool = True
    up: bool = False
    users: int | None = None
    running: int | None = None
    last_activity: str | None = None
    next_transition: tuple[str, str, dt.date] | None = None  # (presentation, phase, date)
    archive_problems: list[str] = field(default_factory=list)
    sync: dict[str, Any] | None = None
    pending: list[str] = field(default_factory=list)

    @property
    def phases(self) -> set[str]:
        return {p["phase"] for p in self.presentations}

    @property
    def problems(self) -> list[str]:
        out = []
        if self.wanted and not self.up:
            out.append("down")
        if self.archive_problems:
            out.append("archive")
        if self.sync and not self.sync.get("ok", True):
            out.append("sync")
        if self.pending:
            out.append("pending")
        return out


_FIGURES: dict[Path, tuple[tuple, tuple[int | None, int | None, str | None]]] = {}
_PLANS: dict[tuple[int, dt.date], tuple[Catalog, Any]] = {}


def _stamp(db: Path) -> tuple | None:
    """The database's change stamp: its file and its write-ahead log (where JupyterHub's recent writes are)."""
    try:
        main = db.stat()
    except OSError:
        return None
    try:
        wal = db.with_name(db.name + "-wal").stat()
        return (main.st_mtime_ns, main.st_size, wal.st_mtime_ns, wal.st_size)
    except OSError:
        return (main.st_mtime_ns, main.st_size)


def _figures(db: Path) -> tuple[int | None, int | None, str | None]:
    """(users, running servers, last activity) from a hub's database, or Nones when it has none yet. Read again
    only when the database changed since the last page (an idle hub of 500 costs a stat, not a query)."""
    stamp = _stamp(db)
    if stamp is None:
        return None, None, None
    cached = _FIGURES.get(db)
    if cached and cached[0] == stamp:
        return cached[1]
    _FIGURES[db] = (stamp, _read_figures(db))
    return _FIGURES[db][1]


def _cached_plan(catalog: Catalog, today: dt.date):  # noqa: ANN202
    """The planner's spec for this catalog object and day (the service reloads the catalog when a file changes, so
    a new catalog is a new object)."""
    key = (id(catalog), today)
    hit = _PLANS.get(key)
    if hit is None or hit[0] is not catalog:
        _PLANS.clear()
        _PLANS[key] = hit = (catalog, plan(catalog, today))
    return hit[1]


def _read_figures(db: Path) -> tuple[int | None, int | None, str | None]:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            users, last = conn.execute("SELECT count(*), max(last_activity) FROM users").fetchone()
            running = conn.execute("SELECT count(*) FROM spawners WHERE server_id IS NOT NULL").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return None, None, None
    return users, running, (str(last)[:16] if last else None)


def _archive_problems(state: Path) -> dict[str, list[str]]:
    """{presentation key: problems} from the archive ledger (no ledger: none)."""
    if not (state / LEDGER_NAME).exists():
        return {}
    out: dict[str, list[str]] = {}
    with Ledger(state) as ledger:
        for row in ledger.all():
            if row.problem and not row.superseded and not row.purged_at:
                out.setdefault(row.presentation, []).append(f"{row.student}: {row.problem}")
    return out


def read_actions(state: Path) -> dict[str, Any]:
    try:
        return json.loads((state / "portal" / "actions.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


# What the next reconcile would do, per spec: observing and diffing 500 hubs costs more than the rest of the page,
# so it is computed at most every PENDING_TTL seconds (the column says "as of" that moment).
PENDING_TTL = 5.0
_PENDING: dict[str, Any] = {}


def observed_and_pending(spec: Any, observe: Callable[[], FleetState] | None,
                         clock: Callable[[], float] = time.monotonic) -> tuple[FleetState | None, dict[str, list[str]]]:  # fmt: skip
    now = clock()
    if _PENDING.get("spec") is spec and now - _PENDING.get("at", -1e9) < PENDING_TTL:
        return _PENDING["observed"], _PENDING["pending"]
    observed, pending = None, {}
    if observe is not None:
        try:
            observed = observe()
        except Exception:  # noqa: BLE001 - a state dir mid-write must not take the dashboard down
            observed = None
    if observed is not None:
        try:
            for a in diff(spec, observed).actions:
                pending.setdefault(a.hub, []).append(a.kind.value + (f" {a.presentation}" if a.presentation else ""))
        except OrphanError as exc:
            for reason in exc.reasons:
                pending.setdefault("(fleet)", []).append(f"refused: {reason}")
    _PENDING.update(spec=spec, at=now, observed=observed, pending=pending)
    return observed, pending


def fleet_rows(catalog: Catalog, today: dt.date, state: Path,
               observe: Callable[[], FleetState] | None = None) -> list[HubRow]:  # fmt: skip
    spec = _cached_plan(catalog, today)
    observed, pending = observed_and_pending(spec, observe)
    try:
        fleet_doc = json.loads((state / "fleet.json").read_text())
    except (FileNotFoundError, ValueError):
        fleet_doc = {}
    up = {h["name"]: h.get("up", False) for h in fleet_doc.get("hubs", [])}
    urls = {h["name"]: h.get("url", "") for h in fleet_doc.get("hubs", [])}
    problems = _archive_problems(state)
    syncs = read_actions(state).get("sync", {})
    lifecycle = catalog.fleet.lifecycle
    rows = []
    for hub in spec.hubs:
        row = HubRow(name=hub.name, url=urls.get(hub.name) or hub.url, units={p.unit for p in hub.presentations},
                     presentations=[{"key": p.key, "title": p.title, "phase": p.phase.value, "start": p.start,
                                     "end": p.end} for p in hub.presentations])  # fmt: skip
        row.up = up.get(hub.name, False)
        row.users, row.running, row.last_activity = _figures(state / "hubs" / hub.name / "jupyterhub.sqlite")
        upcoming = []
        for p in hub.presentations:
            line = timeline(p.start, p.end, lifecycle)
            upcoming += [(getattr(line, attr), p.key, phase) for attr, phase in _TRANSITIONS if getattr(line, attr) > today]
            row.archive_problems += [f"{p.key}: {text}" for text in problems.get(p.key, [])]
        if upcoming:
            when, key, phase = min(upcoming)
            row.next_transition = (key, phase, when)
        row.sync = syncs.get(hub.name)
        row.pending = pending.get(hub.name, [])
        rows.append(row)
    wanted = {r.name for r in rows}
    by_hub: dict[str, HubRow] = {}
    for p in spec.retired:
        seen = observed.presentations.get(p.key) if observed else None
        texts = [f"{p.key}: {t}" for t in problems.get(p.key, [])]
        if seen is not None and seen.has_files and not seen.archived:
            texts.append(f"{p.key}: {p.phase.value} since {p.archive_on}, files not archived yet")
        if texts or p.hub in pending and p.hub not in wanted:
            row = by_hub.setdefault(p.hub, HubRow(name=p.hub, url="", units=set(), presentations=[], wanted=False))
            row.units.add(p.unit)
            row.presentations.append({"key": p.key, "title": p.title, "phase": p.phase.value, "start": p.start,
                                      "end": p.end})  # fmt: skip
            row.archive_problems += texts
            row.pending = pending.get(p.hub, [])
    for name in sorted(set(pending) - wanted - set(by_hub)):
        if name != "(fleet)":
            by_hub[name] = HubRow(name=name, url="", units=set(), presentations=[], wanted=False, pending=pending[name])
    return rows + [by_hub[k] for k in sorted(by_hub)]
