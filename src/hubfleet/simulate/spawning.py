"""Spawn waits at the start of a class: everyone arrives within minutes and asks for a server at once.

A hub spawns at most ``limit`` servers at a time (JupyterHub's ``concurrent_spawn_limit``); each spawn takes
``spawn_seconds``. Requests are served first come, first served, so with identical spawn times request ``i``
starts when request ``i - limit`` has finished: ``begin[i] = max(ready[i], begin[i - limit] + spawn)``. That
recursion runs a block of ``limit`` requests at a time, vectorised across every hub and class.
"""

from __future__ import annotations

import numpy as np


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
