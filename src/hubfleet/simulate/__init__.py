"""The year-long topology and cost simulator (issue 12). Pure: catalog, model, prices and a seed in, results out.

``simulate_catalog`` is the one entry point the CLI and ``topology compare`` use; ``engine.simulate`` runs a
workload built any other way (tests state their own sessions; the benchmark builds a synthetic year).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from hubfleet.catalog.model import Catalog
from hubfleet.catalog.naming import presentation_key
from hubfleet.plan.timetable import parse_ical, sessions
from hubfleet.simulate.engine import Scenario, scenarios_of, simulate
from hubfleet.simulate.load import (
    PresentationLoad,
    TimetabledSession,
    Window,
    Workload,
    build_workload,
    presentations_from_catalog,
    sessions_workload,
)
from hubfleet.simulate.model import TOPOLOGIES, Prices, UsageModel
from hubfleet.simulate.results import Results, ScenarioResult, share_out

__all__ = [
    "TOPOLOGIES", "PresentationLoad", "Prices", "Results", "Scenario", "ScenarioResult", "TimetabledSession",
    "UsageModel", "Window", "Workload", "build_workload", "presentations_from_catalog", "scenarios_of",
    "catalog_timetable", "sessions_workload", "share_out", "simulate", "simulate_catalog", "steps",
]


def steps(catalog: Catalog, window: Window, model: UsageModel) -> int:
    """How many progress steps ``simulate_catalog`` reports: one per presentation, one for the load, one per
    scenario."""
    pres = presentations_from_catalog(catalog, window)
    return len(pres) + 1 + len(scenarios_of(model, pres))


def simulate_catalog(catalog: Catalog, window: Window, model: UsageModel | None = None, prices: Prices | None = None,
                     seed: int = 0, timetable: Mapping[str, list[TimetabledSession]] | None = None,
                     progress: Callable[[int], None] | None = None,
                     calendars: Mapping[str, str] | None = None) -> Results:
    """Simulate the catalog's presentations over ``window`` in every scenario of the model.

    ``timetable`` maps presentation keys to their class meetings; by default the catalog's own timetables
    (``catalog_timetable``, with ``calendars``: the text of each iCal file it names). Presentations it does not
    name get the model's default weekly class.
    """
    model = model or UsageModel()
    prices = prices or Prices()
    rng = np.random.default_rng(seed)
    if timetable is None:
        timetable = catalog_timetable(catalog, model, calendars)
    pres = presentations_from_catalog(catalog, window)
    workload = build_workload(pres, window, model.usage, rng, timetable=timetable, progress=progress)
    return simulate(workload, model, prices, catalog.fleet.name, catalog.fleet.topology, seed, progress=progress)


def catalog_timetable(catalog: Catalog, model: UsageModel,
                      calendars: Mapping[str, str] | None = None) -> dict[str, list[TimetabledSession]]:  # fmt: skip
    """Class meetings from each presentation's ``timetable:`` (weekly slots, dated events, its iCal file), the same
    sessions that pre-warming plans for; students arrive over the model's spread before each one."""
    out: dict[str, list[TimetabledSession]] = {}
    spread = model.usage.timetable.arrival_spread_minutes
    for course in catalog.courses:
        for pres in course.presentations:
            if pres.timetable is None:
                continue
            text = (calendars or {}).get(pres.timetable.ical) if pres.timetable.ical else None
            extra = parse_ical(text) if text else []  # the loader has read and checked every iCal file it names
            key = presentation_key(course.code, pres.id)
            out[key] = [
                TimetabledSession(key, s.start, (s.end - s.start).total_seconds() / 60, s.attendance, spread)
                for s in sessions(pres.timetable, pres.start, pres.end, extra)
            ]
    return out
