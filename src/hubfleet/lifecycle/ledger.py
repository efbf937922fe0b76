"""The archive ledger: which student's folder of which presentation was archived where, and whether it was verified
and purged. It is the record that lets hubfleet delete student data, so it answers one question above all:
"is there a verified archive of this?" (``Ledger.verified``), and refuses to mark something purged otherwise.

One sqlite file in the fleet's state dir, standard library only (it runs next to ``archive.py`` in a Job too).
WAL mode so the portal can read while an archive run writes; every write is one transaction.

A row's life: ``record`` (archive written) -> ``mark_verified`` (read back against its manifest) ->
``mark_removed`` (the student's course folder deleted, only ever after verification) -> ``mark_purged`` (the archive
itself deleted after the retention period). ``mark_problem`` notes an archive found corrupt or missing after it had
been verified: it blocks teardown and purge until a fresh archive is verified, and is what ``status`` shows.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

DEFAULT_NAME = "archives.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS archives (
    presentation TEXT NOT NULL,   -- e.g. TM351-2026J
    student      TEXT NOT NULL,   -- hub username
    location     TEXT NOT NULL,   -- path or URL of the .tar.gz (manifest sits next to it)
    sha256       TEXT NOT NULL,   -- of the .tar.gz
    bytes        INTEGER NOT NULL,
    created_at   TEXT NOT NULL,   -- ISO 8601, UTC
    verified_at  TEXT,
    purged_at    TEXT,            -- when the archive was deleted (retention over)
    PRIMARY KEY (presentation, student)
)
"""
# Per presentation: when its archive phase (every student archived, verified, folders removed) and its purge were
# complete. This, not "no folders left", is what the planner's archived/purged facts come from: a presentation
# whose only folders are the course team's (exempt) must still count as archived once its students are.
_PRESENTATIONS = """
CREATE TABLE IF NOT EXISTS presentations (
    presentation TEXT PRIMARY KEY,
    archived_at  TEXT,
    purged_at    TEXT
)
"""
# Columns added by the lifecycle work; ALTERed into ledgers created before them (sqlite has no IF NOT EXISTS here).
_LATER_COLUMNS = {
    "keep_until": "TEXT",  # ISO date the archive is kept until (shown to students)
    "removed_at": "TEXT",  # when the student's course folder was deleted, after verification
    "problem": "TEXT",  # an archive found corrupt/missing after it was verified; NULL when fine
}


class LedgerError(Exception):
    """A ledger operation that would break the "delete only after a verified archive" rule, or an unknown row."""


@dataclass(frozen=True)
class ArchiveRecord:
    presentation: str
    student: str
    location: str
    sha256: str
    bytes: int
    created_at: datetime
    verified_at: datetime | None
    purged_at: datetime | None
    keep_until: str | None = None
    removed_at: datetime | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        """Verified and not since found corrupt or missing: the only state that lets data be deleted."""
        return self.verified_at is not None and self.problem is None


