"""A request form turned into the course file it asks for, checked by the catalog's own loader.

The request is never validated by a second set of rules: the form becomes the course file (and roster) it would
commit, that file is put into a scratch copy of the catalog, and ``load_catalog`` runs on the copy exactly as
``hubfleet validate`` would on the committed catalog. So an error on the form reads as validate's does
(``courses/TM351.yaml:14:9: courses[TM351].presentations[2026K].end: ...``) and is shown beside the field it is
about. The same plan the fleet would make from that catalog is the request's preview, and the planner's storage
guard (``OrphanError``) refuses a request that would orphan student files, with the planner's own words.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from hubfleet.catalog import load_catalog
from hubfleet.catalog.errors import CatalogError, Problem
from hubfleet.catalog.model import Catalog
from hubfleet.catalog.naming import hub_name, presentation_key
from hubfleet.catalog.source import SourceMap, read_yaml
from hubfleet.plan import FleetState, OrphanError, diff, plan
from hubfleet.plan.diff import Action
from hubfleet.plan.spec import timeline
from hubfleet.simulate import Window, simulate_catalog
from hubfleet.simulate.model import Prices, Scenarios, UsageModel

__all__ = ["FORM_FIELDS", "Checked", "check_request", "course_file_of", "existing_presentation"]

# The form's fields, in page order; every one is a plain string as a browser posts it.
FORM_FIELDS = ("course", "title", "unit", "presentation", "start", "end", "expected_students", "image", "memory",
               "cpu", "storage_layout", "extensions_disabled", "enrolment", "ldap_group", "idp_group",
               "instructors", "tutors", "timetable")
_LIST_SPLIT = re.compile(r"[\s,]+")

ObserveFn = Callable[[], FleetState]


@dataclass
class Checked:
    """The outcome of checking a request against the catalog as it is now."""

    files: dict[str, str]  # catalog-relative path -> content the approval would commit
    course_file: str  # the course file's catalog-relative path
    field_errors: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # not about one field (or refused by the planner)
    hubs: list[dict[str, Any]] = field(default_factory=list)  # the preview: the hub(s) this presentation lands in
    actions: list[Action] = field(default_factory=list)  # what the next reconcile would do for them
    cost: dict[str, Any] | None = None  # the simulator's prediction for this presentation's hub life

    @property
    def ok(self) -> bool:
        return not self.field_errors and not self.errors


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.default_flow_style = False
    yaml.width = 120
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)  # the catalog's own style (examples/, docs/catalog.md)
    return yaml


def _course_files(root: Path) -> dict[str, str]:
    """{course code: catalog-relative course file} from courses/*.yaml (codes read with the catalog's own reader)."""
    out = {}
    for path in sorted((root / "courses").glob("*.y*ml")):
        data, errs = read_yaml(path, str(path), (), SourceMap())
        if not errs and isinstance(data, dict) and isinstance(data.get("code"), str):
            out[data["code"]] = str(path.relative_to(root))
    return out


def course_file_of(root: Path, code: str) -> tuple[str, dict[str, Any] | None]:
    """(catalog-relative path, existing data or None) of the course file for ``code``."""
    files = _course_files(root)
    if code in files:
        # Round-trip load (the file already passed the catalog's safe reader in _course_files): the commit then
        # changes only what the request changes and keeps the course team's comments and layout.
        return files[code], _yaml().load((root / files[code]).read_text(encoding="utf-8"))
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", code) or "course"
    return f"courses/{safe}.yaml", None


def existing_presentation(root: Path, code: str, pres_id: str) -> dict[str, str]:
    """The form's fields for a presentation already in the catalog (the start of a change request)."""
    _, course = course_file_of(root, code)
    if not course:
        return {}
    pres = next((p for p in course.get("presentations") or [] if str(p.get("id")) == pres_id), None)
    if pres is None:
        return {}
    images = pres.get("images") or course.get("images") or []
    res = pres.get("resources") or {}
    team = pres.get("team") or course.get("team") or {}
    enrol = (pres.get("enrolment") or [{}])[0]
    kind = "roster" if "csv" in enrol else "ldap" if "ldap" in enrol else "idp" if "idp_group" in enrol else "none"
    return {
        "course": code, "title": str(course.get("title", "")), "unit": str(course.get("unit") or ""),
        "presentation": pres_id, "start": str(pres.get("start", "")), "end": str(pres.get("end", "")),
        "expected_students": str(pres.get("expected_students", "")),
        "image": str(images[0].get("image", "")) if images else "", "memory": str(res.get("memory") or ""),
        "cpu": str(res.get("cpu") or ""), "storage_layout": str((pres.get("storage") or {}).get("layout") or ""),
        "extensions_disabled": "\n".join((pres.get("extensions") or {}).get("disabled") or []),
        "enrolment": kind, "ldap_group": str((enrol.get("ldap") or {}).get("group") or ""),
        "idp_group": str(enrol.get("idp_group") or ""), "instructors": " ".join(team.get("instructors") or []),
        "tutors": " ".join(team.get("tutors") or []), "timetable": timetable_lines(pres.get("timetable") or {}),
    }


def _value(text: str) -> Any:
    """A form string as the YAML value a person would write: a date, an integer, or the text itself (so a bad value
    reaches the schema and gets its message)."""
    text = text.strip()
    try:
        return dt.date.fromisoformat(text) if re.fullmatch(r"\d{4}-\d\d-\d\d", text) else int(text)
    except ValueError:
        return text


_SESSION = re.compile(r"(?P<when>\S+)\s+(?P<start>\S+)\s+(?P<duration>\S+)(?:\s+(?P<attendance>\d+(?:\.\d+)?)%)?"
                      r"(?:\s+(?P<name>.+))?")


def timetable_of(text: str) -> dict[str, Any]:
    """The form's timetable, one session a line (``tue 19:00 90m 30%`` weekly, ``2027-01-12 18:00 2h 50% TMA02
    surgery`` dated), as the catalog's ``timetable:``. Values go to the schema as written, so a bad one gets
    validate's own message beside the field; a line that is not even that shape becomes a value the schema refuses."""
    weekly: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for line in (raw.strip() for raw in text.splitlines()):
        if not line:
            continue
        found = _SESSION.fullmatch(line)
        if found is None:
            weekly.append({"weekday": line})  # refused by the schema, with the line in its message
            continue
        session: dict[str, Any] = {"start": found["start"], "duration": found["duration"]}
        if found["attendance"]:
            session["attendance"] = float(found["attendance"]) / 100
        if re.fullmatch(r"\d{4}-\d\d-\d\d", found["when"]):
            events.append({"name": found["name"] or "session", "date": _value(found["when"]), **session})
        else:
            weekly.append({"weekday": found["when"].lower(), **session})
    return {k: v for k, v in (("weekly", weekly), ("events", events)) if v}


def timetable_lines(timetable: dict[str, Any]) -> str:
    """A catalog ``timetable:`` as the form's lines (the inverse of ``timetable_of``; an iCal file stays in the
    course file and is not shown)."""
    def tail(s: dict[str, Any]) -> str:
        share = f" {float(s['attendance']) * 100:g}%" if "attendance" in s else ""
        return f"{s.get('start', '')} {s.get('duration', '')}{share}"

    lines = [f"{s.get('weekday', '')} {tail(s)}" for s in timetable.get("weekly") or []]
    lines += [f"{e.get('date', '')} {tail(e)} {e.get('name', '')}".rstrip() for e in timetable.get("events") or []]
    return "\n".join(lines)


def roster_path(course: str, pres: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{course}-{pres}")
    return f"enrolments/{safe}.csv"


def build_course(root: Path, form: dict[str, str], roster: str | None,
                 kind: str = "new") -> tuple[str, dict[str, Any], dict[str, str]]:  # fmt: skip
    """(course file path, course data, extra files) the request would commit."""
    code = form.get("course", "").strip()
    pres_id = form.get("presentation", "").strip()
    path, existing = course_file_of(root, code)
    course: dict[str, Any] = existing if existing is not None else {"code": code}
    if form.get("title", "").strip():
        course["title"] = form["title"].strip()
    if form.get("unit", "").strip() and not existing:
        course["unit"] = form["unit"].strip()
    pres: dict[str, Any] = {"id": pres_id}  # ids are strings in the catalog ("2026" too)
    for key in ("start", "end", "expected_students"):
        if form.get(key, "").strip():
            pres[key] = _value(form[key])
    if form.get("image", "").strip():
        pres["images"] = [{"name": "default", "image": form["image"].strip()}]
    resources = {k: form[k].strip() for k in ("memory", "cpu") if form.get(k, "").strip()}
    if resources:
        pres["resources"] = resources
    if form.get("storage_layout", "").strip():
        pres["storage"] = {"layout": form["storage_layout"].strip()}
    timetable = timetable_of(form.get("timetable", ""))
    if timetable:
        pres["timetable"] = timetable
    disabled = [x for x in _LIST_SPLIT.split(form.get("extensions_disabled", "")) if x]
    if disabled:
        pres["extensions"] = {"disabled": disabled}
    files: dict[str, str] = {}
    source = form.get("enrolment", "none")
    if source == "roster" and roster is not None:
        rel = roster_path(code, pres_id)
        files[rel] = roster
        pres["enrolment"] = [{"csv": os.path.relpath(rel, os.path.dirname(path))}]
    elif source == "ldap" and form.get("ldap_group", "").strip():
        pres["enrolment"] = [{"ldap": {"group": form["ldap_group"].strip()}}]
    elif source == "idp" and form.get("idp_group", "").strip():
        pres["enrolment"] = [{"idp_group": form["idp_group"].strip()}]
    team = {r: [u for u in _LIST_SPLIT.split(form.get(r, "")) if u] for r in ("instructors", "tutors")}
    team = {r: users for r, users in team.items() if users}
    if team:
        if existing:
            pres["team"] = team  # this presentation's staff; the course's own team stays as the course file says
        else:
            course["team"] = team
    presentations = [p for p in course.get("presentations") or [] if str(p.get("id")) != pres_id]
    old = next((p for p in course.get("presentations") or [] if str(p.get("id")) == pres_id), None)
    if old is not None and kind == "change":
        # A change keeps what the form does not manage (seed, culling, ...) and the presentation's place.
        kept = {k: v for k, v in old.items() if k not in ("images", "resources", "storage", "extensions", "enrolment",
                                                          "team", "expected_students", "start", "end", "timetable")}
        if "enrolment" not in pres and "enrolment" in old:  # no new roster uploaded: the one it has stays
            pres["enrolment"] = old["enrolment"]
        pres = {**kept, **pres}
        index = (course.get("presentations") or []).index(old)
        presentations.insert(index, pres)
    else:
        presentations = list(course.get("presentations") or []) + [pres]
    if "presentations" in course:
        course["presentations"][:] = presentations  # in place: the list keeps its comments
    else:
        course["presentations"] = presentations
    return path, course, files


def dump(course: dict[str, Any]) -> str:
    out = io.StringIO()
    _yaml().dump(course, out)
    return out.getvalue()


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # the scratch copy costs no space; the loader only reads it
    except OSError:
        shutil.copy2(src, dst)


_PRES_FIELD = [
    (r"\.start\b", "start"), (r"\.end\b", "end"), (r"\.id\b", "presentation"),
    (r"\.expected_students", "expected_students"), (r"\.images", "image"), (r"\.resources\.(memory|.*memory)", "memory"),
    (r"\.resources\.cpu", "cpu"), (r"\.resources", "memory"), (r"\.storage", "storage_layout"),
    (r"\.extensions", "extensions_disabled"), (r"\.enrolment", "enrolment"), (r"\.team\.instructors", "instructors"),
    (r"\.team\.tutors", "tutors"), (r"\.timetable", "timetable"),
]
_COURSE_FIELD = [(r"\.code\b", "course"), (r"\.title\b", "title"), (r"\.unit\b", "unit"),
                 (r"\.team\.instructors", "instructors"), (r"\.team\.tutors", "tutors")]


def field_of(problem: Problem, code: str, pres_id: str, roster_file: str | None) -> str | None:
    """Which form field a validate problem is about, or None (shown above the form)."""
    if roster_file and problem.location.file.endswith(roster_file):
        return "roster"
    pres_prefix = f"courses[{code}].presentations[{pres_id}]"
    if problem.path.startswith(pres_prefix):
        rest = problem.path[len(pres_prefix):]
        return next((name for pattern, name in _PRES_FIELD if re.match(pattern, rest)), None)
    if problem.path.startswith(f"courses[{code}]"):
        rest = problem.path[len(f"courses[{code}]"):]
        return next((name for pattern, name in _COURSE_FIELD if re.match(pattern, rest)), None)
    return None


def check_request(root: Path, form: dict[str, str], roster: str | None, today: dt.date,
                  observe: ObserveFn | None = None, kind: str = "new") -> Checked:  # fmt: skip
    """Check a request against the catalog at ``root`` as it is now: the course file it would commit, validate's
    problems by field, the planned hub(s) and the actions the next reconcile would take."""
    root = Path(root).resolve()
    code, pres_id = form.get("course", "").strip(), form.get("presentation", "").strip()
    path, course, files = build_course(root, form, roster, kind)
    files = {path: dump(course), **files}
    checked = Checked(files=files, course_file=path)
    if not code:
        checked.field_errors["course"] = ["a course code is required"]
    if not pres_id:
        checked.field_errors["presentation"] = ["a presentation id is required"]
    if checked.field_errors:
        return checked
    if not (root / "fleet.yaml").is_file():
        checked.errors.append(f"{root} is not a folder catalog (fleet.yaml + courses/); requests need one")
        return checked
    with tempfile.TemporaryDirectory(prefix="hubfleet-request-") as scratch:
        copy = Path(scratch) / "catalog"
        shutil.copytree(root, copy, copy_function=_link_or_copy, ignore=shutil.ignore_patterns(".git", ".hubfleet"))
        for rel, text in files.items():
            target = copy / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                target.unlink()  # a hard link to the real catalog's file: replace the link, never write through it
            target.write_text(text)
        roster_file = next((rel for rel in files if rel.endswith(".csv")), None)
        try:
            loaded = load_catalog(copy)
        except CatalogError as exc:
            for problem in exc.problems:
                # The same line validate prints, with the file named as it is in the catalog repository.
                line = str(problem).replace(str(copy) + os.sep, "")
                name = field_of(problem, code, pres_id, roster_file)
                (checked.field_errors.setdefault(name, []) if name else checked.errors).append(line)
            if exc.omitted:
                checked.errors.append(f"... and {exc.omitted} more problems")
            return checked
    spec = plan(loaded.catalog, today)
    mine = [h for h in spec.hubs if any(p.course == code and p.presentation == pres_id for p in h.presentations)]
    retired = [p for p in spec.retired if p.course == code and p.presentation == pres_id]
    checked.hubs = [{"name": h.name, "url": h.url, "profiles": [(p.display_name, p.image, p.memory) for p in h.profiles],
                     "presentations": [(p.key, p.phase.value, p.start, p.end, p.archive_on) for p in h.presentations]}
                    for h in mine]  # fmt: skip
    if not mine:
        course = next(c for c in loaded.catalog.courses if c.code == code)
        p = next(x for x in course.presentations if x.id == pres_id)
        fleet = loaded.catalog.fleet
        line = timeline(p.start, p.end, fleet.lifecycle)
        phase = retired[0].phase.value if retired else line.phase(today).value
        # Not wanted today (scheduled, or already retired): the hub it gets, from the same naming the planner uses.
        name = hub_name(fleet.topology, fleet.name, code, pres_id, course.unit)
        checked.hubs = [{"name": name, "url": "", "profiles": [],
                         "presentations": [(f"{code}-{pres_id}", phase, p.start, p.end, line.archive_on)]}]
    checked.cost = predicted_cost(loaded.catalog, code, pres_id)
    try:
        state = observe() if observe else FleetState()
        actions = diff(spec, state)
    except OrphanError as exc:
        checked.errors += [f"refused: {reason}" for reason in exc.reasons]
        return checked
    names = {h["name"] for h in checked.hubs}
    checked.actions = [a for a in actions.actions if a.hub in names]
    return checked



def predicted_cost(catalog: Catalog, code: str, pres_id: str) -> dict[str, Any]:
    """What the simulator predicts this presentation costs from its hub's provisioning to its archive, in the
    fleet's own topology (no hibernation, no pre-warming; the documented default model and prices), with the
    shared overhead shared out as ``hubfleet simulate`` does. About a second for a catalog like the example."""
    course = next(c for c in catalog.courses if c.code == code)
    pres = next(p for p in course.presentations if p.id == pres_id)
    line = timeline(pres.start, pres.end, catalog.fleet.lifecycle)
    window = Window(line.provision_on, max(line.archive_on, line.provision_on + dt.timedelta(days=1)))
    only = Scenarios(topologies=[catalog.fleet.topology], hibernation=[False], prewarm=[False])
    result = simulate_catalog(catalog, window, UsageModel(scenarios=only), seed=0).scenarios[0]
    key = presentation_key(code, pres_id)
    total = result.per_presentation.get(key, 0.0)
    students = max(pres.expected_students, 1)
    return {"total": round(total, 2), "per_student": round(total / students, 2), "currency": Prices().currency,
            "from": window.start, "to": window.end}
