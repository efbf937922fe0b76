"""plan(catalog, date) -> FleetSpec. Pure: no I/O, no clock; the date is an argument.

Settings resolve presentation > course > fleet defaults, field by field, so a presentation can
say "newer image" without restating resources or storage.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from hubfleet.catalog.course import Course, Presentation
from hubfleet.catalog.model import Catalog, Topology
from hubfleet.catalog.overrides import Culling, Extensions, Image, Resources, Storage
from hubfleet.catalog.naming import account_prefix, course_dir_name, dns_label, group_name, hub_name, presentation_key
from hubfleet.plan.spec import (
    BrandingSpec,
    EnvironmentSpec,
    CullingSpec,
    ExtensionSpec,
    FleetSpec,
    HubSpec,
    Mount,
    PresentationSpec,
    ProfileSpec,
    RoleGrant,
    SeedSpec,
    StorageSpec,
    timeline,
)

# What each role may do, always filtered to one presentation's student group.
# ref: https://jupyterhub.readthedocs.io/en/stable/rbac/scopes.html#horizontal-filtering
INSTRUCTOR_SCOPES = ("servers", "access:servers", "read:users", "read:users:activity", "list:users", "read:groups")
TUTOR_SCOPES = ("access:servers", "read:servers", "list:users", "read:users:name")


def _pick(*values):
    return next((v for v in values if v is not None), None)


def _resources(fleet_default: Resources, course: Course, pres: Presentation, image: Image) -> Resources:
    layers = [image.resources, pres.resources, course.resources, fleet_default]
    fields = {f: _pick(*(getattr(layer, f) if layer else None for layer in layers)) for f in Resources.model_fields}
    return Resources(**fields)


def _storage(fleet_default: Storage, course: Course, pres: Presentation) -> StorageSpec:
    layers = [pres.storage, course.storage, fleet_default]
    layout = _pick(*(s.layout if s else None for s in layers)) or "personal-subfolder"
    size = _pick(*(s.size if s else None for s in layers))
    mounts = _pick(*(s.extra_mounts or None if s else None for s in layers)) or []
    key = presentation_key(course.code, pres.id)
    home = "/home/{username}"
    course_dir = f"{home}/{course_dir_name(course.code, pres.id)}"
    volume = {"personal-subfolder": "home/{username}", "per-presentation": f"presentations/{key}/{{username}}"}.get(
        layout, ""
    )
    return StorageSpec(
        layout=layout,
        size=size,
        home=home,
        course_dir=course_dir,
        volume=volume,
        extra_mounts=tuple(
            Mount(name=m.name, path=_fill(m.path, course.code, pres.id, course_dir), read_only=m.read_only)
            for m in mounts
        ),
    )


def _fill(template: str, course: str, pres: str, course_dir: str) -> str:
    """Fill every placeholder but {username}, which only the backend knows at spawn time."""
    return (
        template.replace("{course_dir}", course_dir)
        .replace("{course}", course)
        .replace("{presentation}", pres)
    )


def _extensions(default: Extensions, own: Extensions | None) -> ExtensionSpec:
    """The fleet's default lab config with a course's (or presentation's) on top: disabled ids joined, settings
    merged per plugin with the course's values winning (so a course can turn the news back on)."""
    disabled = list(dict.fromkeys([*default.disabled, *(own.disabled if own else [])]))
    settings = {plugin: dict(values) for plugin, values in default.settings.items()}
    for plugin, values in (own.settings if own else {}).items():
        settings[plugin] = {**settings.get(plugin, {}), **values}
    return ExtensionSpec(disabled=tuple(disabled), settings=settings)


def _presentation(catalog: Catalog, course: Course, pres: Presentation, today: dt.date) -> PresentationSpec:
    fleet = catalog.fleet
    line = timeline(pres.start, pres.end, fleet.lifecycle)
    storage = _storage(fleet.defaults.storage, course, pres)
    team_i = list(course.team.instructors) + list(pres.team.instructors if pres.team else [])
    team_t = list(course.team.tutors) + list(pres.team.tutors if pres.team else [])
    ext = _extensions(fleet.defaults.extensions, pres.extensions or course.extensions)
    return PresentationSpec(
        key=presentation_key(course.code, pres.id),
        course=course.code,
        presentation=pres.id,
        title=pres.title or course.title,
        unit=course.unit,
        hub=hub_name(fleet.topology, fleet.name, course.code, pres.id, course.unit),
        start=pres.start,
        end=pres.end,
        phase=line.phase(today),
        archive_on=line.archive_on,
        purge_on=line.purge_on,
        expected_students=pres.expected_students,
        group=group_name(course.code, pres.id),
        tutor_group=group_name(course.code, pres.id, "tutor"),
        instructor_group=group_name(course.code, pres.id, "instructor"),
        instructors=tuple(dict.fromkeys(team_i)),
        tutors=tuple(dict.fromkeys(team_t)),
        enrolment=tuple(s.model_dump(exclude_defaults=False) for s in pres.enrolment),
        storage=storage,
        seed=tuple(
            SeedSpec(source=s.source, target=_fill(s.target, course.code, pres.id, "."), overwrite=s.overwrite)
            for s in (_pick(pres.seed, course.seed) or [])
        ),
        extensions=ext,
        container_user=_pick(pres.container_user, course.container_user, fleet.defaults.container_user),
    )


def _profiles(catalog: Catalog, course: Course, pres: Presentation, spec: PresentationSpec, shared: bool):
    images = _pick(pres.images, course.images) or [Image(name="default", image=catalog.fleet.defaults.image)]
    groups = (spec.group, spec.tutor_group, spec.instructor_group)
    for i, image in enumerate(images):
        res = _resources(catalog.fleet.defaults.resources, course, pres, image)
        label = image.display_name or f"{spec.title} ({image.name})"
        yield ProfileSpec(
            name=f"{dns_label(spec.key)}-{image.name}" if shared else image.name,
            display_name=f"{spec.key}: {label}" if shared else label,
            description=image.description,
            image=image.image,
            cpu=res.cpu,
            memory=res.memory,
            cpu_limit=res.cpu_limit,
            memory_limit=res.memory_limit,
            presentation=spec.key,
            groups=groups,
            default=image.default or (i == 0 and not any(im.default for im in images)),
            environment=_environment(catalog, image),
        )


def _environment(catalog: Catalog, image: Image) -> EnvironmentSpec | None:
    """Only the local backend builds environments; on Kubernetes the image is the environment, so a local spec
    there would only make plans noisy."""
    env = image.local_environment
    if env is None or catalog.fleet.backend != "local":
        return None
    return EnvironmentSpec(requirements=tuple(env.requirements), requirements_file=env.requirements_file,
                           debian=tuple(env.debian))


def environment_rows(catalog: Catalog, spec: FleetSpec) -> list[tuple[str, str, str]]:
    """(hub, profile, what it runs on) where a fleet's profiles do not run their images (the local backend runs
    servers on this machine's Python), so `plan` can say so plainly; none where images are what runs."""
    if catalog.fleet.backend != "local":
        return []
    return [(hub.name, p.name, p.environment_summary) for hub in spec.hubs for p in hub.profiles]


def _roles(spec: PresentationSpec) -> list[RoleGrant]:
    g = spec.group
    return [
        RoleGrant(
            name=f"{g}-instructors",
            description=f"Instructors of {spec.key}: start, stop and open their students' servers",
            scopes=tuple(f"{s}!group={g}" for s in INSTRUCTOR_SCOPES),
            groups=(spec.instructor_group,),
            users=spec.instructors,
        ),
        RoleGrant(
            name=f"{g}-tutors",
            description=f"Tutors of {spec.key}: open their students' servers",
            scopes=tuple(f"{s}!group={g}" for s in TUTOR_SCOPES),
            groups=(spec.tutor_group,),
            users=spec.tutors,
        ),
    ]


def _culling(settings: list[Culling]) -> CullingSpec:
    """One culler per hub: in a shared hub the most lenient presentation's settings win."""
    return CullingSpec(
        enabled=any(c.enabled for c in settings),
        idle_timeout=max(c.idle_timeout for c in settings),
        max_age=0 if any(c.max_age == 0 for c in settings) else max(c.max_age for c in settings),
        every=min(c.every for c in settings),
    )


def _hibernate_after(settings: list[int | str]) -> int | None:
    """Seconds of idleness before the hub hibernates, None for never; in a shared hub the most lenient wins."""
    if any(s == "never" for s in settings):
        return None
    return max(int(s) for s in settings)


def _labels(fleet: str, hub: str, pres: list[PresentationSpec]) -> dict[str, str]:
    labels = {"app.kubernetes.io/managed-by": "hubfleet", "hubfleet.io/fleet": fleet, "hubfleet.io/hub": hub}
    for key, values in (
        ("hubfleet.io/unit", {p.unit for p in pres if p.unit}),
        ("hubfleet.io/course", {dns_label(p.course) for p in pres}),
        ("hubfleet.io/presentation", {dns_label(p.key) for p in pres}),
    ):
        # A label holds one value; a shared hub is attributed at the level where it is single.
        if len(values) == 1:
            labels[key] = values.pop()
    return labels


def plan(catalog: Catalog, today: dt.date) -> FleetSpec:
    fleet = catalog.fleet
    shared = fleet.topology != "per-presentation"
    members: dict[str, list] = defaultdict(list)
    retired: list[PresentationSpec] = []
    for course in catalog.courses:
        for pres in course.presentations:
            spec = _presentation(catalog, course, pres, today)
            if spec.phase.hub_wanted:
                culling = pres.culling or course.culling or fleet.defaults.culling
                sleep = _pick(pres.hibernate_after, course.hibernate_after, fleet.defaults.hibernate_after)
                members[spec.hub].append((course, pres, spec, culling, sleep))
            elif spec.phase.rank >= spec.phase.archived.rank:
                retired.append(spec)
    hubs = []
    for name in sorted(members):
        entries = sorted(members[name], key=lambda e: (e[2].course, e[2].start, e[2].presentation))
        specs = [e[2] for e in entries]
        local = fleet.backend == "local"
        hubs.append(
            HubSpec(
                name=name,
                # Every hub on a host of its own, its students' servers on hosts below it (hosts.py): locally behind
                # the front door's port (8000 unless `up --port` says otherwise), on Kubernetes behind TLS.
                url=f"http://{name}.{fleet.domain}:8000/" if local else f"https://{name}.{fleet.domain}/",
                base_path="/",
                topology=fleet.topology,
                presentations=tuple(specs),
                profiles=tuple(p for c, pr, s, *_ in entries for p in _profiles(catalog, c, pr, s, shared)),
                admins=tuple(fleet.platform_team),
                roles=tuple(r for s in specs for r in _roles(s)),
                culling=_culling([e[3] for e in entries]),
                hibernate_after=_hibernate_after([e[4] for e in entries]),
                branding=BrandingSpec(**fleet.branding.model_dump()),
                auth=fleet.auth.model_dump(),
                labels=_labels(fleet.name, name, specs),
                expected_students=sum(s.expected_students for s in specs),
            )
        )
    retired.sort(key=lambda s: s.key)
    return FleetSpec(
        fleet=fleet.name,
        backend=fleet.backend,
        topology=fleet.topology,
        domain=fleet.domain,
        date=today,
        hubs=tuple(hubs),
        account_prefix=account_prefix(fleet.name, fleet.account_prefix),
        retired=tuple(retired),
        kubernetes=fleet.kubernetes.model_dump(mode="json", exclude_none=True),
    )


# -- comparing topologies: the numbers behind "hub per course or one central hub?" --------------------------
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
