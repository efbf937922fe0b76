"""Load a catalog (one YAML file, or a folder of fleet.yaml + courses/*.yaml) into a typed Catalog.

Every problem is collected and raised at once as a CatalogError whose lines read
``FILE:LINE:COL: path.to.field: what is wrong and how to fix it``.
"""

from __future__ import annotations

import copy
import difflib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from hubfleet.catalog import naming
from hubfleet.catalog.boundary import outside_catalog, shared_names
from hubfleet.catalog.ical import IcalError, parse_ical
from hubfleet.catalog.errors import MAX_SHOWN, CatalogError, Location, Problem
from hubfleet.catalog.course import Course
from hubfleet.catalog.model import Catalog, Fleet
from hubfleet.catalog.roster import Member, Roster, RosterErrors, read_roster
from hubfleet.catalog.semantics import check_semantics
from hubfleet.catalog.source import DataPath, SourceMap, read_yaml

# Keys whose values are file paths, written relative to the file that names them.
_PATH_KEYS = {("csv",), ("source",), ("logo",), ("users_file",), ("ical",), ("requirements_file",)}
# Tags pydantic puts into error locations of tagged unions; they are not keys of the data.
_UNION_TAGS = {"csv", "users", "ldap", "idp_group", "oidc", "lti13", "embedded"}


@dataclass
class LoadedCatalog:
    """A validated catalog plus what the loader learnt on the way: positions, rosters, the root folder."""

    catalog: Catalog
    root: Path
    sources: SourceMap
    rosters: dict[str, list[Member]] = field(default_factory=dict)  # root-relative csv path -> members
    calendars: dict[str, str] = field(default_factory=dict)  # root-relative .ics path -> its text (timetables)

    def path(self, relative: str) -> Path:
        """The real path of a root-relative path from the catalog; ValueError if it leads outside the catalog."""
        return catalog_path(self.root, relative)


def catalog_path(root: Path, relative: str) -> Path:
    """The real path of a root-relative catalog path, refusing one that leaves the catalog folder, whether by an
    absolute path, by '..' or through a symlink. What a backend reads from the catalog goes through here, so it
    reads what validate checked (material shipped in ConfigMaps, seed sources, the logo)."""
    if problem := outside_catalog(relative, "path"):
        raise ValueError(problem)
    top = Path(root).resolve()
    real = (top / relative).resolve()
    if real != top and top not in real.parents:
        raise ValueError(f"'{relative}' leads outside the catalog folder through a symlink (to {real}); copy the "
                         "files into the catalog instead of linking to them")
    return real


def _paths(catalog: Catalog) -> list[tuple[tuple, str, str]]:
    """(data path, root-relative path, what) of every file or folder the catalog points at."""
    out: list[tuple[tuple, str, str]] = []
    fleet = catalog.fleet
    if fleet.branding.logo:
        out.append((("fleet", "branding", "logo"), fleet.branding.logo, "logo"))
    if users_file := getattr(fleet.auth, "users_file", None):
        out.append((("fleet", "auth", "users_file"), users_file, "users file"))
    for ci, course in enumerate(catalog.courses):
        levels = [(("courses", ci), course)]
        levels += [(("courses", ci, "presentations", pi), pres) for pi, pres in enumerate(course.presentations)]
        for path, level in levels:
            out += [(path + ("seed", i, "source"), s.source, "seed source") for i, s in enumerate(level.seed or [])]
            out += [(path + ("images", i, "local_environment", "requirements_file"), im.local_environment.requirements_file,
                     "requirements file") for i, im in enumerate(level.images or [])
                    if im.local_environment and im.local_environment.requirements_file]
            for si, src in enumerate(getattr(level, "enrolment", [])):
                if (rel := getattr(src, "csv", None)) is not None:
                    out.append((path + ("enrolment", si, "csv"), rel, "roster"))
    return out


def _links_out(catalog: Catalog, root: Path) -> list[tuple[tuple, str]]:
    """Paths that are inside the catalog by name but lead out of it through a symlink (I/O, so not in semantics)."""
    found = []
    for loc, rel, what in _paths(catalog):
        if outside_catalog(rel, what) is None:  # semantics reports those by name
            try:
                catalog_path(root, rel)
            except ValueError as exc:
                found.append((loc, f"{what} {exc}"))
    return found


