"""The pure planner: golden fleets for the example university, and properties that must hold for any catalog.

Regenerate the golden files after an intended change with ``UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_planner.py``
and read the diff before committing it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubfleet.catalog import load_catalog
from hubfleet.catalog.model import Catalog
from hubfleet.plan import FleetState, OrphanError, Phase, diff, plan
from hubfleet.plan.diff import plan_json
from hubfleet.plan.planner import TOPOLOGIES, compare

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden"
EXAMPLE = ROOT / "examples" / "university"
TODAY = dt.date(2026, 11, 29)


@pytest.fixture(scope="module")
def university() -> Catalog:
    return load_catalog(EXAMPLE).catalog


def with_topology(catalog: Catalog, topology: str) -> Catalog:
    return catalog.model_copy(update={"fleet": catalog.fleet.model_copy(update={"topology": topology})})


def with_course(catalog: Catalog, course_code: str, /, **update) -> Catalog:
    courses = [c.model_copy(update=update) if c.code == course_code else c for c in catalog.courses]
    return catalog.model_copy(update={"courses": courses})


# --- golden fleets -------------------------------------------------------------------------------


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_example_fleet_matches_golden(university, topology):
    spec = plan(with_topology(university, topology), TODAY)
    text = json.dumps(spec.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    golden = GOLDEN / f"plan-{topology}.json"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"{golden} is missing; run with UPDATE_GOLDEN=1 and review it"
    assert text == golden.read_text(), f"the plan changed; if intended, run with UPDATE_GOLDEN=1 and review {golden}"


def test_example_phases_on_the_day(university):
    """The example is built so that 2026-11-29 shows every phase a platform team meets."""
    spec = plan(university, TODAY)
    phases = {p.key: p.phase for p in spec.all_presentations()}
    assert phases == {
        "A233-2026B": Phase.read_only,
        "A233-2026J": Phase.open,
        "DD211-2026J": Phase.open,
        "M269-2026J": Phase.open,
        "SWC-dec26": Phase.provisioned,
        "TM351-2026J": Phase.open,
        "DSS-2026": Phase.archived,
        "TM351-2025J": Phase.archived,
    }  # M269-2027B, DD211-2027B and DSS-2027 are scheduled: no hub, nothing retired
    assert [h.name for h in spec.hubs] == [
        "a233-2026b", "a233-2026j", "dd211-2026j", "m269-2026j", "swc-dec26", "tm351-2026j",
    ]


def test_example_presentation_settings(university):
    spec = plan(university, TODAY)
    tm351 = spec.hub("tm351-2026j").presentations[0]
    assert tm351.storage.course_dir == "/home/{username}/TM351-2026J"
    assert [(m.name, m.path) for m in tm351.storage.extra_mounts] == [
        ("postgres", "/home/{username}/TM351-2026J/.postgres/data")
    ]
    assert spec.hub("tm351-2026j").profiles[0].image == "ghcr.io/example-university/tm351:2026J"
    assert tm351.tutors == ("tw5521", "ls4409", "pk7730", "gb2290", "an6614")  # course tutors, then this run's
    a233 = spec.hub("a233-2026j")
    assert [(p.name, p.default, p.memory) for p in a233.profiles] == [("python", True, "2G"), ("r", False, "3G")]
    assert spec.hub("swc-dec26").presentations[0].storage.layout == "ephemeral"
    m269 = spec.hub("m269-2026j").presentations[0]
    assert m269.extensions.disabled == ("@jupyterlab/extensionmanager-extension",)
    dss = next(p for p in spec.retired if p.key == "DSS-2026")
    assert (dss.storage.layout, dss.storage.volume) == ("per-presentation", "presentations/DSS-2026/{username}")


def test_topology_compare_for_the_example(university):
    rows = {r.topology: r for r in compare(university, TODAY)}
    assert {t: r.hubs for t, r in rows.items()} == {"per-presentation": 6, "per-course": 5, "per-unit": 2, "central": 1}
    assert (rows["central"].largest_hub, rows["central"].largest_hub_students) == ("example-university", 2224)
    assert (rows["per-unit"].largest_hub, rows["per-unit"].largest_hub_students) == ("stem", 1324)
    assert rows["per-presentation"].shared_presentations == 0
    assert rows["per-course"].shared_presentations == 2  # A233's read-only 2026B and open 2026J
    assert rows["central"].images_max == 5


# --- the plan as data ------------------------------------------------------------------------------


def test_plan_json_shape(university):
    spec = plan(university, TODAY)
    doc = json.loads(plan_json(spec, diff(spec, FleetState())))
    assert set(doc) >= {"hubs", "actions"}
    for hub in doc["hubs"]:
        assert set(hub) == {"name", "url", "presentations", "profiles"}
        assert hub["url"] == f"http://{hub['name']}.localhost:8000/"  # a host of its own per hub
        for p in hub["presentations"]:
            assert set(p) == {"id", "phase"}
        for profile in hub["profiles"]:
            assert set(profile) == {"name", "image", "groups"} and profile["groups"]
    assert [(a["kind"], a["hub"]) for a in doc["actions"]] == [("create", h["name"]) for h in doc["hubs"]]


def test_orphan_guard_refuses_a_layout_change_of_a_running_presentation(university):
    state = FleetState.of(plan(university, TODAY))
    tm351 = next(c for c in university.courses if c.code == "TM351")
    storage = {"layout": "per-presentation", "size": "5Gi", "extra_mounts": tm351.storage.extra_mounts}
    changed = with_course(university, "TM351", storage=type(tm351.storage)(**storage))
    with pytest.raises(OrphanError) as info:
        diff(plan(changed, TODAY), state)
    [reason] = info.value.reasons
    assert reason.startswith("TM351-2026J: changing storage from personal-subfolder (home/{username})")
    assert "presentations/TM351-2026J/{username}" in reason


def test_orphan_guard_refuses_a_presentation_with_files_vanishing(university):
    state = FleetState.of(plan(university, TODAY))
    renamed = with_course(university, "M269", code="M270")
    with pytest.raises(OrphanError) as info:
        diff(plan(renamed, TODAY), state)
    [reason] = info.value.reasons
    assert reason.startswith("M269-2026J: holds student files (personal-subfolder, home/{username})")
    assert "renaming a course code" in reason


def test_archived_presentations_may_leave_the_catalog(university):
    """Once archived (and verified), a presentation's files are safe; dropping it from the catalog is fine."""
    state = FleetState.of(plan(university, TODAY))
    tm351 = next(c for c in university.courses if c.code == "TM351")
    trimmed = with_course(university, "TM351", presentations=[p for p in tm351.presentations if p.id != "2025J"])
    assert not diff(plan(trimmed, TODAY), state)


