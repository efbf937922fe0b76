"""The warm-up schedule: from each presentation's timetable to windows in which its hub is awake and capacity warm.

Pure: the catalog, a moment (``at``) and the text of any iCalendar files (read by the caller, at the loader
boundary) come in; windows come out. Times are the fleet's local wall-clock time (naive datetimes); an iCal
``...Z`` time is taken as it is written, minus its zone, so keep such files in local time or UTC fleets.

Sizing, for a session of ``expected = enrolled × attendance`` students arriving over ``arrival_window``
(2i2c's rule, with catalog inputs):

* ``arrival_rate = expected / arrival_window`` (students per second);
* ``headroom_users = min(expected, arrival_rate × node_ready_time)``: the servers that must find room before a new
  node could be ready; that many user placeholders (or ``ceil(headroom / users_per_node)`` whole-node ones);
* ``lead = node_ready_time + wake_time``: warming starts this long before the session, so the hub is awake and the
  placeholders have pulled nodes in by the time the first student clicks;
* ``concurrent_spawn_limit = max(64, ceil(arrival_rate × spawn_time × 2))``: spawns in flight at the peak, with
  room for the burst (64 is JupyterHub's default, never lowered);
* the window ends ``arrival_window`` after the session starts: then the placeholders go and the limit returns.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from hubfleet.catalog.ical import IcalError, Session, parse_ical
from hubfleet.catalog.course import Timetable
from hubfleet.catalog.model import Catalog, Prewarm
from hubfleet.catalog.naming import hub_name, presentation_key
from hubfleet.plan.spec import timeline

__all__ = ["IcalError", "Session", "WarmWindow", "active_windows", "parse_ical", "sessions", "warmup_schedule", "size"]

_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DEFAULT_SPAWN_LIMIT = 64  # JupyterHub's Spawner concurrent_spawn_limit default (z2jh hub.concurrentSpawnLimit)


@dataclass(frozen=True)
class WarmWindow:
    hub: str
    presentation: str
    session: str
    session_start: dt.datetime
    warm_from: dt.datetime
    warm_until: dt.datetime
    expected: int  # students expected at the session
    headroom_users: int
    placeholders: int  # pods: one per user, or whole-node ones (users_per_node)
    concurrent_spawn_limit: int

    def active(self, at: dt.datetime) -> bool:
        return self.warm_from <= at < self.warm_until


def _clock(day: dt.date, hhmm: str) -> dt.datetime:
    hours, minutes = hhmm.split(":")
    return dt.datetime.combine(day, dt.time(int(hours), int(minutes)))


def sessions(timetable: Timetable, start: dt.date, end: dt.date, calendar: list[Session] = ()) -> list[Session]:
    """Every session of a presentation between its ``start`` and ``end`` days: weekly slots, dated events and
    ``calendar`` (a parsed iCal file). Overlapping sessions merge into one spanning both, with the larger
    attendance (the max over overlaps: an override never lowers what another source asks for)."""
    found: list[Session] = []
    for slot in timetable.weekly:
        day = start + dt.timedelta(days=(_DAYS.index(slot.weekday) - start.weekday()) % 7)
        while day <= end:
            begin = _clock(day, slot.start)
            found.append(Session(begin, begin + dt.timedelta(seconds=int(slot.duration)), slot.attendance,
                                 f"{slot.weekday} {slot.start}"))
            day += dt.timedelta(days=7)
    for event in timetable.events:
        begin = _clock(event.date, event.start)
        found.append(Session(begin, begin + dt.timedelta(seconds=int(event.duration)), event.attendance, event.name))
    found += list(calendar)
    found.sort(key=lambda s: (s.start, s.end))
    merged: list[Session] = []
    for s in found:
        if merged and s.start < merged[-1].end:
            last = merged[-1]
            top = s if s.attendance > last.attendance else last
            merged[-1] = Session(last.start, max(last.end, s.end), top.attendance, top.name)
        else:
            merged.append(s)
    return merged


def size(enrolled: int, session: Session, prewarm: Prewarm) -> tuple[int, int, int, int]:
    """(expected, headroom_users, placeholders, concurrent_spawn_limit) for one session."""
    expected = math.ceil(enrolled * session.attendance)
    rate = expected / int(prewarm.arrival_window)
    headroom = min(expected, math.ceil(rate * int(prewarm.node_ready_time)))
    per_node = prewarm.users_per_node
    placeholders = math.ceil(headroom / per_node) if per_node else headroom
    limit = max(DEFAULT_SPAWN_LIMIT, math.ceil(rate * int(prewarm.spawn_time) * 2))
    return expected, headroom, placeholders, limit


def warmup_schedule(catalog: Catalog, at: dt.datetime, *, days: int = 7,
                    calendars: Mapping[str, str] | None = None) -> list[WarmWindow]:  # fmt: skip
    """Warm windows that end after ``at`` and start within ``days`` of it, soonest first. ``calendars``: the text
    of each iCal file the catalog names (root-relative path -> text)."""
    prewarm = catalog.fleet.prewarm
    lead = dt.timedelta(seconds=int(prewarm.node_ready_time) + int(prewarm.wake_time))
    tail = dt.timedelta(seconds=int(prewarm.arrival_window))
    horizon = at + dt.timedelta(days=days)
    out: list[WarmWindow] = []
    for course, pres in _presentations(catalog):
        if pres.timetable is None:
            continue
        line = timeline(pres.start, pres.end, catalog.fleet.lifecycle)
        if not line.phase(at.date()).hub_wanted and not line.phase(horizon.date()).hub_wanted:
            continue
        extra = parse_ical((calendars or {})[pres.timetable.ical]) if pres.timetable.ical else []
        for s in sessions(pres.timetable, pres.start, pres.end, extra):
            warm_from, warm_until = s.start - lead, s.start + tail
            if warm_until <= at or warm_from > horizon:
                continue
            expected, headroom, placeholders, limit = size(pres.expected_students, s, prewarm)
            out.append(WarmWindow(
                hub=hub_name(catalog.fleet.topology, catalog.fleet.name, course.code, pres.id, course.unit),
                presentation=presentation_key(course.code, pres.id),
                session=s.name, session_start=s.start, warm_from=warm_from, warm_until=warm_until, expected=expected,
                headroom_users=headroom, placeholders=placeholders, concurrent_spawn_limit=limit,
            ))  # fmt: skip
    out.sort(key=lambda w: (w.warm_from, w.hub))
    return out


def active_windows(windows: list[WarmWindow], at: dt.datetime) -> dict[str, WarmWindow]:
    """Per hub, the window in force at ``at`` (the largest, if a shared hub has several at once)."""
    now: dict[str, WarmWindow] = {}
    for w in windows:
        if w.active(at) and (w.hub not in now or w.headroom_users > now[w.hub].headroom_users):
            now[w.hub] = w
    return now


def _presentations(catalog: Catalog) -> Iterator:
    for course in catalog.courses:
        for pres in course.presentations:
            yield course, pres
