"""Capacity, as the cluster and the hub see it: pods bin-packed onto nodes by their requests (the scheduler and
cluster autoscaler), and the spawn queue at a class start (JupyterHub's concurrent spawn limit).

Packing: first-fit, in decreasing order of size, on identical nodes. Pods come as counts per size class (a
presentation's profile is one class), so one packing is a handful of steps however many pods there are:
identical pods placed first-fit fill the first node with room to capacity, then the next.

Spawning: a hub spawns at most ``limit`` servers at a time; each takes ``spawn_seconds``. Requests are served
first come, first served, so with identical spawn times request ``i`` starts when request ``i - limit`` has
finished: ``begin[i] = max(ready[i], begin[i - limit] + spawn)``. That recursion runs a block of ``limit``
requests at a time, vectorised across every hub and class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def pods_per_node(pod: tuple[float, float], node: tuple[float, float]) -> int:
    """How many identical pods fit in ``node`` free capacity (0 if not even one)."""
    fits = [math.floor(cap / req + 1e-9) if req > 0 else 1_000_000 for req, cap in zip(pod, node)]
    return max(min(fits), 0)


def pack(counts: Sequence[int], sizes: Sequence[tuple[float, float]], node: tuple[float, float]) -> int:
    """Nodes needed for ``counts[i]`` pods of ``sizes[i]`` (cpu, memory) each: first-fit decreasing.

    Nodes are kept as runs of identical nodes ``[count, free cpu, free memory]`` in the order they were added:
    first-fit of identical pods fills whole runs and splits at most one, so a packing is a few list steps per
    size class however many nodes there are. A pod larger than a node can never be scheduled; it raises, since
    the simulation would otherwise report a cluster that cannot exist.
    """
    cap_c, cap_m = node
    order = sorted(range(len(sizes)), key=lambda i: max(s / c for s, c in zip(sizes[i], node)), reverse=True)
    runs: list[list[float]] = []
    for i in order:
        n = int(counts[i])
        if n <= 0:
            continue
        c, m = sizes[i]
        per_node = pods_per_node((c, m), node)
        if per_node == 0:
            raise ValueError(f"a pod of {c:g} CPU / {m:g} GiB does not fit on a node of {cap_c:g} CPU / {cap_m:g} "
                             "GiB; pick a larger node type in the prices file")
        out = []
        for run in runs:
            count, fc, fm = run
            fit = pods_per_node((c, m), (fc, fm)) if n else 0
            if fit <= 0:
                out.append(run)
                continue
            fit = min(fit, n)
            full = min(int(count), n // fit)
            if full:
                out.append([full, fc - fit * c, fm - fit * m])
                n -= full * fit
            left = int(count) - full
            if left and n:  # fewer than `fit` pods remain: one node takes them
                out.append([1, fc - n * c, fm - n * m])
                n, left = 0, left - 1
            if left:
                out.append([left, fc, fm])
        runs = out
        if n:
            full, rest = divmod(n, per_node)
            if full:
                runs.append([full, cap_c - per_node * c, cap_m - per_node * m])
            if rest:
                runs.append([1, cap_c - rest * c, cap_m - rest * m])
    return int(sum(run[0] for run in runs))


class Packer:
    """``pack`` with a memory: an autoscaled year repeats the same demand (nights, quiet weeks) many times."""

    def __init__(self, sizes: Sequence[tuple[float, float]], node: tuple[float, float]):
        self.sizes = list(sizes)
        self.node = node
        self._seen: dict[tuple[int, ...], int] = {}

    def __call__(self, counts: Sequence[int]) -> int:
        key = tuple(int(c) for c in counts)
        if key not in self._seen:
            self._seen[key] = pack(key, self.sizes, self.node)
        return self._seen[key]


def queue_waits(group: np.ndarray, ready: np.ndarray, limit: int, spawn_minutes: float) -> np.ndarray:
    """Minutes each request waits for a spawn slot. ``group`` names the queue (a hub at one class start),
    ``ready`` when the request can first be served (arrival, or later if the hub or a node is not there yet)."""
    n = len(ready)
    if n == 0:
        return np.zeros(0)
    order = np.lexsort((ready, group))
    g, r = group[order], ready[order]
    first = np.ones(n, dtype=bool)
    first[1:] = g[1:] != g[:-1]
    start_of_group = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    rank = np.arange(n) - start_of_group
    begin = r.copy()
    for k in range(1, int(rank.max()) // limit + 1):
        idx = np.nonzero((rank >= k * limit) & (rank < (k + 1) * limit))[0]
        begin[idx] = np.maximum(r[idx], begin[idx - limit] + spawn_minutes)
    waits = np.empty(n)
    waits[order] = begin - r
    return waits


class SpawnQueue:
    """``queue_waits`` for many scenarios over the same arrivals: the grouping is sorted once.

    ``group[i]`` is arrival ``i``'s queue; arrivals must already be in time order within each queue, and the
    ``ready`` times given to ``waits`` must keep that order (the delays the engine adds do: a new node or a
    waking hub delays a queue's later requests to one moment, which never reorders them).
    """

    def __init__(self, group: np.ndarray):
        self.group = np.asarray(group, dtype=np.int64)
        n = len(self.group)
        self.groups = int(self.group.max()) + 1 if n else 0
        self.order = np.argsort(self.group, kind="stable")
        g = self.group[self.order]
        first = np.ones(n, dtype=bool)
        first[1:] = g[1:] != g[:-1]
        rank = np.arange(n) - np.maximum.accumulate(np.where(first, np.arange(n), 0)) if n else np.zeros(0, int)
        self.by_rank = np.argsort(rank, kind="stable")  # positions in `order`, lowest rank first
        self.rank_starts = np.searchsorted(rank[self.by_rank], np.arange(int(rank.max(initial=0)) + 2))

    def waits(self, ready: np.ndarray, limit: int, spawn_minutes: float) -> np.ndarray:
        r = np.asarray(ready, dtype=float)[self.order]
        begin = r.copy()
        top = len(self.rank_starts) - 1
        for k in range(limit, top, limit):  # ranks [k, k + limit): each waits for rank - limit of its queue
            j = self.by_rank[self.rank_starts[k]:self.rank_starts[min(k + limit, top)]]
            begin[j] = np.maximum(r[j], begin[j - limit] + spawn_minutes)
        out = np.empty(len(r))
        out[self.order] = begin - r
        return out
