"""The simulator's inputs besides the catalog: the usage model (how students use notebooks, how the platform
behaves) and the prices (what nodes, storage and the shared platform cost).

Both are strict pydantic models, like the catalog: a typo in a model file is an error, not a silently ignored
setting. The defaults here are the documented defaults; ``defaults/model.yaml`` and ``defaults/prices.yaml``
restate them with the reasoning behind each figure (a test keeps file and defaults equal).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hubfleet.catalog.quantities import Cpu, Memory, cpu_cores, memory_bytes

Topology = Literal["per-presentation", "per-course", "per-unit", "central", "per-student"]
TOPOLOGIES: tuple[Topology, ...] = ("per-presentation", "per-course", "per-unit", "central", "per-student")
SharingRule = Literal["hub-hours", "students", "equal"]
GIB = 2**30


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WeeklyProfile(Strict):
    """Relative weight of starting a self-study session in each part of the week (distance learners study in
    the evenings and at weekends). Hours are local time; the bands do not overlap."""

    weekday_daytime: float = Field(1.0, ge=0, description="Mon-Fri 09:00-18:00.")
    weekday_evening: float = Field(4.0, ge=0, description="Mon-Fri 18:00-23:00.")
    weekend_daytime: float = Field(3.0, ge=0, description="Sat-Sun 09:00-22:00.")
    night: float = Field(0.2, ge=0, description="Every other hour.")

    def hour_weights(self) -> list[list[float]]:
        """7 x 24 weights, Monday first."""
        rows = []
        for weekday in range(7):
            row = []
            for hour in range(24):
                if weekday < 5 and 9 <= hour < 18:
                    row.append(self.weekday_daytime)
                elif weekday < 5 and 18 <= hour < 23:
                    row.append(self.weekday_evening)
                elif weekday >= 5 and 9 <= hour < 22:
                    row.append(self.weekend_daytime)
                else:
                    row.append(self.night)
            rows.append(row)
        return rows

    @model_validator(mode="after")
    def _some_weight(self) -> "WeeklyProfile":
        if not any((self.weekday_daytime, self.weekday_evening, self.weekend_daytime, self.night)):
            raise ValueError("every weight is 0; give at least one band a positive weight")
        return self


class SessionLength(Strict):
    """Length of a self-study session (active use), log-normal, clipped."""

    median_minutes: float = Field(60, gt=0, description="Median active minutes.")
    sigma: float = Field(0.6, ge=0, description="Log-normal shape; 0 makes every session the median.")
    min_minutes: float = Field(10, gt=0)
    max_minutes: float = Field(240, gt=0)


class Slot(Strict):
    weekday: int = Field(ge=0, le=6, description="0 = Monday.")
    start: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="HH:MM local time.")

    @property
    def minute_of_day(self) -> int:
        h, m = self.start.split(":")
        return int(h) * 60 + int(m)


class Timetable(Strict):
    """Timetabled sessions (tutorials, labs) for presentations whose catalog entry has no timetable: one weekly
    session per presentation in one of `slots` (picked with the seed), every teaching week."""

    enabled: bool = True
    slots: list[Slot] = Field(
        default_factory=lambda: [Slot(weekday=1, start="19:00"), Slot(weekday=2, start="19:00"),
                                 Slot(weekday=3, start="19:30"), Slot(weekday=5, start="10:00")]
    )
    minutes: float = Field(90, gt=0, description="Length of a session.")
    attendance: float = Field(0.3, ge=0, le=1, description="Share of enrolled students who attend, each week.")
    arrival_spread_minutes: float = Field(
        10, ge=0, description="Students start their servers within this many minutes before the session starts."
    )


class Usage(Strict):
    """How students use their servers (defaults from distance-learning practice: ~4 h a week over 30 weeks)."""

    study_weeks: float = Field(30, gt=0, description="Weeks of study in a full-length presentation.")
    hours_per_week: float = Field(4, ge=0, description="Self-study hours per enrolled student per study week.")
    session: SessionLength = Field(default_factory=SessionLength)
    weekly_profile: WeeklyProfile = Field(default_factory=WeeklyProfile)
    timetable: Timetable = Field(default_factory=Timetable)


class Platform(Strict):
    """How the platform behaves: hub overhead, spawning, autoscaling, hibernation, pre-warming, cost sharing."""

    hub_cpu: Cpu = Field("0.1", description="CPU request of one hub's own pods (hub + proxy + idle culler).")
    hub_memory: Memory = Field(
        "384Mi",
        description="Memory request of one hub's pods. The local fleet benchmark measured 126 MiB (hub + culler) "
        "+ 56 MiB (proxy) resident per idle hub; z2jh 4.4.0 sets no requests; this is that with 2x headroom.",
    )
    spawn_seconds: float = Field(20, ge=0, description="One server's spawn, image cached, on a node with room.")
    concurrent_spawn_limit: int = Field(64, ge=1, description="Per hub; z2jh 4.4.0 hub.concurrentSpawnLimit.")
    autoscaler_delay_seconds: float = Field(240, ge=0, description="From a pending pod to a ready new node.")
    hub_wake_seconds: float = Field(45, ge=0, description="A hibernated hub's start on the first request.")
    hibernate_after_minutes: float = Field(60, ge=0, description="A hub with no running server sleeps after this.")
    prewarm_minutes: float = Field(30, ge=0, description="Pre-warming scales nodes and wakes hubs this early.")
    sharing: SharingRule = Field(
        "hub-hours",
        description="How the shared platform overhead is split: `hub-hours` (by each presentation's share of hub "
        "uptime), `students` (by enrolled students), `equal` (the same for every presentation).",
    )
    resolution_minutes: int = Field(5, ge=1, le=60, description="Concurrency is sampled every this many minutes.")

    @model_validator(mode="after")
    def _divides_an_hour(self) -> "Platform":
        if 60 % self.resolution_minutes:
            raise ValueError(f"resolution_minutes {self.resolution_minutes} does not divide an hour; use 1, 5, 10...")
        return self

    @property
    def hub_request(self) -> tuple[float, float]:
        return cpu_cores(self.hub_cpu), memory_bytes(self.hub_memory) / GIB


class Scenarios(Strict):
    topologies: list[Topology] = Field(default_factory=lambda: list(TOPOLOGIES))
    hibernation: list[bool] = Field(default_factory=lambda: [False, True])
    prewarm: list[bool] = Field(default_factory=lambda: [False, True])


class UsageModel(Strict):
    """A model file: `usage`, `platform`, `scenarios`."""

    usage: Usage = Field(default_factory=Usage)
    platform: Platform = Field(default_factory=Platform)
    scenarios: Scenarios = Field(default_factory=Scenarios)


class NodeType(Strict):
    name: str
    cpu: float = Field(gt=0, description="Allocatable cores (after the kubelet's and daemonsets' reservation).")
    memory: Memory = Field(description="Allocatable memory.")
    price_per_hour: float = Field(ge=0)

    @property
    def capacity(self) -> tuple[float, float]:
        return self.cpu, memory_bytes(self.memory) / GIB


class Pool(Strict):
    node: NodeType
    min_nodes: int = Field(0, ge=0)
    max_nodes: int = Field(10_000, ge=1)

    @model_validator(mode="after")
    def _min_le_max(self) -> "Pool":
        if self.min_nodes > self.max_nodes:
            raise ValueError(f"min_nodes {self.min_nodes} is above max_nodes {self.max_nodes}")
        return self


def _user_pool() -> Pool:
    return Pool(node=NodeType(name="n2-highmem-4", cpu=3.92, memory="27Gi", price_per_hour=0.262), max_nodes=2000)


def _core_pool() -> Pool:
    return Pool(node=NodeType(name="n2-standard-2", cpu=1.93, memory="6Gi", price_per_hour=0.097), min_nodes=1)


class Prices(Strict):
    """A prices file: node pools and prices (cloud list or on-prem amortised), storage, shared platform items."""

    currency: str = "USD"
    user_pool: Pool = Field(default_factory=_user_pool, description="Autoscaled nodes for students' servers.")
    core_pool: Pool = Field(default_factory=_core_pool, description="Nodes for hubs and the shared platform.")
    storage_per_gib_month: float = Field(0.10, ge=0, description="Student storage, per GiB-month provisioned.")
    shared_per_hour: dict[str, float] = Field(
        default_factory=lambda: {"control-plane": 0.10, "ingress-load-balancer": 0.025, "monitoring": 0.02},
        description="Platform items that run whatever the load (per hour).",
    )
