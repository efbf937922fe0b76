"""diff(FleetSpec, FleetState) -> Plan. Pure: the plan is data, applying it is a backend's job.

The observed state records, per hub, the HubSpec last applied (as JSON) and whether it runs, and per
presentation what storage it holds and whether it has a verified archive. Comparing applied specs
field by field gives the human diff; comparing storage identities protects student files.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hubfleet.plan.spec import FleetSpec, Phase


class ObservedPresentation(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    layout: str  # storage layout its files were created under
    volume: str  # storage identity, e.g. presentations/TM351-2026J/{username}
    has_files: bool = True
    archived: bool = False  # every student has a verified archive
    purged: bool = False


class ObservedHub(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    running: bool
    applied: dict[str, Any]  # HubSpec.model_dump(mode="json") as last applied
    # Stopped on purpose after its idle time (plan.hibernation): not down, so nothing plans a start; the first
    # request wakes it. A spec change still plans an update, which wakes it to apply.
    hibernated: bool = False


class FleetState(BaseModel):
    model_config = ConfigDict(frozen=True)

    hubs: dict[str, ObservedHub] = Field(default_factory=dict)
    presentations: dict[str, ObservedPresentation] = Field(default_factory=dict)

    @classmethod
    def of(cls, spec: FleetSpec) -> "FleetState":
        """The state a backend reaches after applying ``spec`` completely (used by idempotency tests)."""
        return cls(
            hubs={h.name: ObservedHub(name=h.name, running=True, applied=h.model_dump(mode="json")) for h in spec.hubs},
            presentations={
                p.key: ObservedPresentation(
                    key=p.key,
                    layout=p.storage.layout,
                    volume=p.storage.volume,
                    has_files=p.phase.rank < Phase.archived.rank and p.storage.layout != "ephemeral",
                    archived=p.phase.rank >= Phase.archived.rank,
                    purged=p.phase == Phase.purged,
                )
                for p in spec.all_presentations()
            },
        )


class Kind(str, Enum):
    create = "create"
    update = "update"
    start = "start"
    archive = "archive"
    stop = "stop"
    delete = "delete"
    purge = "purge"


# Order of execution: bring wanted hubs up first, retire data last, never delete before archiving.
_ORDER = list(Kind)


class Change(BaseModel):
    model_config = ConfigDict(frozen=True)

    field: str
    old: Any = None
    new: Any = None


class Action(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Kind
    hub: str
    presentation: str | None = None
    changes: tuple[Change, ...] = ()
    reason: str = ""


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True)

    actions: tuple[Action, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.actions)

    def of_kind(self, kind: Kind) -> list[Action]:
        return [a for a in self.actions if a.kind == kind]


class OrphanError(Exception):
    """A change that would move existing student files; refused without an explicit migration."""

    def __init__(self, reasons: list[str]):
        self.reasons = reasons
        super().__init__("\n".join(reasons))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted paths to leaves; list items are named by their ``name``/``key`` so diffs read well."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, list) and value and all(isinstance(v, dict) and ("key" in v or "name" in v) for v in value):
        for v in value:
            out.update(_flatten(v, f"{prefix}[{v.get('key') or v.get('name')}]"))
    else:
        out[prefix] = value
    return out


def field_changes(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    a, b = _flatten(old), _flatten(new)
    return [Change(field=k, old=a.get(k), new=b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def _guard_storage(spec: FleetSpec, state: FleetState) -> None:
    reasons = []
    planned = {p.key: p for p in spec.all_presentations()}
    for key, seen in state.presentations.items():
        if not seen.has_files or seen.archived:
            continue
        now = planned.get(key)
        if now is None:
            reasons.append(
                f"{key}: holds student files ({seen.layout}, {seen.volume}) but is no longer in the catalog; "
                "renaming a course code or presentation id would orphan them. Put it back, or let it reach "
                "the archived phase first."
            )
        elif (now.storage.layout, now.storage.volume) != (seen.layout, seen.volume):
            reasons.append(
                f"{key}: changing storage from {seen.layout} ({seen.volume}) to {now.storage.layout} "
                f"({now.storage.volume}) would leave students' files behind; keep the layout for this "
                "presentation and change it for the next one."
            )
    if reasons:
        raise OrphanError(reasons)


def diff(spec: FleetSpec, state: FleetState) -> Plan:
    _guard_storage(spec, state)
    actions: list[Action] = []
    wanted = {h.name: h for h in spec.hubs}
    for name, hub in wanted.items():
        seen = state.hubs.get(name)
        new = hub.model_dump(mode="json")
        if seen is None:
            actions.append(Action(kind=Kind.create, hub=name, reason="wanted by the catalog"))
        elif seen.applied != new:
            actions.append(Action(kind=Kind.update, hub=name, changes=tuple(field_changes(seen.applied, new))))
        elif not seen.running and not seen.hibernated:
            actions.append(Action(kind=Kind.start, hub=name, reason="configured but not running"))
    for p in spec.retired:
        seen_p = state.presentations.get(p.key)
        if seen_p is None:
            continue
        if seen_p.has_files and not seen_p.archived:
            actions.append(Action(kind=Kind.archive, hub=p.hub, presentation=p.key, reason=f"phase {p.phase.value}"))
        if p.phase == Phase.purged and seen_p.archived and not seen_p.purged:
            actions.append(Action(kind=Kind.purge, hub=p.hub, presentation=p.key, reason="retention period over"))
    for name, seen in state.hubs.items():
        if name not in wanted:
            if seen.running:
                actions.append(Action(kind=Kind.stop, hub=name, reason="no presentation needs it"))
            actions.append(Action(kind=Kind.delete, hub=name, reason="no presentation needs it"))
    actions.sort(key=lambda a: (_ORDER.index(a.kind), a.hub, a.presentation or ""))
    return Plan(actions=tuple(actions))


def plan_json(spec: FleetSpec, plan: Plan) -> str:
    """The ``--json`` form: ``{hubs: [...], actions: [...]}``."""
    hubs = [
        {
            "name": h.name,
            "url": h.url,
            "presentations": [{"id": p.key, "phase": p.phase.value} for p in h.presentations],
            "profiles": [{"name": pr.name, "image": pr.image, "groups": list(pr.groups)} for pr in h.profiles],
        }
        for h in spec.hubs
    ]
    return json.dumps({"date": spec.date.isoformat(), "hubs": hubs, "actions": [a.model_dump(mode="json") for a in plan.actions]}, indent=2)
