"""Pure rules of hibernation: the catalog's `hibernate_after`, the planner's per-hub value, when a hub sleeps, and
that the diff never restarts a hibernated hub (it is not down)."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from hubfleet.catalog.model import Catalog, Defaults
from hubfleet.plan import diff, plan
from hubfleet.plan.diff import FleetState, Kind, ObservedHub
from hubfleet.plan.hibernation import activity_of, awake_reason

AT = dt.date(2026, 11, 1)
NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.timezone.utc)


def catalog(topology: str = "per-presentation", fleet_default=None, course=None, pres=None) -> Catalog:
    defaults = {} if fleet_default is None else {"hibernate_after": fleet_default}
    def pres_doc(pid, start):
        return {"id": pid, "start": start, "end": "2027-06-01", **({"hibernate_after": pres} if pres is not None else {})}
    return Catalog.model_validate({
        "fleet": {"name": "uni", "topology": topology, "defaults": defaults},
        "courses": [
            {"code": "TM351", "title": "Data", **({"hibernate_after": course} if course is not None else {}),
             "presentations": [pres_doc("2026J", "2026-10-03")]},
            {"code": "M269", "title": "Algorithms", "presentations": [pres_doc("2026J", "2026-10-10")]},
        ],
    })


def test_default_is_thirty_minutes_and_courses_override_it():
    spec = plan(catalog(course="2h"), AT)
    assert {h.name: h.hibernate_after for h in spec.hubs} == {"m269-2026j": 1800, "tm351-2026j": 7200}
    spec = plan(catalog(fleet_default="never", pres="45m"), AT)
    assert {h.hibernate_after for h in spec.hubs} == {2700}
    assert {h.hibernate_after for h in plan(catalog(fleet_default="never"), AT).hubs} == {None}


def test_a_shared_hub_takes_the_most_lenient_and_never_wins():
    assert plan(catalog("central", course="2h"), AT).hubs[0].hibernate_after == 7200
    assert plan(catalog("central", course="never"), AT).hubs[0].hibernate_after is None


@pytest.mark.parametrize("bad", ["soon", "0", 0, -5, "30 minutes", "1d"])
def test_a_bad_idle_time_is_an_error_that_says_how_to_write_it(bad):
    with pytest.raises(ValidationError, match="`30m`"):
        Defaults(hibernate_after=bad)


def users(*, servers=(), last="2026-11-01T11:00:00Z", pending=None):
    return [{"name": "alice", "last_activity": last, "pending": pending,
             "servers": {s: {"pending": None, "last_activity": last} for s in servers}}]


def test_a_hub_with_a_server_or_a_pending_spawn_never_sleeps():
    hub = plan(catalog(), AT).hubs[0]
    old = NOW - dt.timedelta(days=3)
    assert awake_reason(hub, activity_of(users(servers=[""]), old), NOW) == "1 student server(s) running"
    assert awake_reason(hub, activity_of(users(pending="spawn"), old), NOW) == "1 spawn(s) pending"


def test_a_hub_sleeps_after_its_idle_time_counted_from_the_latest_activity_or_start():
    hub = plan(catalog(), AT).hubs[0]  # 1800 s
    long_up = NOW - dt.timedelta(days=1)
    assert awake_reason(hub, activity_of(users(last="2026-11-01T11:40:00Z"), long_up), NOW) is not None  # 20 min ago
    assert awake_reason(hub, activity_of(users(last="2026-11-01T11:20:00Z"), long_up), NOW) is None  # 40 min ago
    # Just woken (no sign-in yet): the start counts as activity, so it is not put straight back to sleep.
    just_up = NOW - dt.timedelta(minutes=1)
    assert awake_reason(hub, activity_of(users(last=None), just_up), NOW) is not None
    assert awake_reason(hub, activity_of([], long_up), NOW) is None
    never = plan(catalog(fleet_default="never"), AT).hubs[0]
    assert awake_reason(never, activity_of([], long_up), NOW) == "hibernate_after: never"


def test_a_hibernated_hub_is_not_down_so_the_diff_starts_nothing_but_a_change_still_applies():
    spec = plan(catalog(), AT)
    asleep = FleetState.of(spec).model_copy(update={"hubs": {
        h.name: ObservedHub(name=h.name, running=False, hibernated=True, applied=h.model_dump(mode="json"))
        for h in spec.hubs}})
    assert diff(spec, asleep).actions == ()
    crashed = FleetState.of(spec).model_copy(update={"hubs": {
        h.name: ObservedHub(name=h.name, running=False, applied=h.model_dump(mode="json")) for h in spec.hubs}})
    assert {a.kind for a in diff(spec, crashed).actions} == {Kind.start}
    changed = plan(catalog(course="2h"), AT)
    assert [(a.kind, a.hub) for a in diff(changed, asleep).actions] == [(Kind.update, "tm351-2026j")]
