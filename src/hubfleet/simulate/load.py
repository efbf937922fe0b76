"""The load: every presentation in the window with its students, and every server session of the year.

Sessions are arrays (numpy), one row per server started: self-study sessions drawn from the usage model, and
timetabled sessions (a class starting at a fixed time, students arriving just before). Times are minutes since
the window's first midnight. Pure: the random generator is an argument, so a seed gives the same year.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from hubfleet.catalog.model import Catalog
from hubfleet.catalog.naming import presentation_key
from hubfleet.catalog.quantities import cpu_cores, memory_bytes
from hubfleet.plan.planner import _resources, _storage  # the planner's own resolution, not a second copy
from hubfleet.plan.spec import timeline
from hubfleet.simulate.model import GIB, Usage

MINUTES_PER_DAY = 1440


@dataclass(frozen=True)
class Window:
    """[start, end) in whole days."""

    start: dt.date
    end: dt.date

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    @property
    def minutes(self) -> int:
        return self.days * MINUTES_PER_DAY

    @property
    def hours(self) -> int:
        return self.days * 24

    def minute(self, day: dt.date) -> int:
        """Minutes from the window's start to midnight of ``day``, clipped to the window."""
        return min(max((day - self.start).days, 0), self.days) * MINUTES_PER_DAY


@dataclass(frozen=True)
class PresentationLoad:
    key: str
    course: str
    unit: str | None
    students: int
    cpu: float  # request of the default profile, cores
    memory: float  # GiB
    storage_gib: float  # per student; 0 for ephemeral
    teach_from: dt.date  # first teaching day
    teach_to: dt.date  # day after the last teaching day
    hub_from: dt.date  # provisioned
    hub_to: dt.date  # archived
    idle_minutes: float  # a server lives this long after its last activity (culler timeout + half a pass)
    max_age_minutes: float  # 0 = no limit


@dataclass(frozen=True)
class TimetabledSession:
    """One class meeting: the simple structure a catalog timetable (when it has one) is turned into."""

    presentation: str  # presentation key, e.g. TM351-2026J
    start: dt.datetime
    minutes: float
    attendance: float  # share of enrolled students
    arrival_spread_minutes: float


@dataclass
class Workload:
    window: Window
    presentations: list[PresentationLoad]
    pres: np.ndarray  # int32, index into presentations
    start: np.ndarray  # float64 minutes
    active: np.ndarray  # float64 minutes of use
    end: np.ndarray  # float64 minutes: the server stops (culled or max age)
    event: np.ndarray  # int32 minute of the class a timetabled session belongs to; -1 for self-study
    meta: dict = field(default_factory=dict)

    @property
    def timetabled(self) -> np.ndarray:
        return self.event >= 0


def presentations_from_catalog(catalog: Catalog, window: Window) -> list[PresentationLoad]:
    """Every presentation whose hub is up at some point in the window, resolved as the planner resolves it."""
    fleet = catalog.fleet
    out = []
    for course in catalog.courses:
        for pres in course.presentations:
            line = timeline(pres.start, pres.end, fleet.lifecycle)
            if line.archive_on <= window.start or line.provision_on >= window.end:
                continue
            images = pres.images or course.images
            image = next((im for im in images if im.default), images[0]) if images else None
            res = _resources(fleet.defaults.resources, course, pres, image or _NoImage())
            storage = _storage(fleet.defaults.storage, course, pres)
            culling = pres.culling or course.culling or fleet.defaults.culling
            idle = (culling.idle_timeout + culling.every / 2) / 60 if culling.enabled else float(window.minutes)
            out.append(PresentationLoad(
                key=presentation_key(course.code, pres.id), course=course.code, unit=course.unit,
                students=pres.expected_students,
                cpu=cpu_cores(res.cpu or "1"), memory=memory_bytes(res.memory or "2G") / GIB,
                storage_gib=0.0 if storage.layout == "ephemeral" else memory_bytes(storage.size or "5Gi") / GIB,
                teach_from=pres.start, teach_to=line.read_only_on, hub_from=line.provision_on, hub_to=line.archive_on,
                idle_minutes=idle, max_age_minutes=culling.max_age / 60 if culling.enabled else 0.0,
            ))
    return out


class _NoImage:
    resources = None


def default_timetable(presentations: Iterable[PresentationLoad], usage: Usage,
                      rng: np.random.Generator) -> list[TimetabledSession]:
    """One weekly class per presentation in a slot of the model's timetable, every teaching week."""
    tt = usage.timetable
    if not tt.enabled or not tt.slots:
        return []
    sessions = []
    for p in presentations:
        slot = tt.slots[int(rng.integers(len(tt.slots)))]
        day = p.teach_from + dt.timedelta(days=(slot.weekday - p.teach_from.weekday()) % 7)
        while day < p.teach_to:
            start = dt.datetime.combine(day, dt.time()) + dt.timedelta(minutes=slot.minute_of_day)
            sessions.append(TimetabledSession(p.key, start, tt.minutes, tt.attendance, tt.arrival_spread_minutes))
            day += dt.timedelta(days=7)
    return sessions