# --- properties over generated catalogs --------------------------------------------------------------

CODES = ["TM351", "M269", "A233", "DD211", "SWC", "DSS", "S112"]
dates = st.dates(min_value=dt.date(2024, 1, 1), max_value=dt.date(2030, 12, 31))


@st.composite
def catalogs(draw) -> Catalog:
    codes = draw(st.lists(st.sampled_from(CODES), min_size=1, max_size=5, unique=True))
    courses = []
    for code in codes:
        ids = draw(st.lists(st.sampled_from(["2025J", "2026B", "2026J", "2027B", "2027J"]), min_size=1, max_size=3, unique=True))
        presentations = []
        for pid in ids:
            start = draw(dates)
            presentations.append(
                {
                    "id": pid,
                    "start": start,
                    "end": start + dt.timedelta(days=draw(st.integers(1, 400))),
                    "expected_students": draw(st.integers(0, 1500)),
                    "storage": {"layout": draw(st.sampled_from(["personal-subfolder", "per-presentation", "ephemeral"]))},
                }
            )
        courses.append(
            {
                "code": code,
                "title": f"Course {code}",
                "unit": draw(st.sampled_from(["stem", "arts"])),
                "presentations": presentations,
                "images": draw(st.sampled_from([None, [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:2"}]])),
            }
        )
    lifecycle = {
        "provision_days_before_start": draw(st.integers(0, 30)),
        "read_only_days_after_end": draw(st.integers(0, 60)),
        "retention_days": draw(st.integers(0, 400)),
    }
    fleet = {
        "name": "prop",
        "backend": draw(st.sampled_from(["local", "kubernetes"])),
        "topology": draw(st.sampled_from(TOPOLOGIES)),
        "lifecycle": lifecycle,
        "units": [{"id": "stem", "name": "STEM"}, {"id": "arts", "name": "Arts"}],
    }
    return Catalog.model_validate({"fleet": fleet, "courses": courses})


PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(catalogs(), dates, st.randoms(use_true_random=False))
def test_planning_is_deterministic_and_ignores_file_order(catalog, today, rnd):
    first = plan(catalog, today)
    assert plan(catalog, today) == first
    shuffled = list(catalog.courses)
    rnd.shuffle(shuffled)
    # Course files load in name order, but nobody should get a different fleet for renaming a file.
    assert plan(catalog.model_copy(update={"courses": shuffled}), today).model_dump() == first.model_dump()


@PROPS
@given(catalogs(), dates, st.integers(0, 800))
def test_a_phase_never_goes_backwards(catalog, today, days):
    later = today + dt.timedelta(days=days)
    before = {p.key: p.phase.rank for p in plan(catalog, today).all_presentations()}
    after = {p.key: p.phase.rank for p in plan(catalog, later).all_presentations()}
    for key, rank in before.items():
        assert after.get(key, rank) >= rank, key
    # A presentation that had a hub or was retired never drops back to "scheduled" (not in the spec).
    assert before.keys() <= after.keys()


@PROPS
@given(catalogs(), dates)
def test_every_presentation_lands_in_exactly_one_place(catalog, today):
    spec = plan(catalog, today)
    names = [h.name for h in spec.hubs]
    assert len(names) == len(set(names))
    placed = [p.key for h in spec.hubs for p in h.presentations] + [p.key for p in spec.retired]
    assert len(placed) == len(set(placed))
    every = {f"{c.code}-{p.id}" for c in catalog.courses for p in c.presentations}
    scheduled = every - set(placed)
    assert set(placed) <= every
    for hub in spec.hubs:
        assert all(p.phase.hub_wanted and p.hub == hub.name for p in hub.presentations)
        profiles = [p.name for p in hub.profiles]
        assert len(profiles) == len(set(profiles)), hub.name
    assert all(p.phase in (Phase.archived, Phase.purged) for p in spec.retired)
    for key in scheduled:
        course, pid = key.split("-", 1)
        pres = next(p for c in catalog.courses if c.code == course for p in c.presentations if p.id == pid)
        provision_on = pres.start - dt.timedelta(days=catalog.fleet.lifecycle.provision_days_before_start)
        assert today < provision_on, key


@PROPS
@given(catalogs(), dates)
def test_applying_a_plan_then_planning_again_changes_nothing(catalog, today):
    spec = plan(catalog, today)
    assert diff(spec, FleetState.of(spec)).actions == ()
