"""Bin-packing of pods onto nodes, as the Kubernetes scheduler and cluster autoscaler see it: pods by their
requests (CPU and memory), first-fit in decreasing order of size, on identical nodes.

Pods come as counts per size class (a presentation's profile is one class), so one packing is a handful of
numpy steps however many pods there are: identical pods placed first-fit fill the first node with room to
capacity, then the next, which is a cumulative sum.
"""

from __future__ import annotations

from collections.abc import Sequence

import math


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