def _usernames(catalog: Catalog, rosters: dict[str, tuple[str, Roster]]) -> Iterator[tuple[str, tuple]]:
    """Every username the catalog itself enrols, with where it is written: a data path, or ("csv", file, row, col)."""
    fleet = catalog.fleet
    for i, name in enumerate(fleet.platform_team):
        yield name, ("fleet", "platform_team", i)
    for ci, course in enumerate(catalog.courses):
        levels = [(("courses", ci), course)]
        levels += [(("courses", ci, "presentations", pi), pres) for pi, pres in enumerate(course.presentations)]
        for path, level in levels:
            for role in ("instructors", "tutors"):
                for i, name in enumerate(getattr(level.team, role) if level.team else []):
                    yield name, path + ("team", role, i)
            for si, src in enumerate(getattr(level, "enrolment", [])):
                for i, name in enumerate(getattr(src, "users", None) or []):
                    yield name, path + ("enrolment", si, "users", i)
    for display, roster in rosters.values():
        for m in roster.members:
            yield m.username, ("csv", display, roster.rows[m.username], roster.col)


def _place(where: tuple, data: Any, smap: SourceMap) -> tuple[Location, str]:
    if where[0] == "csv":
        return Location(where[1], where[2], where[3]), ""
    return smap.locate(where), readable_path(data, where)


def _readable(root: Path, rel: str) -> bool:
    """A roster validate may read: inside the catalog (a path out of it is reported, never read) and a file."""
    try:
        return catalog_path(root, rel).is_file()
    except ValueError:
        return False


def _catalog_files(target: Path) -> tuple[Path, list[Path]]:
    if target.is_dir():
        fleet = target / "fleet.yaml"
        courses = sorted((target / "courses").glob("*.yaml")) + sorted((target / "courses").glob("*.yml"))
        return fleet, courses
    return target, []


def _rebase_paths(data: Any, file_dir: Path, root: Path) -> None:
    """Rewrite relative file paths to be relative to the catalog root, so plans are machine-independent."""
    if isinstance(data, dict):
        for key, value in data.items():
            if (key,) in _PATH_KEYS and isinstance(value, str) and value and not os.path.isabs(value):
                data[key] = os.path.normpath(os.path.relpath(file_dir / value, root))
            elif key != "settings":  # JupyterLab settings are the course's data: a "source" there is not a path
                _rebase_paths(value, file_dir, root)
    elif isinstance(data, list):
        for item in data:
            _rebase_paths(item, file_dir, root)


def readable_path(data: Any, loc: DataPath) -> str:
    """``courses[TM351].presentations[2026J].end`` from a data path, naming list items by their id."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            label = str(part)
            if isinstance(node, list) and part < len(node) and isinstance(node[part], dict):
                item = node[part]
                label = str(item.get("id") or item.get("code") or item.get("name") or part)
            out += f"[{label}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out


def _data_loc(data: Any, loc: tuple) -> DataPath:
    """Drop pydantic's union tags and function names from an error location, keeping real data keys."""
    path: list[Any] = []
    node = data
    tagged = False
    for part in loc:
        # Each union level has one tag, and it can also be a real key after it (enrolment[0].users.users[1]).
        after_union = path[-1:] == ["auth"] or path[-2:-1] == ["enrolment"]
        if after_union and part in _UNION_TAGS and not tagged:
            tagged = True
            continue
        tagged = False
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and part not in node and not part[:1].isupper():
            # A missing or unknown key: keep it so the message can name it.
            path.append(part)
            node = None
    return tuple(path)


