"""What the ``up`` loop measured, kept in one small file the portal's ``/metrics`` reads (``web/metrics.py``).

The loop and the portal are separate processes (the portal is started detached by the front door), so the loop's
figures cross over as a file, the way wakes cross over in the hibernation journal. Unlike that journal, this file
is bounded: the loop steps every few seconds, so it keeps cumulative histogram buckets and counters, not events.
It survives an ``up`` restart (the counts go on from the file), so the Prometheus counters only ever grow.

* reconcile: every step's duration (histogram) and its drift, the number of actions the last plan wanted;
* enrolment: every sync's duration (histogram) and its writes by hub and kind (users created, added to groups...);
* warm: the timetable windows in force at the last step (``plan.timetable``), with their placeholders and end;
* events: what the loop itself did to hubs beyond its plan (Kubernetes: hibernations, timetable wakes).

One writer (``up`` holds the state dir's lock); the portal reads a whole file (atomic replace) or none. In the
cluster the controller has no portal beside it: it serves these same families itself (``LoopCollector``,
``serve_metrics``), from memory.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

__all__ = ["DURATION_BUCKETS", "LoopCollector", "LoopStats", "loop_families", "read_stats", "serve_metrics"]

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
    return {"reconcile": _histogram(), "drift": 0, "enrolment": _histogram(), "writes": {}, "warm": [], "events": {}}


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

    def event(self, kind: str) -> None:
        """One hub event the loop caused (``hibernate``, ``wake:timetable``), counted."""
        events = self.data.setdefault("events", {})
        events[kind] = events.get(kind, 0) + 1

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{FILE}.")  # 0600
        with os.fdopen(fd, "w") as fh:
            json.dump(self.data, fh, sort_keys=True)
        os.replace(tmp, self.path)


def _families_histogram(name: str, doc: str, h: dict) -> HistogramMetricFamily:
    counts, total = [], 0
    for n in h["buckets"]:
        total += n
        counts.append(total)
    buckets = [(str(b), c) for b, c in zip(DURATION_BUCKETS, counts)] + [("+Inf", h["count"])]
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=h["sum"])


def loop_families(stats: dict[str, Any]) -> Iterator:
    """The loop's Prometheus families from its figures (the portal's /metrics and the controller's)."""
    yield _families_histogram("hubfleet_reconcile_duration_seconds", "Duration of each step of the up loop (plan, "
                              "observe, apply, hibernation check, enrolment sync).", stats["reconcile"])  # fmt: skip
    drift = GaugeMetricFamily("hubfleet_reconcile_drift", "Actions the last plan of the up loop wanted "
                              "(0: the fleet matches its catalog).")  # fmt: skip
    drift.add_metric([], stats["drift"])
    yield drift
    yield _families_histogram("hubfleet_enrolment_sync_duration_seconds", "Duration of each enrolment sync into the "
                              "running hubs.", stats["enrolment"])  # fmt: skip
    writes = CounterMetricFamily("hubfleet_enrolment_writes", "Changes enrolment syncs made, by hub and kind.",
                                 labels=["hub", "kind"])  # fmt: skip
    for hub, kinds in sorted(stats["writes"].items()):
        for kind, n in sorted(kinds.items()):
            writes.add_metric([hub, kind], n)
    yield writes
    held = GaugeMetricFamily("hubfleet_placeholders", "Placeholders the timetable wants now per presentation "
                             "(Kubernetes: user-placeholder pods; locally the hub is only kept awake).",
                             labels=["hub", "presentation"])  # fmt: skip
    for w in stats["warm"]:  # as of the loop's last step (locally the fleet stops with the loop)
        held.add_metric([w["hub"], w["presentation"]], w["placeholders"])
    yield held


class LoopCollector:
    """The controller's /metrics: the loop's families, and the hub events it caused (hibernations, timetable
    wakes; a request's wake is the portal's, which counts it), from a live ``LoopStats``."""

    def __init__(self, stats: LoopStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator:
        yield from loop_families(self.stats.data)
        events = self.stats.data.get("events") or {}
        sleeps = CounterMetricFamily("hubfleet_hibernations", "Hubs put to sleep after their idle time.")
        sleeps.add_metric([], events.get("hibernate", 0))
        yield sleeps
        wakes = CounterMetricFamily("hubfleet_wakes", "Wakes of hibernated hubs by reason and outcome.",
                                    labels=["reason", "outcome"])  # fmt: skip
        wakes.add_metric(["timetable", "ok"], events.get("wake:timetable", 0))
        yield wakes


def serve_metrics(port: int, stats: LoopStats, addr: str = "0.0.0.0") -> Any:  # noqa: S104 - a pod's port
    """Serve ``stats`` as Prometheus text on ``addr:port``/metrics in a daemon thread; returns the server."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(LoopCollector(stats))
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server