def _self_study(p: PresentationLoad, window: Window, usage: Usage, rng: np.random.Generator, weights: np.ndarray):
    lo, hi = max(p.teach_from, window.start), min(p.teach_to, window.end)
    if hi <= lo or p.students == 0 or usage.hours_per_week == 0:
        return None
    teach_weeks = (p.teach_to - p.teach_from).days / 7
    # A full-length presentation spreads study_weeks x hours_per_week over its teaching weeks; a short one
    # (a summer school) is studied at the weekly rate for its length.
    total_hours = p.students * usage.hours_per_week * min(usage.study_weeks, teach_weeks)
    share_in_window = (hi - lo).days / max((p.teach_to - p.teach_from).days, 1)
    s = usage.session
    mean_minutes = min(max(s.median_minutes * np.exp(s.sigma**2 / 2), s.min_minutes), s.max_minutes)
    n = int(rng.poisson(total_hours * share_in_window * 60 / mean_minutes))
    if n == 0:
        return None
    first = (lo - window.start).days
    weekdays = (np.arange((hi - lo).days) + lo.weekday()) % 7
    # One draw per session over every (day, hour) cell of the teaching days, by the weekly profile's weight.
    cells = np.cumsum(weights[weekdays].ravel())
    cell = np.minimum(np.searchsorted(cells, rng.random(n) * cells[-1], side="right"), len(cells) - 1)
    start = (first * 24 + cell) * 60 + rng.random(n) * 60
    active = np.clip(s.median_minutes * np.exp(s.sigma * rng.standard_normal(n)), s.min_minutes, s.max_minutes)
    return start, active


def _classes(p: PresentationLoad, meetings: list[TimetabledSession], window: Window, rng: np.random.Generator):
    starts, actives, events = [], [], []
    origin = dt.datetime.combine(window.start, dt.time())
    for m in meetings:
        t = (m.start - origin).total_seconds() / 60
        if not 0 <= t < window.minutes:
            continue
        k = int(rng.binomial(p.students, m.attendance))
        if k == 0:
            continue
        starts.append(t - rng.random(k) * m.arrival_spread_minutes)
        actives.append(np.full(k, m.minutes) + (t - starts[-1]))
        events.append(np.full(k, int(round(t)), dtype=np.int32))
    if not starts:
        return None
    return np.concatenate(starts), np.concatenate(actives), np.concatenate(events)


def build_workload(presentations: list[PresentationLoad], window: Window, usage: Usage, rng: np.random.Generator,
                   timetable: Mapping[str, list[TimetabledSession]] | None = None,
                   progress: Callable[[int], None] | None = None) -> Workload:
    """All sessions of the window. ``timetable`` maps a presentation key to its meetings; presentations it does
    not name get the usage model's default weekly class."""
    weights = np.asarray(usage.weekly_profile.hour_weights(), dtype=float)  # 7 x 24, Monday first
    timetable = dict(timetable or {})
    missing = [p for p in presentations if p.key not in timetable]
    for m in default_timetable(missing, usage, rng):
        timetable.setdefault(m.presentation, []).append(m)
    parts = []
    for i, p in enumerate(presentations):
        study = _self_study(p, window, usage, rng, weights)
        if study is not None:
            parts.append((i, study[0], study[1], np.full(len(study[0]), -1, dtype=np.int32)))
        classes = _classes(p, timetable.get(p.key, []), window, rng)
        if classes is not None:
            parts.append((i, *classes))
        if progress:
            progress(1)
    if parts:
        pres = np.concatenate([np.full(len(s), i, dtype=np.int32) for i, s, _, _ in parts])
        start = np.concatenate([s for _, s, _, _ in parts])
        active = np.concatenate([a for _, _, a, _ in parts])
        event = np.concatenate([e for _, _, _, e in parts])
    else:
        pres, start, active, event = (np.zeros(0, np.int32), np.zeros(0), np.zeros(0), np.zeros(0, np.int32))
    return sessions_workload(presentations, window, pres, start, active, event, rng)


def sessions_workload(presentations: list[PresentationLoad], window: Window, pres: np.ndarray, start: np.ndarray,
                      active: np.ndarray, event: np.ndarray | None = None,
                      rng: np.random.Generator | None = None) -> Workload:
    """A workload from explicit sessions (also how tests state a known load): the server outlives its last
    activity by the presentation's idle time, and never its max age."""
    pres = np.asarray(pres, dtype=np.int32)
    start = np.asarray(start, dtype=float)
    active = np.asarray(active, dtype=float)
    event = np.full(len(pres), -1, dtype=np.int32) if event is None else np.asarray(event, dtype=np.int32)
    idle = np.array([p.idle_minutes for p in presentations], dtype=float)
    max_age = np.array([p.max_age_minutes for p in presentations], dtype=float)
    max_age = np.where(max_age > 0, max_age, np.inf)[pres] if len(pres) else np.zeros(0)
    lifetime = np.minimum(active + idle[pres], max_age) if len(pres) else active.copy()
    active = np.minimum(active, lifetime)  # a server stopped at max age was not used after it
    # In place: a year of 300,000 students is 30 million sessions, and every array of them is 240 MB.
    end = np.minimum(np.add(start, lifetime, out=lifetime), window.minutes, out=lifetime)
    keep = (start >= 0) & (start < window.minutes)
    if keep.all():
        return Workload(window, presentations, pres, start, active, end, event)
    return Workload(window, presentations, pres[keep], start[keep], active[keep], end[keep], event[keep])
