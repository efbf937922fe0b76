"""How every backend carries out a Plan: group the actions by hub, run the hubs in a pool, keep plan order.

Hubs are independent, so their action lists run in parallel (a hub takes seconds to boot, a Helm release
longer); within one hub the plan's order holds (archive before stop before delete). One action's failure is
reported and does not stop the other hubs, nor the hub's later actions, except that a hub whose archive failed is
never deleted in the same apply.

Results come back in the plan's order, matched by position: actions are frozen pydantic models, but their
``changes`` carry lists (admins, tutors, a profile's groups), so they cannot be dictionary keys.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from hubfleet.backends.base import ActionResult, ApplyReport, Progress
from hubfleet.plan.diff import Action, Kind, Plan

# One action's work: returns the message shown to the operator, raises on failure.
Do = Callable[[Action], str]


class ArchiveNotDone(RuntimeError):
    """A delete skipped because an archive of the same hub failed earlier in this apply."""


class ApplyCancelled(RuntimeError):
    """The apply was interrupted (Ctrl-C, SIGTERM from ``hubfleet down``): nothing new is started after this."""


def run_plan(plan: Plan, do: Do, *, concurrency: int, say: Progress,
             explain: Callable[[Exception], str] = str, cancelled: threading.Event | None = None) -> ApplyReport:
    """Carry out ``plan`` with ``do``, ``concurrency`` hubs at a time; ``explain`` turns an exception into the
    message a person reads (the backend knows which of its errors are already phrased for people).

    ``cancelled``: set when the caller is interrupted (Ctrl-C, SIGTERM); actions not yet started then fail with
    "interrupted: not started" instead of starting hubs behind the back of the ``down`` that interrupted them."""
    by_hub: dict[str, list[int]] = {}
    for position, action in enumerate(plan.actions):
        by_hub.setdefault(action.hub, []).append(position)
    results: list[ActionResult | None] = [None] * len(plan.actions)

    def run_hub(positions: list[int]) -> None:
        archive_failed = False
        for position in positions:
            action = plan.actions[position]
            try:
                if cancelled is not None and cancelled.is_set():
                    raise ApplyCancelled("interrupted: not started")
                if action.kind == Kind.delete and archive_failed:
                    raise ArchiveNotDone("kept: a presentation of this hub is not archived yet")
                results[position] = ActionResult(action, ok=True, message=do(action))
                say(action, f"done: {results[position].message}")  # progress displays count finished hubs by it
            except Exception as exc:  # noqa: BLE001 - one hub's failure must not stop the others
                archive_failed |= action.kind == Kind.archive
                message = explain(exc)
                say(action, f"failed: {message}")
                results[position] = ActionResult(action, ok=False, message=message)

    # Not a `with` block: on an interrupt the workers must be told to stop *before* waiting for them, or they would
    # go on starting hubs for minutes.
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
    try:
        for future in [pool.submit(run_hub, positions) for positions in by_hub.values()]:
            future.result()
    except BaseException:
        if cancelled is not None:
            cancelled.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return ApplyReport(results=[r for r in results if r is not None])
