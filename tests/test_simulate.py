"""The simulator against cases with known answers: an always-on hub, Poisson arrivals (M/G/inf), exact
bin-packing, a spawn burst through a concurrency limit; determinism with a seed; costs that add up."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pytest

from hubfleet.catalog import load_catalog
from hubfleet.simulate import PresentationLoad, Window, sessions_workload, simulate, simulate_catalog
from hubfleet.simulate.engine import Scenario, Simulation
from hubfleet.simulate.model import NodeType, Platform, Pool, Prices, Scenarios, UsageModel
from hubfleet.simulate.capacity import pack, queue_waits

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "university"
WINDOW = Window(dt.date(2026, 9, 1), dt.date(2027, 9, 1))


def _pres(key="C1-A", course="C1", unit="u", students=0, cpu=1.0, memory=2.0, storage=0.0, idle=0.0, days=(0, 10),
          window=None) -> PresentationLoad:
    start = (window or Window(dt.date(2026, 1, 1), dt.date(2026, 1, 11))).start
    a, b = (start + dt.timedelta(days=d) for d in days)
    return PresentationLoad(key=key, course=course, unit=unit, students=students, cpu=cpu, memory=memory,
                            storage_gib=storage, teach_from=a, teach_to=b, hub_from=a, hub_to=b, idle_minutes=idle,
                            max_age_minutes=0)


def _prices(user_price=0.0, core_price=0.0, user_min=0, node=(4.0, "16Gi"), shared=None, storage=0.0) -> Prices:
    return Prices(
        user_pool=Pool(node=NodeType(name="u", cpu=node[0], memory=node[1], price_per_hour=user_price),
                       min_nodes=user_min),
        core_pool=Pool(node=NodeType(name="c", cpu=2, memory="8Gi", price_per_hour=core_price), min_nodes=1),
        shared_per_hour=shared or {}, storage_per_gib_month=storage,
    )


ONE = UsageModel(scenarios=Scenarios(topologies=["per-presentation"], hibernation=[False], prewarm=[False]))


def test_single_always_on_hub_costs_hours_times_price():
    window = Window(dt.date(2026, 1, 1), dt.date(2026, 1, 11))  # 240 hours
    p = _pres(window=window)
    empty = sessions_workload([p], window, [], [], [])
    prices = _prices(user_price=0.25, core_price=1.5, user_min=2)
    result = simulate(empty, ONE, prices, "f", "per-presentation", seed=0)
    s = result.scenarios[0]
    assert s.core_node_hours == 240 and s.user_node_hours == 480
    assert s.total == pytest.approx(240 * 1.5 + 480 * 0.25)
    assert s.hub_hours == 240
    assert s.per_presentation == {"C1-A": pytest.approx(s.total)}  # the only presentation carries everything


def _poisson_cdf(k: int, mean: float) -> float:
    term = total = math.exp(-mean)
    for i in range(1, k + 1):
        term *= mean / i
        total += term
    return total


def _poisson_ppf(q: float, mean: float) -> int:
    k = 0
    while _poisson_cdf(k, mean) < q:
        k += 1
    return k


def test_poisson_arrivals_give_the_erlang_load_and_its_peak():
    """M/G/inf: Poisson arrivals at rate lam, servers of fixed length h: the number running at any instant is
    Poisson(lam * h) (the offered load in Erlangs), whatever the length distribution."""
    window = Window(dt.date(2026, 1, 1), dt.date(2026, 3, 2))  # 60 days
    lam, h = 0.5, 60.0  # per minute, minutes -> 30 Erlangs
    rng = np.random.default_rng(3)
    starts = np.cumsum(rng.exponential(1 / lam, size=int(lam * window.minutes * 1.1)))
    starts = starts[starts < window.minutes]
    p = _pres(window=window, days=(0, 60), cpu=0.5, memory=1.0)
    work = sessions_workload([p], window, np.zeros(len(starts), int), starts, np.full(len(starts), h))
    model = UsageModel(platform=Platform(resolution_minutes=1), scenarios=ONE.scenarios)
    sim = Simulation(work, model, _prices(), "f")
    running = sim.total_conc[int(h):]  # after the first hour the system is in steady state
    assert running.mean() == pytest.approx(lam * h, rel=0.02)
    # the share of instants with at least the Poisson 99th percentile running is about 1%
    q99 = _poisson_ppf(0.99, lam * h)
    assert 0.004 < (running > q99).mean() < 0.02
    peak = simulate(work, model, _prices(), "f", "per-presentation", 0).scenarios[0].peak_users
    assert _poisson_ppf(0.999, lam * h) <= peak <= _poisson_ppf(1 - 1e-7, lam * h)


def test_bin_packing_known_answers():
    node = (4.0, 16.0)
    assert pack([3, 3], [(3.0, 1.0), (1.0, 1.0)], node) == 3  # each 3-CPU pod shares with a 1-CPU pod
    assert pack([2, 2], [(2.5, 1.0), (1.5, 1.0)], node) == 2
    assert pack([5], [(1.0, 7.0)], node) == 3  # memory-bound: two per node
    assert pack([8], [(0.5, 2.0)], node) == 1
    assert pack([0, 0], [(1.0, 1.0), (2.0, 2.0)], node) == 0
    with pytest.raises(ValueError, match="does not fit on a node"):
        pack([1], [(8.0, 1.0)], node)


def test_node_hours_follow_the_packing():
    """Seven 1.5-CPU servers running for 10 hours on 4-CPU nodes: two per node, so 4 nodes x 10 hours."""
    window = Window(dt.date(2026, 1, 1), dt.date(2026, 1, 2))
    p = _pres(window=window, days=(0, 1), cpu=1.5, memory=1.0)
    work = sessions_workload([p], window, np.zeros(7, int), np.full(7, 120.0), np.full(7, 600.0))
    s = simulate(work, ONE, _prices(user_price=2.0), "f", "per-presentation", 0).scenarios[0]
    assert s.user_node_hours == 40
    assert s.peak_users == 7
    assert s.breakdown.user_pods + s.breakdown.idle_capacity == pytest.approx(80.0)
    assert s.breakdown.user_pods == pytest.approx(7 * 10 * 1.5 / 4 * 2.0)  # what the requests occupy


def test_a_burst_waits_for_the_spawn_limit():
    """130 students click at once; 64 spawns at a time, 20 s each: 64 start at once, 64 after 20 s, 2 after 40 s."""
    waits = queue_waits(np.zeros(130, np.int64), np.zeros(130), limit=64, spawn_minutes=20 / 60) * 60
    assert sorted(np.round(waits).astype(int).tolist()) == [0] * 64 + [20] * 64 + [40] * 2
    # two hubs at the same moment do not queue behind each other
    two = queue_waits(np.r_[np.zeros(64, np.int64), np.ones(64, np.int64)], np.zeros(128), 64, 1 / 3)
    assert two.max() == 0


@pytest.fixture(scope="module")
def example():
    return load_catalog(EXAMPLE).catalog


def test_same_seed_same_year_other_seed_another(example):
    a = simulate_catalog(example, WINDOW, seed=7).to_json()
    assert simulate_catalog(example, WINDOW, seed=7).to_json() == a
    assert simulate_catalog(example, WINDOW, seed=8).to_json() != a


@pytest.mark.parametrize("sharing", ["hub-hours", "students", "equal"])
def test_costs_add_up_overhead_included(example, sharing):
    model = UsageModel(platform=Platform(sharing=sharing))
    r = simulate_catalog(example, WINDOW, model=model, seed=1)
    for s in r.scenarios:
        assert sum(s.per_presentation.values()) == pytest.approx(s.total, rel=1e-9), s.name
        assert sum(r.by(s, "course").values()) == pytest.approx(s.total, rel=1e-9), s.name
        assert sum(r.by(s, "unit").values()) == pytest.approx(s.total, rel=1e-9), s.name
        assert s.breakdown.total == pytest.approx(s.total, rel=1e-9), s.name
        assert s.breakdown.shared_platform > 0 and s.breakdown.hub_overhead > 0
        assert all(c >= 0 for c in s.per_presentation.values()), s.name


def test_the_example_year_tells_the_topologies_apart(example):
    r = simulate_catalog(example, WINDOW, seed=0)
    rows = {(s.topology, s.hibernation, s.prewarm): s for s in r.scenarios}
    assert len(rows) == 20
    # a hub per student that never sleeps pays a hub for every enrolment all year
    assert rows["per-student", False, False].total > 2 * rows["per-presentation", False, False].total
    # hibernation brings it back near the shared hubs; pre-warming removes the wait at class starts
    assert rows["per-student", True, False].total < 1.2 * rows["per-presentation", False, False].total
    assert rows["per-presentation", False, False].wait_p95_s > 60
    assert rows["per-presentation", False, True].wait_p95_s == 0
    assert rows["per-presentation", False, True].user_node_hours > rows["per-presentation", False, False].user_node_hours
    # one central hub carries everyone: its peak is the cluster's
    assert rows["central", False, False].peak_hub_users == rows["central", False, False].peak_users
    assert rows["per-presentation", False, False].peak_hub_users < rows["central", False, False].peak_users
    data = json.loads(r.to_json())
    assert {s["topology"] for s in data["scenarios"]} == {"per-presentation", "per-course", "per-unit", "central",
                                                           "per-student"}


def test_only_the_window_is_simulated(example):
    r = simulate_catalog(example, Window(dt.date(2026, 12, 1), dt.date(2026, 12, 15)), seed=0)
    keys = {p["key"] for p in r.presentations}
    assert "SWC-dec26" in keys and "DSS-2027" not in keys and "TM351-2025J" not in keys
    assert r.baseline().user_node_hours < 24 * 14 * 300


DEFAULTS = Path(__file__).resolve().parent.parent / "src" / "hubfleet" / "simulate" / "defaults"


def test_the_documented_files_are_the_defaults():
    from hubfleet.costs.files import load_model, load_prices

    assert load_model(DEFAULTS / "model.yaml") == UsageModel()
    assert load_prices(DEFAULTS / "prices.yaml") == Prices()


def test_a_bad_model_file_is_refused_at_its_line(tmp_path):
    from typer.testing import CliRunner

    from hubfleet.cli.main import app

    bad = tmp_path / "model.yaml"
    bad.write_text("usage:\n  hours_per_weak: 4\nplatform:\n  sharing: by-size\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["simulate", str(EXAMPLE), "--model", str(bad), "--out", str(out)])
    assert result.exit_code == 2
    assert f"{bad}:2:3: usage.hours_per_weak: unknown key 'hours_per_weak'" in result.output
    assert f"{bad}:4:12: platform.sharing:" in result.output and "hub-hours" in result.output
    assert not out.exists()  # nothing written


def test_topology_compare_reads_the_simulation(monkeypatch):
    from typer.testing import CliRunner

    from hubfleet.cli import common
    from hubfleet.cli.main import app

    # The console is made once per process: give it a wide terminal, so the table layout (not the narrow one) shows.
    monkeypatch.setattr(common.console, "width", 220)

    result = CliRunner().invoke(app, ["topology", "compare", str(EXAMPLE), "--from", "2026-09-01", "--seed", "0"],
                                env={"COLUMNS": "220"})
    assert result.exit_code == 0, result.output
    r = simulate_catalog(load_catalog(EXAMPLE).catalog, WINDOW, seed=0)
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.startswith("│")}
    assert set(lines) == {"per-presentation (catalog)", "per-course", "per-unit", "central", "per-student"}
    student_on = next(s for s in r.scenarios if s.topology == "per-student" and not s.hibernation and not s.prewarm)
    assert f"{student_on.total:,.0f}" in lines["per-student"]  # the same figures as the simulation's
    assert f"Cheapest: {r.cheapest().name}" in result.output


def _first_fit_decreasing(counts, sizes, node):
    """The textbook algorithm, one pod at a time: what `pack` must equal."""
    pods = sorted((s for c, s in zip(counts, sizes) for _ in range(c)),
                  key=lambda s: max(s[0] / node[0], s[1] / node[1]), reverse=True)
    free: list[list[float]] = []
    for c, m in pods:
        for f in free:
            if f[0] + 1e-9 >= c and f[1] + 1e-9 >= m:
                f[0] -= c
                f[1] -= m
                break
        else:
            free.append([node[0] - c, node[1] - m])
    return len(free)


def test_packing_is_first_fit_decreasing():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    size = st.tuples(st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0, 3.0]), st.sampled_from([0.5, 1.0, 2.0, 3.0, 7.0]))

    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 12), size), min_size=1, max_size=4, unique_by=lambda t: t[1]))
    def check(classes):
        counts, sizes = [c for c, _ in classes], [s for _, s in classes]
        assert pack(counts, sizes, (4.0, 16.0)) == _first_fit_decreasing(counts, sizes, (4.0, 16.0))

    check()


def test_the_shared_queue_equals_the_plain_one():
    from hubfleet.simulate.capacity import SpawnQueue

    rng = np.random.default_rng(5)
    group = np.sort(rng.integers(0, 7, 3000))
    ready = np.concatenate([np.sort(rng.random((group == g).sum()) * 3) for g in range(7)])
    assert np.array_equal(SpawnQueue(group).waits(ready, 64, 1 / 3), queue_waits(group, ready, 64, 1 / 3))
    assert queue_waits(group, ready, 64, 1 / 3).max() > 0  # the case has queues at all


def test_server_minutes_land_in_their_hours():
    from hubfleet.simulate.engine import _pod_minutes_per_hour

    window = Window(dt.date(2026, 1, 1), dt.date(2026, 1, 2))
    p = _pres(window=window, days=(0, 1))
    work = sessions_workload([p, p], window, [0, 0, 1], [30.0, 610.0, 100.0], [170.0, 20.0, 200.0])
    u = _pod_minutes_per_hour(work, 2, 24)
    assert u[0, :5].tolist() == [30, 60, 60, 20, 0] and u[0, 10] == 20 and u[0].sum() == 190
    assert u[1, 1:6].tolist() == [20, 60, 60, 60, 0] and u[1].sum() == 200


def test_a_window_that_is_not_one_is_refused(tmp_path):
    from typer.testing import CliRunner

    from hubfleet.cli.main import app

    runner = CliRunner()
    backwards = runner.invoke(app, ["simulate", str(EXAMPLE), "--from", "2027-01-01", "--to", "2026-01-01",
                                    "--out", str(tmp_path / "a")])
    assert backwards.exit_code == 2 and "is not after --from" in backwards.output
    nonsense = runner.invoke(app, ["simulate", str(EXAMPLE), "--from", "2027-13-01", "--out", str(tmp_path / "b")])
    assert nonsense.exit_code == 2 and "is not a date" in nonsense.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    from hubfleet.cli.cost_cmds import window_of

    assert window_of("2028-02-29", None) == Window(dt.date(2028, 2, 29), dt.date(2029, 2, 28))


def test_hibernation_keeps_a_hub_up_only_around_its_use_and_the_first_student_waits_for_it():
    """One class a day at 19:00 for an hour, 10 students arriving at once, nobody else: the hub is up 19:00-21:00
    (an hour of use, an hour before it sleeps) instead of all day, and each class waits for the hub to wake."""
    window = Window(dt.date(2026, 1, 1), dt.date(2026, 1, 11))
    p = _pres(window=window, students=10)
    starts = np.repeat(np.arange(10) * 1440 + 19 * 60, 10).astype(float)
    work = sessions_workload([p], window, np.zeros(100, int), starts, np.full(100, 60.0), event=starts.astype(int))
    model = UsageModel(platform=Platform(hibernate_after_minutes=60, hub_wake_seconds=45, autoscaler_delay_seconds=0),
                       scenarios=Scenarios(topologies=["per-presentation", "per-student"], hibernation=[False, True],
                                           prewarm=[False, True]))
    rows = {(s.topology, s.hibernation, s.prewarm): s
            for s in simulate(work, model, _prices(core_price=1.0), "f", "per-presentation", 0).scenarios}
    assert rows["per-presentation", False, False].hub_hours == 240
    assert rows["per-presentation", True, False].hub_hours == 20
    assert rows["per-presentation", True, False].wait_p50_s == pytest.approx(45)  # the hub wakes for the class
    assert rows["per-presentation", True, True].wait_p50_s == 0  # ... unless it was woken before
    assert rows["per-presentation", False, False].wait_p95_s == 0
    # a hub per student: 10 hubs all the time, or each for its student's hour and the hour after
    assert rows["per-student", False, False].hub_hours == 2400
    assert rows["per-student", True, False].hub_hours == pytest.approx(100 * 2)
    assert rows["per-student", True, False].wait_p95_s == pytest.approx(45)
    # with no node free the hour before, the class waits for the autoscaler's new node, unless nodes were pre-warmed
    slow = UsageModel(platform=Platform(autoscaler_delay_seconds=240), scenarios=Scenarios(
        topologies=["per-presentation"], hibernation=[False], prewarm=[False, True]))
    cold, warm = simulate(work, slow, _prices(core_price=1.0), "f", "per-presentation", 0).scenarios
    assert cold.wait_p50_s == pytest.approx(240) and warm.wait_p95_s == 0
    assert warm.user_node_hours > cold.user_node_hours  # the pre-warmed half hour costs node time


def test_progress_reaches_its_total(example):
    from hubfleet.simulate import steps

    ticks = []
    simulate_catalog(example, WINDOW, seed=0, progress=ticks.append)
    assert sum(ticks) == steps(example, WINDOW, UsageModel()) == 10 + 1 + 20


def test_a_catalog_timetable_is_the_presentations_classes(example):
    """TM351 2026J's timetable (Tuesdays 19:00, and a surgery on 12 January that overlaps one of them) is what the
    simulation's classes are, not the model's default weekly class."""
    from hubfleet.simulate import UsageModel, catalog_timetable

    meetings = catalog_timetable(example, UsageModel())
    tm351 = next(k for k in meetings if k.startswith("TM351-"))
    starts = [m.start for m in meetings[tm351]]
    assert starts and all(s.weekday() == 1 for s in starts)  # every one on a Tuesday
    assert {s.time() for s in starts} == {dt.time(19, 0), dt.time(18, 0)}  # the surgery starts the merged session
    surgery = next(m for m in meetings[tm351] if m.start == dt.datetime(2027, 1, 12, 18, 0))
    assert (surgery.minutes, surgery.attendance) == (150, 0.5)  # 18:00 to 20:30, the larger attendance
    assert all(not k.startswith("M269-") for k in meetings)  # no timetable: the model's default class instead