def _ts(value: datetime | None) -> str:
    moment = value or datetime.now(timezone.utc)
    if moment.tzinfo is None:
        # A naive timestamp is ambiguous across the fleet's machines; refuse rather than guess the zone.
        raise ValueError(f"timestamp {moment!r} has no timezone; pass an aware datetime (UTC)")
    return moment.astimezone(timezone.utc).isoformat()


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class Ledger:
    """``Ledger(path)``: path is the sqlite file, or a state directory (then ``archives.sqlite`` inside it)."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / DEFAULT_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a write takes the lock up front instead of
        # failing half-way when another process (an archive Job, the CLI) writes at the same moment.
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # this table authorises deleting data: durability first
        self._db.execute(_SCHEMA)
        self._db.execute(_PRESENTATIONS)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(archives)")}
        for column, kind in _LATER_COLUMNS.items():
            if column not in have:
                try:
                    self._db.execute(f"ALTER TABLE archives ADD COLUMN {column} {kind}")
                except sqlite3.OperationalError:  # another process added it a moment ago
                    pass

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql: str, params: tuple) -> int:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            count = self._db.execute(sql, params).rowcount
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return count

    def record(self, presentation: str, student: str, location: str, sha256: str, bytes: int,
               created_at: datetime | None = None, keep_until: str | None = None) -> None:
        """Record (or re-record) a student's archive. A new archive replaces the old row; if its content differs,
        any earlier verification is void, so verified_at is cleared."""
        self._write(
            """INSERT INTO archives (presentation, student, location, sha256, bytes, created_at, keep_until)
               VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (presentation, student) DO UPDATE SET
                 location = excluded.location, bytes = excluded.bytes, created_at = excluded.created_at,
                 verified_at = CASE WHEN sha256 = excluded.sha256 THEN verified_at END,
                 sha256 = excluded.sha256, keep_until = COALESCE(excluded.keep_until, keep_until)""",
            (presentation, student, location, sha256, bytes, _ts(created_at), keep_until),
        )

    def mark_verified(self, presentation: str, student: str, sha256: str | None = None,
                      at: datetime | None = None) -> None:
        """Record a successful read-back. Pass the sha256 that was verified: if the ledger holds a different
        archive, the verification was of something else and is refused."""
        row = self._row(presentation, student)
        if sha256 is not None and sha256 != row.sha256:
            raise LedgerError(f"{presentation}/{student}: verified sha256 {sha256[:12]}… is not the recorded "
                              f"archive {row.sha256[:12]}…")
        # A fresh verification also clears an earlier problem: this is the archive that now stands.
        changed = self._write(
            "UPDATE archives SET verified_at = ?, problem = NULL WHERE presentation = ? AND student = ? AND sha256 = ?",
            (_ts(at), presentation, student, row.sha256),
        )
        if not changed:  # re-recorded by someone else between our read and our write
            raise LedgerError(f"{presentation}/{student}: archive changed while marking it verified; verify again")

    def mark_purged(self, presentation: str, student: str, at: datetime | None = None) -> None:
        """Record that the archive was deleted after retention. Refused unless it was verified first (an archive
        that never verified is not a record anyone may act on, and is kept for a person to look at)."""
        # The condition is inside the UPDATE so the check and the write are one atomic step.
        changed = self._write(
            "UPDATE archives SET purged_at = ? WHERE presentation = ? AND student = ? AND verified_at IS NOT NULL",
            (_ts(at), presentation, student),
        )
        if not changed:
            self._row(presentation, student)  # raises if there is no row at all
            raise LedgerError(f"{presentation}/{student}: archive not verified; refusing to mark the data purged")

    def mark_removed(self, presentation: str, student: str, at: datetime | None = None) -> None:
        """Record that the student's course folder was deleted. Refused unless the archive is verified and sound."""
        changed = self._write(
            "UPDATE archives SET removed_at = ? WHERE presentation = ? AND student = ? "
            "AND verified_at IS NOT NULL AND problem IS NULL",
            (_ts(at), presentation, student),
        )
        if not changed:
            self._row(presentation, student)
            raise LedgerError(f"{presentation}/{student}: archive not verified; refusing to record the folder removed")

    def mark_problem(self, presentation: str, student: str, problem: str) -> None:
        """An archive that was verified is now corrupt or missing: keep the row (it is evidence), flag it."""
        if not self._write("UPDATE archives SET problem = ? WHERE presentation = ? AND student = ?",
                           (problem, presentation, student)):
            raise LedgerError(f"{presentation}/{student}: no archive recorded")

    def mark_presentation_archived(self, presentation: str, at: datetime | None = None) -> None:
        """The archive phase is complete. Refused while any of its archives is unverified or has a problem."""
        changed = self._write(
            """INSERT INTO presentations (presentation, archived_at) SELECT ?, ?
               WHERE NOT EXISTS (SELECT 1 FROM archives WHERE presentation = ?
                                 AND (verified_at IS NULL OR problem IS NOT NULL))
               ON CONFLICT (presentation) DO UPDATE SET archived_at = excluded.archived_at""",
            (presentation, _ts(at), presentation),
        )
        if not changed:
            raise LedgerError(f"{presentation}: an archive is unverified or has a problem; not complete")

    def mark_presentation_purged(self, presentation: str, at: datetime | None = None) -> None:
        """The purge is complete. Refused while any archive of it is not purged."""
        changed = self._write(
            """UPDATE presentations SET purged_at = ? WHERE presentation = ? AND archived_at IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM archives WHERE presentation = ? AND purged_at IS NULL)""",
            (_ts(at), presentation, presentation),
        )
        if not changed:
            raise LedgerError(f"{presentation}: not archived, or an archive of it is not purged")

    def presentation_state(self, presentation: str) -> tuple[bool, bool]:
        """(archived, purged) as the planner means them: complete, and no archive of it has a problem."""
        row = self._db.execute("SELECT archived_at, purged_at FROM presentations WHERE presentation = ?",
                               (presentation,)).fetchone()
        bad = self._db.execute("SELECT 1 FROM archives WHERE presentation = ? AND purged_at IS NULL AND "
                               "(verified_at IS NULL OR problem IS NOT NULL) LIMIT 1", (presentation,)).fetchone()
        if row is None:
            return False, False
        return row[0] is not None and bad is None, row[1] is not None

    def all(self) -> list[ArchiveRecord]:
        return self._select("1 ORDER BY presentation, student", ())

    def verified(self, presentation: str, student: str) -> bool:
        cur = self._db.execute(
            "SELECT 1 FROM archives WHERE presentation = ? AND student = ? AND verified_at IS NOT NULL "
            "AND problem IS NULL",
            (presentation, student),
        )
        return cur.fetchone() is not None

    def for_presentation(self, presentation: str) -> list[ArchiveRecord]:
        return self._select("presentation = ? ORDER BY student", (presentation,))

    def for_student(self, student: str) -> list[ArchiveRecord]:
        """Every archive of a student (a student on two presentations has two rows)."""
        return self._select("student = ? ORDER BY presentation", (student,))

    def _row(self, presentation: str, student: str) -> ArchiveRecord:
        rows = self._select("presentation = ? AND student = ?", (presentation, student))
        if not rows:
            raise LedgerError(f"{presentation}/{student}: no archive recorded")
        return rows[0]

    def _select(self, where: str, params: tuple) -> list[ArchiveRecord]:
        cur = self._db.execute(
            "SELECT presentation, student, location, sha256, bytes, created_at, verified_at, purged_at, "
            f"keep_until, removed_at, problem FROM archives WHERE {where}",
            params,
        )
        return [ArchiveRecord(p, s, loc, sha, size, _dt(c), _dt(v), _dt(pu), ku, _dt(rm), pb)  # type: ignore[arg-type]
                for p, s, loc, sha, size, c, v, pu, ku, rm, pb in cur.fetchall()]
