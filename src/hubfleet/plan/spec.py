"""What the planner produces: a FleetSpec of HubSpecs, plain data every backend renders.

The specs are frozen pydantic models so they serialise to JSON (plan output, golden files, the
state a backend stores as "last applied") and compare by value (the diff).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from hubfleet.catalog.model import Lifecycle


class Phase(str, Enum):
    scheduled = "scheduled"
    provisioned = "provisioned"
    open = "open"
    read_only = "read-only"
    archived = "archived"
    purged = "purged"

    @property
    def rank(self) -> int:
        return list(Phase).index(self)

    @property
    def hub_wanted(self) -> bool:
        """A hub is up while any of its presentations is provisioned, open or read-only."""
        return self in (Phase.provisioned, Phase.open, Phase.read_only)

    @property
    def students_admitted(self) -> bool:
        return self in (Phase.open, Phase.read_only)


@dataclass(frozen=True)
class Timeline:
    """The first day of each phase; a presentation is in the last phase whose first day has come."""

    provision_on: dt.date
    start: dt.date
    read_only_on: dt.date  # the day after the last teaching day
    archive_on: dt.date
    purge_on: dt.date

    def phase(self, today: dt.date) -> Phase:
        if today >= self.purge_on:
            return Phase.purged
        if today >= self.archive_on:
            return Phase.archived
        if today >= self.read_only_on:
            return Phase.read_only
        if today >= self.start:
            return Phase.open
        if today >= self.provision_on:
            return Phase.provisioned
        return Phase.scheduled


def timeline(start: dt.date, end: dt.date, lifecycle: Lifecycle) -> Timeline:
    read_only_on = end + dt.timedelta(days=1)
    archive_on = read_only_on + dt.timedelta(days=lifecycle.read_only_days_after_end)
    return Timeline(
        provision_on=start - dt.timedelta(days=lifecycle.provision_days_before_start),
        start=start,
        read_only_on=read_only_on,
        archive_on=archive_on,
        purge_on=archive_on + dt.timedelta(days=lifecycle.retention_days),
    )


class Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Mount(Spec):
    """An extra directory in the server; ``path`` keeps ``{username}`` for the backend to fill in."""

    name: str
    path: str
    read_only: bool = False


class StorageSpec(Spec):
    """Where one presentation's student files live. ``volume`` is the frozen storage identity."""

    layout: str
    size: str | None
    home: str  # in the server, e.g. /home/{username}
    course_dir: str  # in the server, e.g. /home/{username}/TM351-2026J
    volume: str  # backing store key: home/{username} | presentations/TM351-2026J/{username} | ""
    extra_mounts: tuple[Mount, ...] = ()


class SeedSpec(Spec):
    source: str  # relative to the catalog root
    target: str  # relative to the course folder
    overwrite: str


class ExtensionSpec(Spec):
    disabled: tuple[str, ...] = ()
    settings: dict[str, dict] = Field(default_factory=dict)


class PresentationSpec(Spec):
    key: str  # TM351-2026J
    course: str
    presentation: str
    title: str
    unit: str | None
    hub: str
    start: dt.date
    end: dt.date
    phase: Phase
    archive_on: dt.date  # first day of the archived phase
    purge_on: dt.date  # first day of the purged phase
    expected_students: int
    group: str  # students' JupyterHub group
    tutor_group: str
    instructor_group: str
    instructors: tuple[str, ...]
    tutors: tuple[str, ...]
    enrolment: tuple[dict[str, Any], ...]
    storage: StorageSpec
    seed: tuple[SeedSpec, ...]
    extensions: ExtensionSpec
    container_user: str


class EnvironmentSpec(Spec):
    """The local backend's environment for a profile; the backend reads ``requirements_file`` (catalog-relative)."""

    requirements: tuple[str, ...] = ()
    requirements_file: str | None = None
    debian: tuple[str, ...] = ()


class ProfileSpec(Spec):
    """One entry in the hub's profile list, usable only by the listed groups."""

    name: str  # slug, unique in the hub
    display_name: str
    description: str | None
    image: str
    cpu: str | None
    memory: str | None
    cpu_limit: str | None
    memory_limit: str | None
    presentation: str  # the PresentationSpec key it belongs to
    groups: tuple[str, ...]
    default: bool = False
    environment: EnvironmentSpec | None = None  # local backend; None: the default environment

    @property
    def environment_summary(self) -> str:
        """What this profile runs on under the local backend, said plainly (plan, portal)."""
        env = self.environment
        if env is None:
            return f"the default environment (hubfleet's own Python and JupyterLab; the image {self.image} is not used)"
        parts = [f"{len(env.requirements)} Python package(s)"] if env.requirements else []
        parts += [f"the requirements in {env.requirements_file}"] if env.requirements_file else []
        parts += [f"Debian: {', '.join(env.debian)}"] if env.debian else []
        return "its own environment: " + (", ".join(parts) or "no extra packages")

    @model_serializer(mode="wrap")
    def _without_default_environment(self, handler: Any) -> dict[str, Any]:
        # Left out when unset, so hubs applied before environments existed do not all show an update.
        data = handler(self)
        if data.get("environment", 0) is None:
            del data["environment"]
        return data


class RoleGrant(Spec):
    """A JupyterHub RBAC role, with scopes filtered to one presentation's group."""

    name: str
    description: str
    scopes: tuple[str, ...]
    groups: tuple[str, ...] = ()
    users: tuple[str, ...] = ()


class CullingSpec(Spec):
    enabled: bool
    idle_timeout: int
    max_age: int
    every: int


class BrandingSpec(Spec):
    name: str
    logo: str | None
    primary_color: str
    login_message: str | None


class HubSpec(Spec):
    name: str
    url: str
    base_path: str  # the hub's base URL path: "/" (every hub has a host of its own)
    topology: str
    presentations: tuple[PresentationSpec, ...]
    profiles: tuple[ProfileSpec, ...]
    admins: tuple[str, ...]
    roles: tuple[RoleGrant, ...]
    culling: CullingSpec
    branding: BrandingSpec
    auth: dict[str, Any]
    labels: dict[str, str]
    expected_students: int
    # Seconds with no server, no pending spawn and no activity before the hub hibernates; None: never.
    hibernate_after: int | None = None

    @property
    def students_admitted(self) -> bool:
        return any(p.phase.students_admitted for p in self.presentations)


class FleetSpec(Spec):
    fleet: str
    backend: str
    topology: str
    domain: str
    date: dt.date
    hubs: tuple[HubSpec, ...]
    # Students' Unix account names are account_prefix + storage name (naming.unix_account): the local backend's
    # system accounts and, on Kubernetes, the notebook user inside the container.
    account_prefix: str = ""
    # Presentations whose hub is gone or going (archived, purged), for the lifecycle to act on.
    retired: tuple[PresentationSpec, ...] = ()
    # fleet.kubernetes from the catalog (personal store's NFS export, storage class); the local backend ignores it.
    kubernetes: dict = {}

    def hub(self, name: str) -> HubSpec:
        for hub in self.hubs:
            if hub.name == name:
                return hub
        raise KeyError(name)

    def all_presentations(self) -> list[PresentationSpec]:
        return [p for h in self.hubs for p in h.presentations] + list(self.retired)
