"""CSV rosters: the member lists that student-records systems and VLEs export.

The catalog loader calls this while validating a catalog, so it stays stdlib-only and does no I/O
beyond reading the one file. Every problem in a file is collected and raised at once
(``RosterErrors``), because a course team fixing an export wants the whole list, not one error per
run.

A *preset* names the column layout of a known export and the vocabulary of its values (Moodle's
"Non-editing teacher" is our tutor). Explicit ``columns`` override which column holds the username
or role; the preset's vocabulary and row filters (withdrawn students, Canvas' "Points Possible"
row) still apply, so ``preset: moodle`` with ``columns: {username: Email address}`` still maps
Moodle roles.
"""

from __future__ import annotations

import csv
import io
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubfleet.catalog.naming import USERNAME_RULE, is_username, normalise_username


ROLES = ("student", "tutor", "instructor")
# When one cell lists several roles (Moodle: "Student, Non-editing teacher") the person gets the
# most privileged one, since that is what they are in the course.
_RANK = {role: rank for rank, role in enumerate(ROLES)}

# 300,000 rows of a wide student-records export; a bigger file is not a roster.
MAX_ROSTER_BYTES = 64 << 20
_NOT_MEMBER = "-"  # role-map result for rows listed but not enrolled (observers, "No roles")


@dataclass(frozen=True, slots=True)
class Member:
    username: str
    role: str  # student | tutor | instructor


class RosterError(Exception):
    """One problem in a roster file, located by 1-based line (``row``) and column (``col``).

    ``message`` reads ``row 17: ...`` (what the course team sees next to their spreadsheet);
    ``str()`` is ``file:17:2: ...`` like every other catalog error, so editors can jump to it.
    """

    def __init__(self, file: str, row: int, col: int, detail: str):
        self.file = file
        self.row = row
        self.col = col
        self.detail = detail
        self.message = f"row {row}: {detail}"
        super().__init__(f"{file}:{row}:{col}: {detail}")


class RosterErrors(Exception):
    """Every problem found in one roster file."""

    SHOWN = 20  # str() lists this many; a broken 100,000-row export must not flood the terminal

    def __init__(self, errors: list[RosterError]):
        self.errors = errors
        lines = [str(e) for e in errors[: self.SHOWN]]
        if len(errors) > self.SHOWN:
            lines.append(f"... and {len(errors) - self.SHOWN} more problems in the same file")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class _Preset:
    username: str
    role: str | None
    role_required: bool = False
    # Lower-cased cell value -> role; None means "a row that is not a member" (skipped).
    role_values: Mapping[str, str | None] = field(default_factory=dict)
    status: str | None = None  # column whose value decides membership
    status_values: Mapping[str, bool] = field(default_factory=dict)  # lower-cased value -> is a member
    skip_first_cell: frozenset[str] = frozenset()  # lower-cased first-cell values of non-member rows


PRESETS: dict[str, _Preset] = {
    "hubfleet": _Preset(username="username", role="role"),
    # A typical SIS extract: one row per registration, withdrawn students kept for audit.
    "student-records": _Preset(
        username="USERNAME",
        role=None,
        status="STATUS",
        status_values={"registered": True, "withdrawn": False},
    ),
    # Moodle's participants download. "No roles" marks people still listed after unenrolment.
    "moodle": _Preset(
        username="Username",
        role="Roles",
        role_required=True,
        role_values={
            "student": "student",
            "non-editing teacher": "tutor",
            "teacher": "instructor",
            "editing teacher": "instructor",
            "manager": "instructor",
            "no roles": None,
        },
    ),
    # Canvas people/gradebook export. The gradebook has no Role column (it lists students only) and
    # starts with a "Points Possible" pseudo-row; observers (parents) and the Student View test
    # student are not members of the hub.
    "canvas": _Preset(
        username="SIS Login ID",
        role="Role",
        role_values={
            "studentenrollment": "student",
            "taenrollment": "tutor",
            "teacherenrollment": "instructor",
            "designerenrollment": "instructor",
            "observerenrollment": None,
            "studentviewenrollment": None,
        },
        skip_first_cell=frozenset({"points possible"}),
    ),
}


def parse_roster(
    path: Path, preset: str = "hubfleet", columns: Mapping[str, Any] | None = None, default_role: str = "student"
) -> list[Member]:
    """Read a roster file into members, in file order, without duplicates (see ``read_roster``)."""
    return read_roster(path, preset, columns, default_role).members


@dataclass(frozen=True)
class Roster:
    members: list[Member]
    rows: dict[str, int]  # username -> the 1-based line of its first row, so validate can point at it
    col: int  # the 1-based column of the usernames


