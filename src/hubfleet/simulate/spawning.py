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
