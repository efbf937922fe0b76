"""Checks that span fields: uniqueness, dates, derived names, referenced files.

pydantic checks each value on its own; these checks need the whole catalog. Each yields the data
path to blame and a message that says how to fix the problem.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from hubfleet.catalog.boundary import check_boundaries, outside_catalog, seed_source_problem
from hubfleet.catalog.course import Course
from hubfleet.catalog.model import Catalog
from hubfleet.catalog.naming import dns_label, hub_name
from hubfleet.catalog.overrides import Overrides

Finding = tuple[tuple, str]
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _label_problem(value: str, what: str) -> str | None:
    label = dns_label(value)
    if len(label) > 63:
        return f"{what} '{label}' is {len(label)} characters; DNS-1123 labels allow 63, shorten the id"
    if not DNS_LABEL.match(label):
        return (
            f"{what} '{label}' is not a valid DNS-1123 label; use letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return None


def _duplicates(items: list, key, path: tuple, field: str, what: str) -> Iterator[Finding]:
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        k = key(item)
        if k in seen:
            yield path + (i, field), f"duplicate {what} '{k}' (first at item {seen[k] + 1}); {what}s must be unique"
        else:
            seen[k] = i


def _files(root: Path, ov: Overrides, path: tuple) -> Iterator[Finding]:
    for i, step in enumerate(ov.seed or []):
        if problem := seed_source_problem(step.source):
            yield path + ("seed", i, "source"), problem
        elif not (root / step.source).is_dir():
            yield path + ("seed", i, "source"), f"seed source '{step.source}' is not a directory; create it or fix the path"
    for i, mount in enumerate(ov.storage.extra_mounts if ov.storage else []):
        if problem := _label_problem(mount.name, "mount name"):
            yield path + ("storage", "extra_mounts", i, "name"), problem
    if ov.storage:
        yield from _duplicates(ov.storage.extra_mounts, lambda m: m.name, path + ("storage", "extra_mounts"), "name", "mount name")
    for i, image in enumerate(ov.images or []):
        if problem := _label_problem(image.name, "image name"):
            yield path + ("images", i, "name"), problem
        rel = image.local_environment.requirements_file if image.local_environment else None
        where = path + ("images", i, "local_environment", "requirements_file")
        if rel is not None and (problem := outside_catalog(rel, "requirements file")):
            yield where, problem
        elif rel is not None and not (root / rel).is_file():
            yield where, f"requirements file '{rel}' does not exist; fix the path or add the file"
    if ov.images:
        yield from _duplicates(ov.images, lambda m: m.name, path + ("images",), "name", "image name")


def _course(catalog: Catalog, root: Path, ci: int, course: Course) -> Iterator[Finding]:
    cpath = ("courses", ci)
    fleet = catalog.fleet
    code_problem = _label_problem(course.code, "course code")
    if code_problem:
        yield cpath + ("code",), code_problem
    units = {u.id for u in fleet.units}
    if course.unit is not None and course.unit not in units:
        known = ", ".join(sorted(units)) or "none declared under fleet.units"
        yield cpath + ("unit",), f"unknown unit '{course.unit}'; known units: {known}"
    if fleet.topology == "per-unit" and course.unit is None:
        yield cpath + ("unit",), "the per-unit topology needs every course to name its unit; add 'unit:'"
    yield from _files(root, course, cpath)
    yield from _duplicates(course.presentations, lambda p: p.id, cpath + ("presentations",), "id", "presentation id")
    for pi, pres in enumerate(course.presentations):
        ppath = cpath + ("presentations", pi)
        if pres.end <= pres.start:
            yield ppath + ("end",), f"end {pres.end} is not after start {pres.start}; fix one of the dates"
        # A bad course code is reported once, on the code, not again on every presentation.
        if not code_problem and (problem := _label_problem(f"{course.code}-{pres.id}", "hub/storage name")):
            yield ppath + ("id",), problem
        yield from _files(root, pres, ppath)
        for si, src in enumerate(pres.enrolment):
            rel = getattr(src, "csv", None)
            if getattr(src, "ldap", None) is not None and catalog.fleet.directory is None:
                yield ppath + ("enrolment", si, "ldap"), "an ldap source needs fleet.directory (url, base_dn); add it"
            if rel is not None and (problem := outside_catalog(rel, "roster")):
                yield ppath + ("enrolment", si, "csv"), problem
            elif rel is not None and not (root / rel).is_file():
                yield ppath + ("enrolment", si, "csv"), f"roster '{rel}' does not exist; fix the path or add the file"


def _hub_collisions(catalog: Catalog) -> Iterator[Finding]:
    """Two presentations that would share a hub they are not meant to share: a naming collision."""
    fleet = catalog.fleet
    owners: dict[str, tuple[str, tuple]] = {}
    for ci, course in enumerate(catalog.courses):
        for pi, pres in enumerate(course.presentations):
            hub = hub_name(fleet.topology, fleet.name, course.code, pres.id, course.unit)
            # Under per-course the same course shares a hub by design; a different course must not.
            group = {
                "per-presentation": f"{course.code}/{pres.id}",
                "per-course": course.code,
                "per-unit": course.unit or "",
                "central": "",
            }[fleet.topology]
            if hub in owners and owners[hub][0] != group:
                yield ("courses", ci, "presentations", pi, "id"), (
                    f"hub name '{hub}' is already used by {owners[hub][0]}; rename one course or presentation id "
                    "before any student has files"
                )
            owners.setdefault(hub, (group, ("courses", ci)))


def check_semantics(catalog: Catalog, root: Path) -> list[Finding]:
    fleet = catalog.fleet
    found: list[Finding] = []
    if problem := _label_problem(fleet.name, "fleet name"):
        found.append((("fleet", "name"), problem))
    for i, unit in enumerate(fleet.units):
        if problem := _label_problem(unit.id, "unit id"):
            found.append((("fleet", "units", i, "id"), problem))
    found += _duplicates(fleet.units, lambda u: u.id, ("fleet", "units"), "id", "unit id")
    if fleet.branding.logo and (problem := outside_catalog(fleet.branding.logo, "logo")):
        found.append((("fleet", "branding", "logo"), problem))
    elif fleet.branding.logo and not (root / fleet.branding.logo).is_file():
        found.append((("fleet", "branding", "logo"), f"logo '{fleet.branding.logo}' does not exist; fix the path"))
    users_file = getattr(fleet.auth, "users_file", None)
    if users_file and (problem := outside_catalog(users_file, "users file")):
        found.append((("fleet", "auth", "users_file"), problem))
    elif users_file and not (root / users_file).is_file():
        found.append((("fleet", "auth", "users_file"), f"users file '{users_file}' does not exist; fix the path"))
    found += _duplicates(catalog.courses, lambda c: c.code.lower(), ("courses",), "code", "course code")
    for ci, course in enumerate(catalog.courses):
        found += _course(catalog, root, ci, course)
    found += _hub_collisions(catalog)
    found += check_boundaries(catalog)
    return found
