"""Compare topologies for one catalog: the numbers behind "hub per course or one central hub?"."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from hubfleet.catalog.model import Catalog, Topology
from hubfleet.plan.planner import plan

TOPOLOGIES: tuple[Topology, ...] = ("per-presentation", "per-course", "per-unit", "central")


@dataclass(frozen=True)
class TopologyFigures:
    topology: str
    hubs: int
    largest_hub: str
    largest_hub_students: int
    profiles_max: int
    profiles_mean: float
    shared_presentations: int  # presentations that share their hub with another presentation
    images_max: int  # distinct images in one hub, at most
    images_mean: float


def compare(catalog: Catalog, today: dt.date) -> list[TopologyFigures]:
    rows = []
    for topology in TOPOLOGIES:
        if topology == "per-unit" and any(c.unit is None for c in catalog.courses):
            continue  # the planner cannot group a course with no unit; validate says so for that topology
        fleet = catalog.fleet.model_copy(update={"topology": topology})
        spec = plan(catalog.model_copy(update={"fleet": fleet}), today)
        hubs = spec.hubs
        n = len(hubs) or 1
        largest = max(hubs, key=lambda h: h.expected_students, default=None)
        images = [len({p.image for p in h.profiles}) for h in hubs]
        rows.append(
            TopologyFigures(
                topology=topology,
                hubs=len(hubs),
                largest_hub=largest.name if largest else "-",
                largest_hub_students=largest.expected_students if largest else 0,
                profiles_max=max((len(h.profiles) for h in hubs), default=0),
                profiles_mean=round(sum(len(h.profiles) for h in hubs) / n, 1),
                shared_presentations=sum(len(h.presentations) for h in hubs if len(h.presentations) > 1),
                images_max=max(images, default=0),
                images_mean=round(sum(images) / n, 1),
            )
        )
    return rows