def read_roster(
    path: Path, preset: str = "hubfleet", columns: Mapping[str, Any] | None = None, default_role: str = "student"
) -> Roster:
    """Read a roster file into members, in file order, without duplicates, with where each one is.

    Raises ``RosterErrors`` with every problem in the file; ``ValueError`` for a bad preset or
    default role (a programming error: the catalog schema already restricts both).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown roster preset {preset!r}; expected one of {', '.join(PRESETS)}")
    if default_role not in ROLES:
        raise ValueError(f"unknown role {default_role!r}; expected one of {', '.join(ROLES)}")
    spec = _with_columns(PRESETS[preset], columns)
    file = str(path)

    raw = _read_bounded(path, file)
    try:
        # utf-8-sig drops the byte-order mark Excel puts at the start of "CSV UTF-8" files; left in,
        # it would glue itself to the first header name and make "username" look missing.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        utf16 = raw[:2] in (b"\xff\xfe", b"\xfe\xff")  # Excel's "Unicode Text"
        detail = (
            f"the file is not UTF-8 (byte 0x{raw[exc.start]:02x} cannot be decoded"
            f"{'; it looks like UTF-16' if utf16 else ''}); save it again as 'CSV UTF-8' (Excel) or convert it "
            f"with `iconv -f {'utf-16' if utf16 else 'cp1252'} -t utf-8`"
        )
        raise RosterErrors([RosterError(file, line, 1, detail)]) from None
    parser = _Parser(file, spec, default_role)
    try:
        return parser.parse(text)
    except csv.Error as exc:  # a 100 KB cell, a stray NUL: the csv module's own limits
        line = parser.reader.line_num if parser.reader else 1
        raise RosterErrors([RosterError(file, line, 1, f"the CSV cannot be read here ({exc}); fix the row")]) from None


def _read_bounded(path: Path, file: str) -> bytes:
    """The file's bytes, never more than ``MAX_ROSTER_BYTES``; a FIFO or device is refused, not waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with open(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise RosterErrors([RosterError(file, 1, 1, "not a regular file; a roster is a plain CSV file")])
            raw = fh.read(MAX_ROSTER_BYTES + 1)
    except OSError as exc:
        raise RosterErrors([RosterError(file, 1, 1, f"cannot read the roster file: {exc.strerror or exc}")]) from exc
    if len(raw) > MAX_ROSTER_BYTES:
        raise RosterErrors([RosterError(file, 1, 1, f"the file is larger than {MAX_ROSTER_BYTES >> 20} MiB, the "
                                        "limit for one roster; export only the presentation's members")])
    return raw


def _with_columns(spec: _Preset, columns: Mapping[str, Any] | None) -> _Preset:
    if not columns:
        return spec
    if not isinstance(columns, Mapping):  # a pydantic CsvColumns from the catalog model
        columns = {"username": getattr(columns, "username", None), "role": getattr(columns, "role", None)}
    unknown = set(columns) - {"username", "role"}
    if unknown:
        raise ValueError(f"unknown roster column keys {sorted(unknown)}; expected 'username' and 'role'")
    username = columns.get("username") or spec.username
    # An explicitly named role column must exist. Without one the preset's role column is still
    # read if the file has it (a Moodle export keyed on email still carries Roles), but is not
    # required, since naming columns usually means the export is not quite the preset's.
    role = columns.get("role")
    return _Preset(
        username=username,
        role=role or spec.role,
        role_required=role is not None,
        role_values=spec.role_values,
        status=spec.status,
        status_values=spec.status_values,
        skip_first_cell=spec.skip_first_cell,
    )


def _sniff_delimiter(header_line: str) -> str:
    # European Excel writes ';' and some VLEs offer tab-separated downloads; pick by the header.
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else ","


