"""Bin-packing of pods onto nodes, as the Kubernetes scheduler and cluster autoscaler see it: pods by their
requests (CPU and memory), first-fit in decreasing order of size, on identical nodes.

Pods come as counts per size class (a presentation's profile is one class), so one packing is a handful of
numpy steps however many pods there are: identical pods placed first-fit fill the first node with room to
capacity, then the next, which is a cumulative sum.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pods_per_node(pod: tuple[float, float], node: tuple[float, float]) -> int:
    """How many identical pods fit on an empty node (0 if one does not fit at all)."""
    fits = [np.floor(cap / req + 1e-9) if req > 0 else np.inf for req, cap in zip(pod, node)]
    n = min(fits)
    return int(n) if np.isfinite(n) else 1_000_000


def pack(counts: Sequence[int], sizes: Sequence[tuple[float, float]], node: tuple[float, float]) -> int:
    """Nodes needed for ``counts[i]`` pods of ``sizes[i]`` (cpu, memory) each: first-fit decreasing.

    A pod larger than a node can never be scheduled; it raises, since the simulation would otherwise report
    a cluster that cannot exist.
    """
    order = sorted(range(len(sizes)), key=lambda i: max(s / c for s, c in zip(sizes[i], node)), reverse=True)
    free = np.zeros((0, 2))
    cap = np.asarray(node, dtype=float)
    for i in order:
        n = int(counts[i])
        if n <= 0:
            continue
        size = np.asarray(sizes[i], dtype=float)
        per_node = pods_per_node(tuple(size), tuple(cap))
        if per_node == 0:
            raise ValueError(f"a pod of {size[0]:g} CPU / {size[1]:g} GiB does not fit on a node of "
                             f"{cap[0]:g} CPU / {cap[1]:g} GiB; pick a larger node type in the prices file")
        if len(free):
            with np.errstate(divide="ignore", invalid="ignore"):
                room = np.floor(np.min(np.where(size > 0, free / np.where(size > 0, size, 1) + 1e-9, np.inf), axis=1))
            room = np.minimum(room, n).astype(np.int64)
            before = np.concatenate(([0], np.cumsum(room)[:-1]))
            placed = np.clip(n - before, 0, room)
            free = free - placed[:, None] * size
            n -= int(placed.sum())
        if n > 0:
            full, rest = divmod(n, per_node)
            new = np.repeat(cap[None, :] - per_node * size, full, axis=0)
            if rest:
                new = np.vstack([new, cap - rest * size])
            free = np.vstack([free, new]) if len(free) else new
    return len(free)


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
