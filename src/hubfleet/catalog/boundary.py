"""Checks that keep a course file inside its course: paths, reserved names, resources, shared accounts.

Course teams write course files; everything in one that reaches a path, a name, an account or generated config
is untrusted (DESIGN.md, "Trust boundaries"; issue 16, items 4, 5 and 10). These checks are pure: they see the
catalog as data. The one check that needs the file system (a symlink leading out of the catalog) lives in the
loader, which reads files anyway.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from posixpath import isabs, normpath
from typing import Any, NamedTuple, TypeVar

from hubfleet.catalog import naming
from hubfleet.catalog.model import Catalog
from hubfleet.catalog.overrides import Overrides, Resources
from hubfleet.catalog.naming import course_dir_name, hub_name
from hubfleet.catalog.quantities import cpu_cores, memory_bytes

Finding = tuple[tuple, str]
T = TypeVar("T")


def outside_catalog(rel: str, what: str) -> str | None:
    """Why a catalog path (already made relative to the catalog root by the loader) leaves the catalog, or None.

    Everything a catalog points at must live inside it: seed material is copied into students' folders and
    shipped in ConfigMaps, the logo is served to anyone, rosters are echoed in errors. A path to ``/etc`` or
    ``~/.ssh`` would hand the operator's files to students.
    """
    if isabs(rel) or rel.startswith("~"):
        return (f"{what} '{rel}' is an absolute path; write a path inside the catalog folder, relative to the "
                "file that names it")
    if normpath(rel).split("/")[0] == "..":
        return (f"{what} resolves to '{rel}' (relative to the catalog folder), which is outside it; keep it inside "
                "the catalog folder")
    return None


def seed_source_problem(rel: str) -> str | None:
    if problem := outside_catalog(rel, "seed source"):
        return problem
    if normpath(rel) == ".":
        return ("seed source is the catalog folder itself, which holds fleet.yaml and every roster; name a folder "
                "of course material inside it")
    return None


def _private(catalog: Catalog) -> list[tuple[str, str]]:
    """(root-relative path, what) of catalog files students must never get: rosters, passwords, course files."""
    out = [(src.csv, "the roster") for c in catalog.courses for p in c.presentations for src in p.enrolment
           if getattr(src, "csv", None)]
    if users_file := getattr(catalog.fleet.auth, "users_file", None):
        out.append((users_file, "the users file (passwords)"))
    return out + [("courses/", "the course files")]


def _seeds_with_private_files(catalog: Catalog) -> Iterator[Finding]:
    """Seed material is copied to every student: a source folder that holds a roster would hand out the names of
    every student of a course (or the embedded login's passwords)."""
    private = _private(catalog)
    for path, ov in _overrides(catalog):
        for i, step in enumerate(ov.seed or []):
            source = normpath(step.source)
            if seed_source_problem(step.source):
                continue  # reported by semantics
            for rel, what in private:
                if normpath(rel).startswith(source + "/") or (rel.endswith("/") and rel.rstrip("/") == source):
                    yield path + ("seed", i, "source"), (
                        f"seed source '{source}' holds {what} '{rel.rstrip('/')}', which would be copied to every "
                        "student; keep course material and rosters in separate folders"
                    )
                    break


# -- reserved hub names ---------------------------------------------------------------------------------------


def _reserved(catalog: Catalog) -> Iterator[Finding]:
    """A hub whose name is a host or namespace something else owns (the portal, Kubernetes' own namespaces)."""
    fleet = catalog.fleet
    units = {u.id: i for i, u in enumerate(fleet.units)}
    seen: set[str] = set()
    for ci, course in enumerate(catalog.courses):
        for pi, pres in enumerate(course.presentations):
            hub = hub_name(fleet.topology, fleet.name, course.code, pres.id, course.unit)
            if hub in seen or not naming.is_reserved_hub(hub):
                continue
            seen.add(hub)
            blame = {
                "per-presentation": ("courses", ci, "presentations", pi, "id"),
                "per-course": ("courses", ci, "code"),
                "per-unit": ("fleet", "units", units[course.unit], "id") if course.unit in units else ("courses", ci, "unit"),
                "central": ("fleet", "name"),
            }[fleet.topology]
            yield blame, f"hub name '{hub}' is {naming.reserved_why(hub)}; choose another id"


# -- extra mounts ---------------------------------------------------------------------------------------------


def _mounts(catalog: Catalog) -> Iterator[Finding]:
    """An extra mount in the home must not cover a course folder: that folder belongs to one presentation."""
    folders = {course_dir_name(c.code, p.id).lower() for c in catalog.courses for p in c.presentations}
    for ci, course in enumerate(catalog.courses):
        for path, ov, presentations in [(("courses", ci), course, course.presentations)] + [
            (("courses", ci, "presentations", pi), pres, [pres]) for pi, pres in enumerate(course.presentations)
        ]:
            for i, mount in enumerate(ov.storage.extra_mounts if ov.storage else []):
                if not mount.path.startswith("/home/{username}/"):
                    continue
                first = mount.path.split("/")[3]
                for pres in presentations:
                    folder = first.replace("{course}", course.code).replace("{presentation}", pres.id)
                    if folder.lower() in folders:
                        yield path + ("storage", "extra_mounts", i, "path"), (
                            f"'{mount.path}' covers the course folder '{folder}'; a mount may not cover a course "
                            "folder (use `{course_dir}/...` for a folder inside this course's)"
                        )
                        break


# -- resources and images -------------------------------------------------------------------------------------


def _overrides(catalog: Catalog) -> Iterator[tuple[tuple, Overrides]]:
    for ci, course in enumerate(catalog.courses):
        yield ("courses", ci), course
        for pi, pres in enumerate(course.presentations):
            yield ("courses", ci, "presentations", pi), pres


def _defaults(catalog: Catalog) -> Iterator[Finding]:
    for path, ov in _overrides(catalog):
        first = None
        for i, image in enumerate(ov.images or []):
            if image.default and first is None:
                first = image.name
            elif image.default:
                yield path + ("images", i, "default"), (
                    f"a second default image (the first is '{first}'); only one image can be preselected, so remove "
                    "one 'default: true'"
                )


def _layer_name(path: tuple) -> str:
    if path[0] == "fleet":
        return "fleet.defaults.resources"
    return f"the {'image' if 'images' in path else 'presentation' if 'presentations' in path else 'course'}'s resources"


_LIMITS = (("memory", "memory_limit", memory_bytes), ("cpu", "cpu_limit", cpu_cores))


def _resources(catalog: Catalog) -> Iterator[Finding]:
    """A limit below its guarantee, after presentation > course > fleet resolution (as the planner resolves it).

    The limit's own line is blamed; the message names where the guarantee comes from.
    """
    reported: set[tuple] = set()
    fleet_layer = (("fleet", "defaults", "resources"), catalog.fleet.defaults.resources)
    for ci, course in enumerate(catalog.courses):
        for pi, pres in enumerate(course.presentations):
            images_path = ("courses", ci, "presentations", pi) if pres.images is not None else ("courses", ci)
            for ii, image in enumerate(pres.images or course.images or [None]):
                layers: list[tuple[tuple, Resources | None]] = [
                    (images_path + ("images", ii, "resources"), image.resources if image else None),
                    (("courses", ci, "presentations", pi, "resources"), pres.resources),
                    (("courses", ci, "resources"), course.resources),
                    fleet_layer,
                ]
                yield from _limit_findings(layers, reported)


def _limit_findings(layers: list[tuple[tuple, Resources | None]], reported: set[tuple]) -> Iterator[Finding]:
    for guarantee, limit, amount in _LIMITS:
        g = next(((p + (guarantee,), getattr(r, guarantee)) for p, r in layers if r and getattr(r, guarantee)), None)
        lim = next(((p + (limit,), getattr(r, limit)) for p, r in layers if r and getattr(r, limit)), None)
        if g is None or lim is None or amount(lim[1]) >= amount(g[1]) or (lim[0], g[0]) in reported:
            continue
        reported.add((lim[0], g[0]))
        where = _layer_name(g[0])
        yield lim[0], (
            f"{limit} {lim[1]} is below the {guarantee} guarantee {g[1]} ({where}); a server could never get what "
            f"it is guaranteed, so raise the limit or lower {guarantee}"
        )


# -- one account and one storage path per person --------------------------------------------------------------


class Shared(NamedTuple):
    """Two different people that one Unix account or one storage folder would serve."""

    where: Any  # of the second one seen (the caller's own handle: a data path, a CSV row)
    first_where: Any
    username: str
    first: str
    what: str  # "Unix account" | "storage folder"
    name: str

    def message(self, first_at: str) -> str:
        return (f"'{self.username}' and '{self.first}' ({first_at}) would share the {self.what} '{self.name}' and so "
                "each other's files; one of the two logins must change (or set another fleet.account_prefix)")


def shared_names(entries: Iterable[tuple[str, T]], prefix: str) -> Iterator[Shared]:
    """Two different usernames that would get one Unix account or one storage name.

    ``storage_name`` and ``unix_account`` are injective except for the hashed tail of a cut long name, so only
    names that get cut can clash; they are checked anyway, because sharing an account means sharing files.
    """
    uncut = re.compile(rf"[a-z0-9]{{1,{min(naming.USERNAME_MAX, 32 - len(prefix))}}}")  # stored as is, uncut
    by_storage: dict[str, tuple[str, T]] = {}
    by_account: dict[str, tuple[str, T]] = {}
    seen: set[str] = set()
    for username, where in entries:
        if username in seen or uncut.fullmatch(username):
            continue
        seen.add(username)
        for table, name, what in (
            (by_storage, naming.storage_name(username), "storage folder"),
            (by_account, naming.unix_account(prefix, username), "Unix account"),
        ):
            first, first_where = table.setdefault(name, (username, where))
            if first != username:
                yield Shared(where, first_where, username, first, what, name)
                break


def check_boundaries(catalog: Catalog) -> list[Finding]:
    return [*_reserved(catalog), *_mounts(catalog), *_defaults(catalog), *_resources(catalog),
            *_seeds_with_private_files(catalog)]


__all__ = ["check_boundaries", "outside_catalog", "seed_source_problem", "shared_names"]
