"""What a simulation returns: one row per scenario with its cost split every way, as plain data (JSON, CSV).

``share_out`` is the one overhead-sharing rule, used by the simulator and by ``hubfleet cost`` on real
OpenCost figures, so a prediction and a bill are split the same way.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np


def share_out(amount: float, basis) -> np.ndarray:
    """Split ``amount`` in proportion to ``basis`` (non-negative); the parts add up to ``amount`` exactly
    (the last one takes the rounding), so totals are conserved."""
    basis = np.asarray(basis, dtype=float)
    if len(basis) == 0:
        return basis
    total = basis.sum()
    weights = basis / total if total > 0 else np.full(len(basis), 1 / len(basis))
    parts = amount * weights
    parts[-1] = amount - parts[:-1].sum()
    return parts


@dataclass
class Breakdown:
    user_pods: float  # user-node cost the servers' requests occupy
    idle_capacity: float  # the rest of the user nodes while servers ran
    hub_overhead: float  # hub pods (hub, proxy, culler)
    shared_platform: float  # control plane, ingress, monitoring, unused core nodes, empty user nodes
    storage: float

    @property
    def total(self) -> float:
        return self.user_pods + self.idle_capacity + self.hub_overhead + self.shared_platform + self.storage


@dataclass
class ScenarioResult:
    topology: str
    hibernation: bool
    prewarm: bool
    hubs: int
    user_node_hours: float
    core_node_hours: float
    hub_hours: float
    peak_users: int
    peak_hub_users: int
    wait_p50_s: float  # at class starts: from asking for a server to its spawn beginning
    wait_p95_s: float
    class_arrivals: int
    student_hours: float
    breakdown: Breakdown
    total: float
    per_presentation: dict[str, float]
    idle_overhead_share: float  # of compute cost, what no server's request used
    hours_at_max_nodes: int = 0

    @property
    def name(self) -> str:
        return (f"{self.topology}, hibernation {'on' if self.hibernation else 'off'}, "
                f"pre-warming {'on' if self.prewarm else 'off'}")

    @property
    def cost_per_student_hour(self) -> float:
        return self.total / self.student_hours if self.student_hours else 0.0


@dataclass
class Results:
    fleet: str
    start: dt.date
    end: dt.date
    seed: int
    currency: str
    catalog_topology: str
    sharing: str
    presentations: list[dict]
    scenarios: list[ScenarioResult]
    weekly_peak_users: list[int] = field(default_factory=list)
    sessions: int = 0  # servers started in the window

    def baseline(self) -> ScenarioResult:
        """The catalog as written: its topology, no hibernation, no pre-warming (what runs today)."""
        for s in self.scenarios:
            if s.topology == self.catalog_topology and not s.hibernation and not s.prewarm:
                return s
        return self.scenarios[0]

    def by(self, scenario: ScenarioResult, level: str) -> dict[str, float]:
        """Cost per course or unit (sums of presentations)."""
        out: dict[str, float] = defaultdict(float)
        for p in self.presentations:
            out[p[level]] += scenario.per_presentation[p["key"]]
        return dict(sorted(out.items()))

    def cheapest(self) -> ScenarioResult:
        """Lowest total; on a tie (to the cent) the shorter p95 wait, then the smaller largest hub (what one hub's
        outage takes down)."""
        return min(self.scenarios, key=lambda s: (round(s.total, 2), round(s.wait_p95_s, 1), s.peak_hub_users))

    def to_json(self) -> str:
        data = {
            "fleet": self.fleet, "from": self.start.isoformat(), "to": self.end.isoformat(), "seed": self.seed,
            "currency": self.currency, "catalog_topology": self.catalog_topology, "sharing": self.sharing,
            "sessions": self.sessions, "presentations": self.presentations,
            "weekly_peak_users": self.weekly_peak_users,
            "scenarios": [
                {**{k: v for k, v in asdict(s).items() if k != "breakdown"},
                 "breakdown": asdict(s.breakdown), "cost_per_student_hour": s.cost_per_student_hour,
                 "per_course": self.by(s, "course"), "per_unit": self.by(s, "unit")}
                for s in self.scenarios
            ],
        }
        return json.dumps(_round(data), indent=2, default=_rounded) + "\n"

    def scenarios_csv(self) -> str:
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["topology", "hibernation", "prewarm", "hubs", "user_node_hours", "core_node_hours", "hub_hours",
                    "peak_users", "peak_hub_users", "wait_p50_s", "wait_p95_s", "total", "user_pods",
                    "idle_capacity", "hub_overhead", "shared_platform", "storage", "cost_per_student_hour",
                    "idle_overhead_share"])
        for s in self.scenarios:
            b = s.breakdown
            w.writerow([s.topology, s.hibernation, s.prewarm, s.hubs, f"{s.user_node_hours:.1f}",
                        f"{s.core_node_hours:.1f}", f"{s.hub_hours:.1f}", s.peak_users, s.peak_hub_users,
                        f"{s.wait_p50_s:.1f}", f"{s.wait_p95_s:.1f}", f"{s.total:.2f}", f"{b.user_pods:.2f}",
                        f"{b.idle_capacity:.2f}", f"{b.hub_overhead:.2f}", f"{b.shared_platform:.2f}",
                        f"{b.storage:.2f}", f"{s.cost_per_student_hour:.4f}", f"{s.idle_overhead_share:.4f}"])
        return out.getvalue()

    def costs_csv(self) -> str:
        """Cost per presentation in every scenario: one row per presentation, one column per scenario."""
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["presentation", "course", "unit", "students"] + [s.name for s in self.scenarios])
        for p in self.presentations:
            w.writerow([p["key"], p["course"], p["unit"], p["students"]]
                       + [f"{s.per_presentation[p['key']]:.2f}" for s in self.scenarios])
        return out.getvalue()


def _round(value):
    """Four decimals: the figures mean nothing beyond, and the file stays the same across CPUs' float sums."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def _rounded(value):
    if isinstance(value, (dt.date,)):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value))
