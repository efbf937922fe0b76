"""The portal's /metrics families move when their events happen, parsed with Prometheus' own text parser: the
archive families with the archive ledger; the up loop's (reconcile steps and drift, enrolment syncs and writes,
placeholders) with a real loop over one real hub. The hub and wake families are checked in test_hibernation.py."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import free_port, running_in
from prometheus_client.parser import text_string_to_metric_families

from hubfleet.backends.local.backend import LocalBackend, stop_fleet
from hubfleet.backends.local.reconciler import Reconciler
from hubfleet.catalog import load_catalog
from hubfleet.lifecycle.ledger import Ledger
from hubfleet.web.metrics import metrics_text


def samples(state, fleet: dict | None = None) -> dict[tuple, float]:  # noqa: ANN001
    text = metrics_text(state, fleet or {"hubs": []}).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_archive_bytes_and_counts_follow_the_ledger(tmp_path):
    (tmp_path / "frontdoor").mkdir()
    empty = samples(tmp_path)
    assert empty[("hubfleet_archive_bytes", ())] == 0
    assert empty[("hubfleet_archives", (("status", "pending"),))] == 0
    with Ledger(tmp_path) as ledger:
        ledger.record("TM351-2025J", "alice", "file:///a.tar.gz", "ab" * 32, 1000)
        ledger.record("TM351-2025J", "bob", "file:///b.tar.gz", "cd" * 32, 500)
    got = samples(tmp_path)
    assert got[("hubfleet_archive_bytes", ())] == 1500 and got[("hubfleet_archives", (("status", "pending"),))] == 2
    with Ledger(tmp_path) as ledger:
        ledger.mark_verified("TM351-2025J", "alice")
        ledger.mark_problem("TM351-2025J", "bob", "sha256 mismatch on read-back")
    got = samples(tmp_path)
    assert [got[("hubfleet_archives", (("status", s),))] for s in ("verified", "failed", "pending")] == [1, 1, 0]


# -- the up loop's families, with one real hub (demo mode: no system users) ---------------------------------------

BEFORE = dt.date(2026, 6, 1)  # months before the presentation is provisioned: no hub wanted
OPEN = dt.date(2026, 11, 1)
QUIET = dt.datetime(2026, 11, 2, 3, 0)  # a Monday night, no session near
WARM = dt.datetime(2026, 11, 4, 9, 55)  # Wednesday, 5 minutes before M269's weekly 10:00 session
HUB = "m269-2026j"
COURSE = """\
code: M269
title: Algorithms, data structures and computability
presentations:
  - id: 2026J
    start: 2026-10-10
    end: 2027-06-01
    expected_students: 300
    enrolment: [{users: %s}]
    timetable: {weekly: [{weekday: wed, start: "10:00", duration: 1h, attendance: 1.0}]}
"""


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Reconciler, Path]]:
    root = tmp_path_factory.mktemp("loopmetrics")
    catalog = root / "catalog"
    (catalog / "courses").mkdir(parents=True)
    (catalog / "fleet.yaml").write_text("fleet:\n  name: metered-university\n  defaults: {hibernate_after: never}\n")
    (catalog / "courses" / "M269.yaml").write_text(COURSE % "[carol, alice]")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUBFLEET_DEMO_MODE", "1")
        state = root / "state"
        backend = LocalBackend(state, state / "storage", load_catalog(catalog), port=free_port())
        backend.wall_clock = lambda: QUIET
        try:
            yield Reconciler(catalog, backend, BEFORE), catalog
        finally:
            seen = running_in(state)
            stop_fleet(state)
            _, alive = psutil.wait_procs(seen, timeout=30)
            assert alive == [], f"left running after down: {alive}"


def test_reconcile_steps_drift_enrolment_writes_and_placeholders_move(loop) -> None:  # noqa: ANN001
    loop, catalog = loop
    state = loop.backend.paths.state

    def now() -> dict[tuple, float]:
        return samples(state, json.loads((state / "fleet.json").read_text()) if (state / "fleet.json").exists()
                       else {"hubs": []})  # fmt: skip

    def steps(got: dict) -> float:
        return got[("hubfleet_reconcile_duration_seconds_count", ())]

    def writes(got: dict, kind: str) -> float:
        return got.get(("hubfleet_enrolment_writes_total", (("hub", HUB), ("kind", kind))), 0)

    assert loop.step().errors == []  # nothing is wanted yet
    first = now()
    assert steps(first) == 1 and first[("hubfleet_reconcile_drift", ())] == 0
    assert first[("hubfleet_enrolment_sync_duration_seconds_count", ())] == 0  # no hub to sync into

    loop.at = OPEN  # the presentation opens: the plan wants its hub
    report = loop.step()
    assert report.errors == [] and [r.ok for r in report.results] == [True]
    opened = now()
    assert steps(opened) == 2 and opened[("hubfleet_reconcile_drift", ())] == 1
    assert opened[("hubfleet_reconcile_duration_seconds_sum", ())] > first[("hubfleet_reconcile_duration_seconds_sum", ())]
    assert opened[("hubfleet_enrolment_sync_duration_seconds_count", ())] == 1  # the new hub was synced (its start already wrote its members)
    created, added = writes(opened, "users_created"), writes(opened, "added_to_groups")

    assert loop.step().errors == []  # the fleet matches its catalog now
    assert now()[("hubfleet_reconcile_drift", ())] == 0

    (catalog / "courses" / "M269.yaml").write_text(COURSE % "[carol, alice, bob]")  # bob enrols
    assert loop.step().errors == []
    enrolled = now()
    assert writes(enrolled, "users_created") == created + 1 and writes(enrolled, "added_to_groups") == added + 1
    assert enrolled[("hubfleet_enrolment_sync_duration_seconds_count", ())] == 2

    placeholders = ("hubfleet_placeholders", (("hub", HUB), ("presentation", "M269-2026J")))
    assert placeholders not in enrolled  # no session near
    loop.backend.wall_clock = lambda: WARM
    try:
        assert loop.step().errors == []
        assert now()[placeholders] >= 1  # the 10:00 class of 300 is being warmed for
    finally:
        loop.backend.wall_clock = lambda: QUIET
    assert loop.step().errors == []
    assert placeholders not in now()
