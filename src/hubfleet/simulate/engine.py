"""The year, run: concurrency, nodes, hubs, spawn waits and cost for every scenario. Pure (numpy only).

Time runs in bins of ``platform.resolution_minutes``; a server counts in a bin when it runs at the bin's start
(so a Poisson arrival stream gives exactly the M/G/inf Poisson number in system at every instant). Nodes are
sized per hour: the autoscaler keeps, for each hour, the nodes that the hour's peak of each pod class needs,
packed first-fit decreasing (cluster-autoscaler does not remove a node within ~10 minutes of need, so hourly
sizing is close to what a cluster does and never below it).

Cost, per scenario, splits into five parts that add up to the total, and every part lands on presentations:
- user pods: what the servers' requests occupy of the user nodes, hour by hour, to the presentation that ran them;
- idle capacity: the rest of those nodes' cost that hour, shared over the same presentations by their requests;
- hub overhead: each hub pod's request share of a core node for every hour the hub is up, split over the
  presentations on that hub (by students, or with hibernation by who woke it);
- shared platform: the fixed items (control plane, ingress, monitoring), the core nodes' unused capacity and
  user nodes that ran with no servers at all (the pool's minimum), split by the declared sharing rule;
- storage: students x GiB x months provisioned, to the presentation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hubfleet.catalog.naming import dns_label
from hubfleet.simulate.load import PresentationLoad, Workload
from hubfleet.simulate.model import Prices, Topology, UsageModel
from hubfleet.simulate.capacity import Packer, SpawnQueue, pods_per_node
from hubfleet.simulate.results import Breakdown, Results, ScenarioResult, share_out

DAYS_PER_MONTH = 365.25 / 12


@dataclass(frozen=True)
class Scenario:
    topology: Topology
    hibernation: bool
    prewarm: bool


def hub_keys(presentations: list[PresentationLoad], topology: Topology, fleet: str) -> list[str] | None:
    """The hub each presentation lives on (None for per-student: one hub per student)."""
    if topology == "per-student":
        return None
    if topology == "per-presentation":
        return [dns_label(p.key) for p in presentations]
    if topology == "per-course":
        return [dns_label(p.course) for p in presentations]
    if topology == "per-unit":
        return [dns_label(p.unit or "") for p in presentations]
    return [dns_label(fleet)] * len(presentations)


def _hour_ranges(presentations, window, attr_from, attr_to):
    lo = np.array([max((getattr(p, attr_from) - window.start).days, 0) * 24 for p in presentations], dtype=np.int64)
    hi = np.array([min(max((getattr(p, attr_to) - window.start).days, 0), window.days) * 24 for p in presentations],
                  dtype=np.int64)
    return lo, np.maximum(hi, lo)


def _range_matrix(lo, hi, hours):
    h = np.arange(hours)
    return (h[None, :] >= lo[:, None]) & (h[None, :] < hi[:, None])


def _dilate(active: np.ndarray, hours: int) -> np.ndarray:
    out = active.copy()
    for k in range(1, hours + 1):
        out[:, k:] |= active[:, :-k]
    return out


class Simulation:
    """What every scenario shares (the load, the user nodes), computed once; ``run`` adds each scenario."""

    def __init__(self, workload: Workload, model: UsageModel, prices: Prices, fleet: str):
        if len(workload.pres) and np.any(np.diff(workload.pres) < 0):
            order = np.argsort(workload.pres, kind="stable")  # hub peaks slice sessions by presentation
            workload = Workload(workload.window, workload.presentations, workload.pres[order], workload.start[order],
                                workload.active[order], workload.end[order], workload.event[order], workload.meta)
        self.w, self.model, self.prices, self.fleet = workload, model, prices, fleet
        pl = model.platform
        self.R = pl.resolution_minutes
        self.H = workload.window.hours
        self.NB = self.H * (60 // self.R)
        P = len(workload.presentations)
        pres = workload.presentations
        self.students = np.array([p.students for p in pres], dtype=float)
        sizes = sorted({(p.cpu, p.memory) for p in pres})
        self.sizes = sizes
        cls_of = np.array([sizes.index((p.cpu, p.memory)) for p in pres], dtype=np.int64)
        node = prices.user_pool.node.capacity
        self.dom = np.array([max(p.cpu / node[0], p.memory / node[1]) for p in pres])  # node share per pod
        # Instants at which each server runs: bins [b0, b1)
        self.b0 = np.minimum(np.ceil(workload.start / self.R), self.NB).astype(np.int32)
        self.b1 = np.minimum(np.ceil(workload.end / self.R), self.NB).astype(np.int32)
        C = len(sizes)
        c = cls_of[workload.pres] if len(workload.pres) else np.zeros(0, np.int64)
        width = self.NB + 1
        delta = (np.bincount(c * width + self.b0, minlength=C * width)
                 - np.bincount(c * width + self.b1, minlength=C * width))
        self.conc = np.cumsum(delta.reshape(C, width), axis=1)[:, : self.NB] if C else np.zeros((0, self.NB))
        self.total_conc = self.conc.sum(axis=0) if C else np.zeros(self.NB, dtype=np.int64)
        hourly = self.conc.reshape(C, self.H, 60 // self.R).max(axis=2) if C else np.zeros((0, self.H))
        self.hourly_total = self.total_conc.reshape(self.H, 60 // self.R).max(axis=1)
        self.dom_conc = (self.conc * np.array([max(s[0] / node[0], s[1] / node[1]) for s in sizes])[:, None]).sum(
            axis=0) if C else np.zeros(self.NB)
        # Nodes per hour: pack each distinct demand once.
        packer = Packer(sizes, node)
        if C:
            uniq, inverse = np.unique(hourly, axis=1, return_inverse=True)
            packed = np.array([packer(uniq[:, j]) for j in range(uniq.shape[1])])
            need = packed[np.ravel(inverse)]
        else:
            need = np.zeros(self.H, dtype=np.int64)
        pool = prices.user_pool
        self.need = need
        self.user_nodes = np.clip(need, pool.min_nodes, pool.max_nodes).astype(float)
        self.hours_short = int((need > pool.max_nodes).sum())
        # Usage per presentation per hour, in pod-minutes (servers running, idle or not)
        self.U = _pod_minutes_per_hour(workload, P, self.H)
        self.request_node_hours = self.U * self.dom[:, None] / 60  # node-hours the requests occupy
        self.student_hours = float(workload.active.sum() / 60)
        self.live_lo, self.live_hi = _hour_ranges(pres, workload.window, "hub_from", "hub_to")
        self.live = _range_matrix(self.live_lo, self.live_hi, self.H)
        self.request_total = self.request_node_hours.sum(axis=0)
        self.request_frac = np.divide(self.request_node_hours, self.request_total,
                                      out=np.zeros_like(self.request_node_hours), where=self.request_total > 0)
        # Class arrivals in (class start, arrival) order; meetings = distinct (presentation, class start).
        tt = np.flatnonzero(workload.timetabled)
        tt = tt[np.lexsort((workload.start[tt], workload.event[tt]))]
        self.arr_pres, self.arr_time, self.arr_event = workload.pres[tt], workload.start[tt], workload.event[tt]
        span = int(self.arr_event.max(initial=0)) + 1
        meet_key, self.arr_meet = np.unique(self.arr_pres.astype(np.int64) * span + self.arr_event, return_inverse=True)
        self.arr_meet = np.ravel(self.arr_meet)
        self.meet_pres, self.meet_event = meet_key // span, meet_key % span
        self.event_hours = np.unique(self.arr_event // 60) if len(tt) else np.zeros(0, np.int64)
        self._node_ready = None
        self._hub_peaks: dict[str, tuple[int, int]] = {}
        self._hub_cache: dict = {}
        self._queues: dict = {}

    # -- user nodes ---------------------------------------------------------------------------------------------
    def user_nodes_for(self, prewarm: bool) -> np.ndarray:
        nodes = self.user_nodes.copy()
        if prewarm and len(self.event_hours):
            h = self.event_hours[self.event_hours > 0]
            # Nodes for the class come up prewarm_minutes early: that part of the previous hour at the class size.
            extra = np.maximum(nodes[h] - nodes[h - 1], 0) * min(self.model.platform.prewarm_minutes, 60) / 60
            np.add.at(nodes, h - 1, extra)
        return nodes

    def node_ready(self) -> np.ndarray:
        """Without pre-warming: the minute each class arrival can first get a node (arrival, or a new node)."""
        if self._node_ready is None:
            delay = self.model.platform.autoscaler_delay_seconds / 60
            ev, t, d = self.arr_event, self.arr_time, self.dom[self.arr_pres]  # already in (class, time) order
            bounds = np.flatnonzero(np.r_[True, ev[1:] != ev[:-1], True])
            out = t.copy()
            for a, b in zip(bounds[:-1], bounds[1:]):
                first_bin = max(int(np.floor(t[a] / self.R)), 0)
                hour = first_bin * self.R // 60
                nodes_before = self.user_nodes[hour - 1] if hour > 0 else self.user_nodes[0]
                free = nodes_before - (self.dom_conc[first_bin - 1] if first_bin > 0 else 0)
                over = np.cumsum(d[a:b]) > free + 1e-9
                if over.any():
                    new_node_at = t[a:b][over][0] + delay
                    out[a:b][over] = np.maximum(t[a:b][over], new_node_at)
            self._node_ready = out
        return self._node_ready

    # -- hubs ---------------------------------------------------------------------------------------------------
    def hub_peak(self, topology: Topology, keys: list[str] | None) -> tuple[int, int]:
        """(hubs, largest hub's peak concurrent servers)."""
        if topology not in self._hub_peaks:
            if keys is None:
                self._hub_peaks[topology] = (int(self.students[self.live.any(axis=1)].sum()),
                                             1 if len(self.w.pres) else 0)
            else:
                names = sorted(set(k for k, alive in zip(keys, self.live.any(axis=1)) if alive))
                peak = 0
                bounds = np.searchsorted(self.w.pres, np.arange(len(keys) + 1))  # sessions are grouped by presentation
                for name in names:
                    members = [i for i, k in enumerate(keys) if k == name]
                    b0 = np.concatenate([self.b0[bounds[i]:bounds[i + 1]] for i in members])
                    b1 = np.concatenate([self.b1[bounds[i]:bounds[i + 1]] for i in members])
                    if len(b0):
                        width = self.NB + 1
                        c = np.cumsum(np.bincount(b0, minlength=width) - np.bincount(b1, minlength=width))
                        peak = max(peak, int(c.max()))
                self._hub_peaks[topology] = (len(names), peak)
        return self._hub_peaks[topology]

    def _hub_index(self, keys: list[str]) -> tuple[np.ndarray, int]:
        names = sorted(set(keys))
        pos = {k: i for i, k in enumerate(names)}
        return np.array([pos[k] for k in keys], dtype=np.int64), len(names)

    def _hubs(self, topology: Topology, keys, hibernation: bool):
        """Hub-hours each presentation carries, hubs awake per hour, and (shared hubs) which hub is up when."""
        cache_key = (topology, hibernation)
        if cache_key in self._hub_cache:
            return self._hub_cache[cache_key]
        pl, w, P = self.model.platform, self.w, len(self.w.presentations)
        dilate_h = math.ceil(pl.hibernate_after_minutes / 60)
        hub_up = None
        if keys is None:
            if hibernation:
                life = np.bincount(w.pres, weights=(w.end - w.start + pl.hibernate_after_minutes) / 60, minlength=P)
                hub_hours = life
                stretch = life.sum() / max((w.end - w.start).sum() / 60, 1e-9) if len(w.pres) else 0.0
                awake = np.ceil(self.hourly_total * stretch)
            else:
                hub_hours = self.students * self.live.sum(axis=1)
                awake = self.students @ self.live
        else:
            hub_idx, n = self._hub_index(keys)
            if hibernation:
                active = self.U > 0
                hub_up = _dilate(_group_any(active, hub_idx, n), dilate_h)
                weight = _dilate(active, dilate_h) * (self.students[:, None] + 1) + self.live * 1e-6
            else:
                hub_up = _group_any(self.live, hub_idx, n)
                weight = self.live * (self.students[:, None] + 1e-6)
            weight = weight * hub_up[hub_idx]
            total_w = _group_sum(weight, hub_idx, n)[hub_idx]
            hub_hours = np.divide(weight, total_w, out=np.zeros_like(weight), where=total_w > 0).sum(axis=1)
            awake = hub_up.sum(axis=0).astype(float)
        self._hub_cache[cache_key] = (hub_hours, awake, hub_up)
        return self._hub_cache[cache_key]

    def run(self, sc: Scenario) -> ScenarioResult:
        w, pl, prices = self.w, self.model.platform, self.prices
        pres = w.presentations
        P, H = len(pres), self.H
        keys = hub_keys(pres, sc.topology, self.fleet)
        hubs, peak_hub = self.hub_peak(sc.topology, keys)
        prewarm_h = min(pl.prewarm_minutes, 60) / 60
        hub_cpu, hub_mem = pl.hub_request
        core = prices.core_pool.node
        per_core = pods_per_node((hub_cpu, hub_mem), core.capacity)
        hub_unit = core.price_per_hour * max(hub_cpu / core.capacity[0], hub_mem / core.capacity[1])
        hub_hours, awake, hub_up = self._hubs(sc.topology, keys, sc.hibernation)
        hub_hours = hub_hours.copy()
        if sc.hibernation and sc.prewarm and len(self.meet_pres):
            if keys is None:
                # Pre-warming cannot know who will come: every enrolled student's hub wakes before each class.
                hub_hours += self.students * np.bincount(self.meet_pres, minlength=P) * prewarm_h
            else:
                # Each class start wakes its hub early if it was asleep the hour before.
                hub_idx, _ = self._hub_index(keys)
                h = self.meet_event // 60
                asleep = (h == 0) | ~hub_up[hub_idx[self.meet_pres], np.maximum(h - 1, 0)]
                hub_hours += np.bincount(self.meet_pres[asleep], minlength=P) * prewarm_h
        core_nodes = np.maximum(np.ceil(awake / per_core), prices.core_pool.min_nodes)
        core_cost = float(core_nodes.sum() * core.price_per_hour)
        hub_cost = hub_hours * hub_unit
        fixed = sum(prices.shared_per_hour.values()) * H
        # User nodes to presentations by their requests, hour by hour.
        nodes = self.user_nodes_for(sc.prewarm)
        node_cost = nodes * prices.user_pool.node.price_per_hour
        user_p = (self.request_frac * node_cost).sum(axis=1)  # not BLAS: the same sums on every CPU
        unused_nodes = float(node_cost[self.request_total <= 0].sum())  # the pool's minimum with nobody on it
        pods_cost = float(np.minimum(self.request_total, nodes).sum() * prices.user_pool.node.price_per_hour)
        months = (self.live_hi - self.live_lo) / 24 / DAYS_PER_MONTH
        storage_p = self.students * np.array([p.storage_gib for p in pres]) * months * prices.storage_per_gib_month
        shared = fixed + core_cost - float(hub_cost.sum()) + unused_nodes
        alive = self.live.any(axis=1)
        basis = {"hub-hours": hub_hours, "students": self.students, "equal": np.ones(P)}[pl.sharing] * alive
        if basis.sum() <= 0:
            basis = alive.astype(float)
        shared_p = share_out(shared, basis)
        per_p = user_p + hub_cost + shared_p + storage_p
        total_compute = float(node_cost.sum()) + core_cost + fixed
        breakdown = Breakdown(
            user_pods=pods_cost, idle_capacity=float(node_cost.sum()) - pods_cost - unused_nodes,
            hub_overhead=float(hub_cost.sum()), shared_platform=shared, storage=float(storage_p.sum()),
        )
        waits = self._waits(sc, keys, hub_up if sc.hibernation else None)
        p50, p95 = np.percentile(waits, [50, 95]) * 60 if len(waits) else (0.0, 0.0)
        return ScenarioResult(
            topology=sc.topology, hibernation=sc.hibernation, prewarm=sc.prewarm, hubs=hubs,
            user_node_hours=float(nodes.sum()), core_node_hours=float(core_nodes.sum()),
            hub_hours=float(hub_hours.sum()),
            peak_users=int(self.total_conc.max()) if self.NB else 0, peak_hub_users=peak_hub,
            wait_p50_s=float(p50), wait_p95_s=float(p95),
            class_arrivals=len(waits), student_hours=self.student_hours, breakdown=breakdown,
            total=float(per_p.sum()), per_presentation={p.key: float(c) for p, c in zip(pres, per_p)},
            idle_overhead_share=(total_compute - pods_cost) / total_compute if total_compute else 0.0,
            hours_at_max_nodes=self.hours_short,
        )

    def _queue(self, topology: Topology, keys) -> SpawnQueue | None:
        """Class arrivals grouped by (hub, class start); None for a hub per student (nobody shares a queue)."""
        if keys is None:
            return None
        if topology not in self._queues:
            hub_idx, _ = self._hub_index(keys)
            pair = hub_idx[self.meet_pres] * (int(self.meet_event.max(initial=0)) + 1) + self.meet_event
            _, meet_group = np.unique(pair, return_inverse=True)
            self._queues[topology] = SpawnQueue(np.ravel(meet_group)[self.arr_meet])
        return self._queues[topology]

    def _waits(self, sc: Scenario, keys, hub_up) -> np.ndarray:
        """Minutes from each class arrival's request to its spawn beginning. Arrivals are in (class, time) order,
        and every delay below keeps that order within a queue (see SpawnQueue)."""
        pl = self.model.platform
        n = len(self.arr_time)
        if n == 0:
            return np.zeros(0)
        ready = self.arr_time if sc.prewarm else self.node_ready()
        queue = self._queue(sc.topology, keys)
        if sc.hibernation and not sc.prewarm:
            wake = pl.hub_wake_seconds / 60
            if keys is None:
                ready = np.maximum(ready, self.arr_time + wake)  # every student wakes their own hub
            else:
                hub_idx, _ = self._hub_index(keys)
                h = self.meet_event // 60
                asleep_meet = (h == 0) | ~hub_up[hub_idx[self.meet_pres], np.maximum(h - 1, 0)]
                # The first request of a (hub, class) wakes the hub; everyone in that queue waits for it.
                first = np.full(queue.groups, np.inf)
                np.minimum.at(first, queue.group, self.arr_time)
                asleep = asleep_meet[self.arr_meet]
                ready = np.where(asleep, np.maximum(ready, first[queue.group] + wake), ready)
        if queue is None:
            return ready - self.arr_time
        return (ready - self.arr_time) + queue.waits(ready, pl.concurrent_spawn_limit, pl.spawn_seconds / 60)


def _pod_minutes_per_hour(w: Workload, P: int, H: int) -> np.ndarray:
    """(presentations x hours) server-minutes: a server's first and last hour in part, the hours between whole
    (a difference array along the hours, so the cost does not grow with session length)."""
    width = H + 1
    s, e = w.start, w.end
    h0, h1 = np.floor(s / 60).astype(np.int64), np.floor(e / 60).astype(np.int64)
    row = w.pres.astype(np.int64) * width
    same = h0 == h1
    part = np.bincount(row + h0, weights=np.where(same, e - s, (h0 + 1) * 60 - s), minlength=P * width)
    part += np.bincount(row[~same] + h1[~same], weights=e[~same] - h1[~same] * 60, minlength=P * width)
    span = h1 > h0 + 1
    whole = (np.bincount(row[span] + h0[span] + 1, minlength=P * width)
             - np.bincount(row[span] + h1[span], minlength=P * width)).reshape(P, width)
    return (part.reshape(P, width) + 60.0 * np.cumsum(whole, axis=1))[:, :H]


def _group_sum(matrix: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    """Rows summed by group (presentations into hubs)."""
    order = np.argsort(idx, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(idx[order]) != 0])
    out = np.zeros((n, matrix.shape[1]), dtype=float)
    if len(order):
        out[idx[order][starts]] = np.add.reduceat(matrix[order].astype(float), starts, axis=0)
    return out


def _group_any(matrix: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    return _group_sum(matrix, idx, n) > 0


def scenarios_of(model: UsageModel, presentations: list[PresentationLoad]) -> list[Scenario]:
    out = []
    for topology in model.scenarios.topologies:
        if topology == "per-unit" and any(p.unit is None for p in presentations):
            continue  # a course with no unit has no per-unit hub; the planner refuses that topology too
        for hib in model.scenarios.hibernation:
            for pre in model.scenarios.prewarm:
                out.append(Scenario(topology, hib, pre))
    return out


def simulate(workload: Workload, model: UsageModel, prices: Prices, fleet: str, catalog_topology: str,
             seed: int, progress: Callable[[int], None] | None = None) -> Results:
    sim = Simulation(workload, model, prices, fleet)
    if progress:
        progress(1)  # the shared part: concurrency, nodes, usage per hour
    rows = []
    for sc in scenarios_of(model, workload.presentations):
        rows.append(sim.run(sc))
        if progress:
            progress(1)
    days_per_week = 7 * 24 * 60 // sim.R
    weeks = [int(sim.total_conc[i:i + days_per_week].max()) for i in range(0, sim.NB, days_per_week)]
    return Results(
        fleet=fleet, start=workload.window.start, end=workload.window.end, seed=seed, currency=prices.currency,
        catalog_topology=catalog_topology, sharing=model.platform.sharing,
        presentations=[{"key": p.key, "course": p.course, "unit": p.unit or "-", "students": p.students}
                       for p in workload.presentations],
        scenarios=rows, weekly_peak_users=weeks, sessions=len(workload.pres),
    )