def _model_for(loc: DataPath) -> type[BaseModel] | None:
    """The model class at a data path, to list its known keys in an 'unknown key' message."""
    from hubfleet.catalog import model as m

    model: Any = m.Catalog
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return None
        ann = fields[part].annotation
        candidates = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type)]
        inner = [c for c in candidates if issubclass(c, BaseModel)]
        if not inner:
            for arg in getattr(ann, "__args__", ()):
                inner += [a for a in getattr(arg, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not inner:
            return None
        model = inner[0]
    return model


def _explain(err: dict, data: Any, loc: DataPath) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        model = _model_for(loc)
        known = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else (f"; known keys: {', '.join(known)}" if known else "")
        return f"unknown key '{loc[-1]}'{hint}"
    if kind == "missing":
        return f"missing required key '{loc[-1]}'; add it"
    if kind == "union_tag_invalid":  # loc already ends with the discriminator key, e.g. auth.type
        return f"unknown {loc[-2]} {loc[-1]} '{err['ctx']['tag']}'; must be one of {err['ctx']['expected_tags']}"
    if kind == "union_tag_not_found":
        return f"missing required key {err['ctx']['discriminator']}; add it"
    msg = err["msg"].removeprefix("Value error, ")
    if kind.startswith("date"):
        return f"{msg}; write a date as YYYY-MM-DD"
    if kind == "literal_error":
        return msg.replace("Input should be", "must be")
    return msg


def _without(data: dict, locs: list[DataPath]) -> dict:
    """A copy of the data with the given (unknown) keys removed, so a typo does not hide other checks."""
    data = copy.deepcopy(data)
    for loc in locs:
        node: Any = data
        for part in loc[:-1]:
            node = node[part] if isinstance(node, (dict, list)) else None
        if isinstance(node, dict):
            node.pop(loc[-1], None)
    return data


def _partial_semantics(data: dict, original: dict, root: Path, smap: SourceMap) -> list[Problem]:
    """After schema errors, still run the cross-field checks on what did validate.

    One run should list every problem (a bad memory quantity in one course must not hide an end
    date before the start in another); courses that failed the schema are left out.
    """
    try:
        fleet = Fleet.model_validate(data.get("fleet"))
    except ValidationError:
        return []
    kept: list[Course] = []
    index: list[int] = []  # partial course index -> index in data["courses"]
    for i, course in enumerate(data.get("courses") or []):
        try:
            kept.append(Course.model_validate(course))
        except ValidationError:
            continue
        index.append(i)
    partial = Catalog.model_construct(fleet=fleet, courses=kept)
    out = []
    for loc, message in check_semantics(partial, root):
        if loc[:1] == ("courses",) and len(loc) > 1:
            loc = ("courses", index[loc[1]], *loc[2:])
        out.append(Problem(smap.locate(loc), readable_path(original, loc), message))
    return out


def load_catalog(target: str | Path) -> LoadedCatalog:
    """Load and validate a catalog; raise CatalogError with every problem found.

    One pass: the reader keeps every position as it builds the data, so an error can always name its
    file, line and column.
    """
    return _load(Path(target))


def _load(target: Path) -> LoadedCatalog:
    if not target.exists():
        raise CatalogError([Problem(Location(str(target), 1, 1), "", "no such catalog file or folder")])
    fleet_file, course_files = _catalog_files(target)
    root = fleet_file.parent.resolve()
    smap = SourceMap()
    problems: list[Problem] = []
    disp = str(fleet_file)
    data, errs = read_yaml(fleet_file, disp, (), smap)
    problems += errs
    if data is None and not errs:
        data = {}
    if not errs and not isinstance(data, dict):
        problems.append(Problem(Location(disp, 1, 1), "", "the catalog must be a mapping with 'fleet' and 'courses'"))
    if problems:
        raise CatalogError(problems)
    _rebase_paths(data, fleet_file.parent.resolve(), root)
    courses = data.setdefault("courses", []) or []
    data["courses"] = courses
    if not isinstance(courses, list):
        raise CatalogError([Problem(smap.locate(("courses",)), "courses", "must be a list of courses")])
    for course_file in course_files:
        real = course_file.resolve()
        if real != root and root not in real.parents:
            problems.append(Problem(Location(str(course_file), 1, 1), "", f"the course file leads outside the catalog "
                                    f"folder through a symlink (to {real}); put the course file itself in courses/"))
            continue
        index = len(courses)
        cdata, errs = read_yaml(course_file, str(course_file), ("courses", index), smap)
        problems += errs
        if cdata is None and not errs:
            problems.append(Problem(Location(str(course_file), 1, 1), "", "the course file is empty"))
        if cdata is not None:
            _rebase_paths(cdata, course_file.parent.resolve(), root)
            courses.append(cdata)
    if not problems and target.is_dir() and not courses:
        # An apply of a catalog without courses stops every hub: a folder of course files gone missing must not
        # read as "stop everything".
        problems.append(Problem(Location(disp, 1, 1), "courses", (
            f"the catalog has no courses: {target / 'courses'} holds no *.yaml course file and fleet.yaml lists "
            "none, so an apply would stop every running hub; add the course files (one per course under courses/)")))
    if problems:
        raise CatalogError(problems)

    try:
        catalog = Catalog.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        for err in errors[:MAX_SHOWN]:
            loc = _data_loc(data, err["loc"])
            if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
                # Blame the discriminator key (auth.type), not the whole mapping.
                loc += (err["ctx"]["discriminator"].strip("'"),)
            where = smap.locate(loc, key=err["type"] == "extra_forbidden")
            problems.append(Problem(where, readable_path(data, loc), _explain(err, data, loc)))
        if len(errors) > MAX_SHOWN:  # enough to fix first; the cross-field checks would only add more
            raise CatalogError(problems, omitted=len(errors) - MAX_SHOWN) from None
        unknown = [_data_loc(data, e["loc"]) for e in errors if e["type"] == "extra_forbidden"]
        problems += _partial_semantics(_without(data, unknown), data, root, smap)
        raise CatalogError(problems) from None

    for loc, message in check_semantics(catalog, root) + _links_out(catalog, root):
        problems.append(Problem(smap.locate(loc), readable_path(data, loc), message))

    rosters: dict[str, list[Member]] = {}
    shown: dict[str, tuple[str, Roster]] = {}  # csv -> (its display path, roster) for the clash check
    omitted = 0
    for ci, course in enumerate(catalog.courses):
        for pi, pres in enumerate(course.presentations):
            for si, src in enumerate(pres.enrolment):
                rel = getattr(src, "csv", None)
                if rel is None or rel in rosters or not _readable(root, rel):
                    continue
                columns = src.columns.model_dump() if src.columns else None
                csv_display = os.path.normpath(os.path.join(fleet_file.parent, rel))
                try:
                    roster = read_roster(root / rel, src.preset, columns, src.role)
                    rosters[rel], shown[rel] = roster.members, (csv_display, roster)
                except RosterErrors as bad:
                    omitted += max(0, len(bad.errors) - MAX_SHOWN)
                    for e in bad.errors[:MAX_SHOWN]:
                        loc = ("courses", ci, "presentations", pi, "enrolment", si, "csv")
                        problems.append(Problem(Location(csv_display, e.row, e.col), readable_path(data, loc), e.detail))
    calendars = _calendars(catalog, root, data, fleet_file, problems)
    prefix = naming.account_prefix(catalog.fleet.name, catalog.fleet.account_prefix)
    for clash in shared_names(_usernames(catalog, shown), prefix):
        (loc, path), (first_loc, _) = _place(clash.where, data, smap), _place(clash.first_where, data, smap)
        problems.append(Problem(loc, path, clash.message(str(first_loc))))
    if problems:
        raise CatalogError(problems, omitted)
    return LoadedCatalog(catalog=catalog, root=root, sources=smap, rosters=rosters, calendars=calendars)


def _calendars(catalog: Catalog, root: Path, data: Any, fleet_file: Path, problems: list[Problem]) -> dict[str, str]:
    """Read and check each timetable's iCal file: the loader is the one place that reads files; the planner only
    parses the text (plan.timetable.parse_ical), so a bad line is reported here as ``file:line:1``."""
    out: dict[str, str] = {}
    for ci, course in enumerate(catalog.courses):
        for pi, pres in enumerate(course.presentations):
            rel = pres.timetable.ical if pres.timetable else None
            if rel is None or rel in out:
                continue
            loc = ("courses", ci, "presentations", pi, "timetable", "ical")
            display = os.path.normpath(os.path.join(fleet_file.parent, rel))
            try:
                text = catalog_path(root, rel).read_text(encoding="utf-8")
                parse_ical(text)
            except IcalError as exc:
                problems.append(Problem(Location(display, exc.line, 1), readable_path(data, loc), str(exc).split(": ", 1)[1]))
                continue
            except (OSError, ValueError) as exc:
                problems.append(Problem(Location(display, 1, 1), readable_path(data, loc),
                                        f"cannot read the iCal file ({exc}); fix the path or remove `ical:`"))
                continue
            out[rel] = text
    return out
