"""What the ``up`` loop measured, kept in one small file the portal's ``/metrics`` reads (``web/metrics.py``).

The loop and the portal are separate processes (the portal is started detached by the front door), so the loop's
figures cross over as a file, the way wakes cross over in the hibernation journal. Unlike that journal, this file
is bounded: the loop steps every few seconds, so it keeps cumulative histogram buckets and counters, not events.
It survives an ``up`` restart (the counts go on from the file), so the Prometheus counters only ever grow.

* reconcile: every step's duration (histogram) and its drift, the number of actions the last plan wanted;
* enrolment: every sync's duration (histogram) and its writes by hub and kind (users created, added to groups...);
* warm: the timetable windows in force at the last step (``plan.timetable``), with their placeholders and end.

One writer (``up`` holds the state dir's lock); the portal reads a whole file (atomic replace) or none.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["DURATION_BUCKETS", "LoopStats", "read_stats"]

# Seconds. A quiet local step takes milliseconds; a step that starts hubs or syncs a large roster takes tens.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
FILE = "loop_stats.json"


def _histogram() -> dict[str, Any]:
    return {"buckets": [0] * len(DURATION_BUCKETS), "count": 0, "sum": 0.0}


def _observe(h: dict[str, Any], seconds: float) -> None:
    # Per-bucket (not cumulative) counts; the reader accumulates them into Prometheus' "le" buckets.
    i = bisect.bisect_left(DURATION_BUCKETS, seconds)
    if i < len(DURATION_BUCKETS):
        h["buckets"][i] += 1
    h["count"] += 1
    h["sum"] += seconds


def empty_stats() -> dict[str, Any]:
    return {"reconcile": _histogram(), "drift": 0, "enrolment": _histogram(), "writes": {}, "warm": []}


def read_stats(state: Path) -> dict[str, Any]:
    """The last figures the loop wrote under ``state``; zeros if it never ran (or the file is unreadable)."""
    data = empty_stats()
    with contextlib.suppress(FileNotFoundError, ValueError):
        loaded = json.loads((Path(state) / FILE).read_text())
        if isinstance(loaded, dict):
            data.update(loaded)
    return data


class LoopStats:
    def __init__(self, state: Path) -> None:
        self.path = Path(state) / FILE
        self.data = read_stats(state)

    def step(self, seconds: float, drift: int | None) -> None:
        """One reconcile step; ``drift`` None when the step did not get as far as a plan (kept as it was)."""
        _observe(self.data["reconcile"], seconds)
        if drift is not None:
            self.data["drift"] = drift

    def sync(self, seconds: float, writes: dict[str, dict[str, int]]) -> None:
        """One enrolment sync and what it changed, {hub: {kind: n}}."""
        _observe(self.data["enrolment"], seconds)
        for hub, kinds in writes.items():
            mine = self.data["writes"].setdefault(hub, {})
            for kind, n in kinds.items():
                mine[kind] = mine.get(kind, 0) + n

    def warm(self, windows: list[tuple[str, str, int, dt.datetime]]) -> None:
        """The warm windows in force: (hub, presentation, placeholders, warm_until), replacing the last step's."""
        self.data["warm"] = [{"hub": h, "presentation": p, "placeholders": n, "until": until.isoformat()}
                             for h, p, n, until in windows]  # fmt: skip

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{FILE}.")  # 0600
        with os.fdopen(fd, "w") as fh:
            json.dump(self.data, fh, sort_keys=True)
        os.replace(tmp, self.path)