class _Parser:
    def __init__(self, file: str, spec: _Preset, default_role: str):
        self.file = file
        self.spec = spec
        self.default_role = default_role
        self.errors: list[RosterError] = []
        self.reader: Any = None
        self.role_values = {r: r for r in ROLES} | dict(spec.role_values)

    def error(self, row: int, col: int, detail: str) -> None:
        self.errors.append(RosterError(self.file, row, col, detail))

    def parse(self, text: str) -> Roster:
        first = text.lstrip("\r\n").split("\n", 1)[0]
        reader = self.reader = csv.reader(io.StringIO(text, newline=""), delimiter=_sniff_delimiter(first))
        header, header_line = self._header(reader)
        if header is None:
            raise RosterErrors(self.errors)
        username_i = self._column(header, header_line, self.spec.username, required=True)
        role_i = self._column(header, header_line, self.spec.role, required=self.spec.role_required)
        status_i = self._column(header, header_line, self.spec.status, required=self.spec.status is not None)
        if self.errors:
            raise RosterErrors(self.errors)  # rows are meaningless without their columns

        members: dict[str, str] = {}  # username -> role, insertion-ordered like the file
        first_row: dict[str, int] = {}
        match = is_username  # one grammar for rosters, static lists and teams (hubfleet.catalog.naming)
        skip_first = self.spec.skip_first_cell
        # Exact cells ("Registered") hit first; other spellings fall back to a normalised lookup.
        status_values = dict(self.spec.status_values) | {v.capitalize(): k for v, k in self.spec.status_values.items()}
        default_role = self.default_role
        role_cache: dict[str, str] = {}
        line = reader.line_num  # line_num counts physical lines, so quoted newlines keep rows exact
        for cells in reader:
            row = line + 1
            line = reader.line_num
            if not cells or not any(cells):
                continue  # blank or ",,,," lines that spreadsheets leave at the end
            n = len(cells)
            if skip_first and cells[0].strip().lower() in skip_first:
                continue
            if status_i is not None:
                status = cells[status_i] if status_i < n else ""
                keep = status_values.get(status)
                if keep is None:
                    keep = status_values.get(status.strip().lower())
                if keep is None:
                    allowed = " or ".join(v.capitalize() for v in self.spec.status_values)
                    self.error(row, status_i + 1, f"{self.spec.status} {status.strip()!r} is not {allowed}; fix the value or delete the row")
                    continue
                if not keep:
                    continue

            role = default_role
            if role_i is not None and role_i < n:
                cell = cells[role_i]
                # A roster has a handful of distinct role cells; mapping each once keeps 100,000
                # rows fast. Unknown values are not cached so every bad row is reported.
                role = role_cache.get(cell)
                if role is None:
                    role = self._role(cell, row, role_i + 1)
                    if role == "":
                        continue  # reported
                    role_cache[cell] = role
                if role == _NOT_MEMBER:
                    continue  # a listed non-member (observer, "No roles")

            value = cells[username_i] if username_i < n else ""
            username = normalise_username(value)
            if not match(username):
                self._bad_username(value, row, username_i + 1, n)
                continue
            seen = members.get(username)
            if seen is None:
                members[username] = role
                first_row[username] = row
            elif seen != role:
                self.error(
                    row,
                    username_i + 1,
                    f"{username!r} is listed as {role} here and as {seen} on row {first_row[username]}; "
                    "a person has one role in a presentation, so delete or correct one of the two rows",
                )
        if self.errors:
            raise RosterErrors(self.errors)
        return Roster([Member(u, r) for u, r in members.items()], first_row, username_i + 1)

    def _header(self, reader: Any) -> tuple[list[str] | None, int]:
        for cells in reader:
            if cells and any(c.strip() for c in cells):
                return [c.strip() for c in cells], reader.line_num
        self.error(1, 1, f"the file is empty; it needs a header row naming the column {self.spec.username!r}")
        return None, 1

    def _column(self, header: list[str], line: int, name: str | None, required: bool) -> int | None:
        if name is None:
            return None
        if name in header:
            return header.index(name)
        # Exports are not consistent about case ("Username" vs "username"); accept either, but an
        # exact match wins so two columns differing only in case stay unambiguous.
        lowered = [h.lower() for h in header]
        if name.lower() in lowered:
            return lowered.index(name.lower())
        if required:
            found = ", ".join(repr(h) for h in header)
            self.error(
                line,
                1,
                f"the header has no column {name!r} (found {found}); export the roster with that column, "
                "or name the right one with `columns:` in the enrolment source",
            )
        return None

    def _role(self, cell: str, row: int, col: int) -> str:
        """The role a cell names, ``_NOT_MEMBER`` for a listed non-member, or "" after reporting."""
        best: str | None = None
        known = True
        listed = False
        # Moodle lists several roles in one cell, comma-separated.
        for part in cell.split(",") if "," in cell else (cell,):
            value = part.strip().lower()
            if not value:
                continue
            listed = True
            if value not in self.role_values:
                known = False
                break
            role = self.role_values[value]
            if role is not None and (best is None or _RANK[role] > _RANK[best]):
                best = role
        if not known:
            accepted = ", ".join(repr(v) for v in self.role_values)
            self.error(row, col, f"role {cell.strip()!r} is not one of {accepted}; correct it or delete the row")
            return ""
        if not listed:
            return self.default_role  # an empty cell: "Role of rows that carry none"
        return best or _NOT_MEMBER

    def _bad_username(self, value: str, row: int, col: int, n: int) -> None:
        name = self.spec.username
        if col > n or not value.strip():
            self.error(row, col, f"the {name!r} cell is empty; every member needs a login name, so fill it in or delete the row")
            return
        self.error(row, col, f"username {value.strip()!r} is not a valid username ({USERNAME_RULE})")
