"""The one plan executor both backends use (hubfleet.backends.executor.run_plan)."""

from __future__ import annotations

import threading

from hubfleet.backends.executor import run_plan
from hubfleet.plan.diff import Action, Change, Kind, Plan


def _plan() -> Plan:
    listy = (Change(field="admins", old=["a"], new=["a", "b"]),)
    return Plan(actions=(
        Action(kind=Kind.update, hub="h1", changes=listy),
        Action(kind=Kind.create, hub="h2"),
        Action(kind=Kind.archive, hub="h3", presentation="X-1"),
        Action(kind=Kind.stop, hub="h3"),
        Action(kind=Kind.delete, hub="h3"),
        Action(kind=Kind.update, hub="h2", changes=listy),
    ))


def test_results_in_plan_order_one_per_action_and_hub_order_kept():
    done: dict[str, list[Kind]] = {}
    lock = threading.Lock()

    def do(action):
        with lock:
            done.setdefault(action.hub, []).append(action.kind)
        return f"{action.kind.value} {action.hub}"

    plan = _plan()
    report = run_plan(plan, do, concurrency=3, say=lambda a, m: None)
    assert report.ok and [r.action for r in report.results] == list(plan.actions)
    assert [r.message for r in report.results][0] == "update h1"
    assert done == {"h1": [Kind.update], "h2": [Kind.create, Kind.update],
                    "h3": [Kind.archive, Kind.stop, Kind.delete]}


def test_a_failed_archive_keeps_the_hub_and_other_hubs_carry_on():
    said = []

    def do(action):
        if action.kind == Kind.archive:
            raise OSError("archive store full")
        if action.kind == Kind.delete:
            raise AssertionError("delete must not run after a failed archive")
        return "ok"

    report = run_plan(_plan(), do, concurrency=2, say=lambda a, m: said.append((a.hub, m)),
                      explain=lambda exc: f"explained: {exc}")
    outcome = {(r.action.hub, r.action.kind): r for r in report.results}
    assert not outcome[("h3", Kind.archive)].ok
    assert outcome[("h3", Kind.archive)].message == "explained: archive store full"
    assert not outcome[("h3", Kind.delete)].ok and "not archived" in outcome[("h3", Kind.delete)].message
    assert outcome[("h3", Kind.stop)].ok and outcome[("h1", Kind.update)].ok and outcome[("h2", Kind.create)].ok
    assert ("h3", "failed: explained: archive store full") in said


def test_an_interrupt_stops_the_actions_not_yet_started():
    cancelled, archiving = threading.Event(), threading.Event()
    started = []

    def do(action):
        started.append((action.hub, action.kind))
        if action.hub == "h1":
            assert archiving.wait(10)
            raise KeyboardInterrupt  # Ctrl-C arrives while h1 converges and h3 archives
        archiving.set()
        assert cancelled.wait(10)
        return "ok"

    plan = Plan(actions=(Action(kind=Kind.update, hub="h1"), Action(kind=Kind.archive, hub="h3", presentation="X"),
                         Action(kind=Kind.stop, hub="h3"), Action(kind=Kind.delete, hub="h3")))
    try:
        run_plan(plan, do, concurrency=2, say=lambda a, m: None, cancelled=cancelled)
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the interrupt must reach the caller")
    # The running archive finished; nothing after it started behind the caller's back.
    assert cancelled.is_set() and sorted(started) == [("h1", Kind.update), ("h3", Kind.archive)]


def test_after_an_interrupt_every_later_action_says_it_did_not_start():
    cancelled = threading.Event()
    plan = Plan(actions=(Action(kind=Kind.update, hub="h1"), Action(kind=Kind.stop, hub="h1"),
                         Action(kind=Kind.delete, hub="h1")))
    report = run_plan(plan, lambda a: cancelled.set() or "ok", concurrency=1, say=lambda a, m: None,
                      cancelled=cancelled)
    assert [r.ok for r in report.results] == [True, False, False]
    assert all(r.message == "interrupted: not started" for r in report.results[1:])
