"""The guard against mass destruction (issue 16): pure, Plan + observed state + spec in, a verdict out.

The CLI side (exit 2, nothing stopped, --allow-mass-stop) runs against real hubs in tests/security/test_processes.py.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from hubfleet.catalog import load_catalog
from hubfleet.plan import FleetState, ObservedHub, diff, plan
from hubfleet.plan.diff import Kind
from hubfleet.plan.guard import MASS_STOP_SHARE, mass_stop, without_hubs

AT = dt.date(2026, 11, 1)


def running(*names: str, up: bool = True) -> dict[str, ObservedHub]:
    return {n: ObservedHub(name=n, running=up, applied={"presentations": [{"key": n.upper()}]}) for n in names}


def test_a_catalog_that_lost_its_courses_would_stop_everything_and_is_refused(two_course_catalog: Path) -> None:
    spec = plan(load_catalog(two_course_catalog).catalog, AT)
    state = FleetState.of(spec).model_copy(update={"presentations": {}})  # provisioned, no student files yet
    empty = spec.model_copy(update={"hubs": ()})
    verdict = mass_stop(diff(empty, state), state, empty)
    assert verdict is not None and verdict.names == ["m269-2026j", "tm351-2026j"]
    assert verdict.lines()[0].startswith("this plan would stop 2 of the 2 running hub(s)")
    assert "  m269-2026j: M269-2026J is no longer in the catalog" in verdict.lines()[1]


def test_the_share_is_a_quarter_of_the_running_hubs_and_at_least_two(two_course_catalog: Path) -> None:
    assert MASS_STOP_SHARE == 0.25
    spec = plan(load_catalog(two_course_catalog).catalog, AT).model_copy(update={"hubs": ()})
    for total, stopping, refused in [(8, 1, False), (8, 2, False), (8, 3, True), (4, 2, True), (2, 1, False),
                                     (2, 2, True), (1, 1, True), (40, 10, False), (40, 11, True)]:  # fmt: skip
        names = [f"h{i:02d}" for i in range(total)]
        kept = spec.model_copy()
        state = FleetState(hubs=running(*names))
        # Only the first `stopping` hubs are gone from the catalog: the planner stops and deletes them.
        planned = diff(kept, FleetState(hubs={n: h for n, h in state.hubs.items() if n in names[:stopping]}))
        verdict = mass_stop(planned, state, kept)
        assert (verdict is not None) == refused, (total, stopping)


def test_hubs_that_are_not_running_do_not_count(two_course_catalog: Path) -> None:
    spec = plan(load_catalog(two_course_catalog).catalog, AT)
    state = FleetState(hubs={**running("x1", "x2", up=False), **FleetState.of(spec).hubs})
    assert mass_stop(diff(spec, state), state, spec) is None  # x1, x2 are deleted, but nothing running stops


def test_a_scheduled_end_says_so(two_course_catalog: Path) -> None:
    loaded = load_catalog(two_course_catalog)
    state = FleetState.of(plan(loaded.catalog, AT))
    later = plan(loaded.catalog, dt.date(2027, 8, 1))  # both presentations archived by their own dates
    planned = diff(later, state.model_copy(update={"presentations": {}}))
    verdict = mass_stop(planned, state, later)
    assert verdict is not None
    assert "TM351-2026J is archived on 2027-08-01 (it ended 2027-06-10)" in dict(verdict.hubs)["tm351-2026j"]


def test_without_hubs_keeps_the_rest_of_the_plan(two_course_catalog: Path) -> None:
    spec = plan(load_catalog(two_course_catalog).catalog, AT)
    state = FleetState(hubs=running("old1", "old2"))
    planned = diff(spec, state)
    kept = without_hubs(planned, ["old1", "old2"])
    assert {a.kind for a in kept.actions} == {Kind.create} and len(kept.actions) == 2
