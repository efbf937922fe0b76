"""The archive ledger: which student's folder of which presentation was archived where, whether it was verified,
and the journal of removing the folder. It is the record that lets hubfleet delete student data, so it answers one
question above all: "is there a verified archive of this?" (``Ledger.verified``), and refuses to record a removal or
a purge otherwise.

One sqlite file (standard library only: it runs in the Kubernetes archive Job too). WAL mode so the portal can read
while an archive run writes; every write is one transaction, committed with synchronous=FULL before the step it
authorises.

A row is one archive file, and a file is never overwritten, so a row's location never changes meaning. A student
who had to be archived again (their archive found corrupt while the folder was still there) gets a *new* archive
under a new name and a new row; the old row stays as evidence until a person decides. The newest row of a
(presentation, student) is the *current* one; the others are ``superseded``.

A row's life: ``record`` (archive written) -> ``mark_verified`` (read back against its manifest) ->
``mark_removing`` (intent: the folder's removal starts now; from here on the folder is never archived again, and an
interrupted removal is finished by the next run) -> ``mark_removed`` (folder gone) -> ``mark_purged`` (the archive
itself deleted after the retention period). ``mark_problem`` notes an archive found corrupt or missing after it had
been verified: it blocks removal and purge, and is what ``status`` shows.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

DEFAULT_NAME = "archives.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS archives (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    presentation TEXT NOT NULL,   -- e.g. TM351-2026J
    student      TEXT NOT NULL,   -- hub username (the real one; the file is named after its storage_name)
    location     TEXT NOT NULL UNIQUE,  -- path or URL of the .tar.gz (manifest sits next to it); one row per file
    sha256       TEXT NOT NULL,   -- of the .tar.gz
    bytes        INTEGER NOT NULL,
    created_at   TEXT NOT NULL,   -- ISO 8601, UTC
    verified_at  TEXT,
    purged_at    TEXT,            -- when the archive was deleted (retention over)
    keep_until   TEXT,            -- ISO date the archive is kept until (shown to students)
    removing_at  TEXT,            -- intent, written before the course folder's removal starts
    removed_at   TEXT,            -- when the student's course folder was gone, after verification
    problem      TEXT             -- an archive found corrupt/missing after it was verified; NULL when fine
)
"""
_INDEX = "CREATE INDEX IF NOT EXISTS archives_by_student ON archives (presentation, student, id)"
_COLUMNS = ("presentation, student, location, sha256, bytes, created_at, verified_at, purged_at, keep_until, "
            "removing_at, removed_at, problem")
# The current row of each (presentation, student): the newest.
_CURRENT = "id IN (SELECT MAX(id) FROM archives GROUP BY presentation, student)"
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
    id: int = 0
    removing_at: datetime | None = None
    superseded: bool = False  # a newer archive of the same student and presentation exists

    @property
    def ok(self) -> bool:
        """Verified and not since found corrupt or missing: the only state that lets data be deleted."""
        return self.verified_at is not None and self.problem is None

    @property
    def removal_pending(self) -> bool:
        """The folder's removal was started and not recorded finished (a run was killed in the middle)."""
        return self.removing_at is not None and self.removed_at is None


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

    def __init__(self, path: Path, *, wal: bool = True) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / DEFAULT_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a write takes the lock up front instead of
        # failing half-way when another process (an archive Job, the CLI) writes at the same moment.
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
        # WAL needs shared memory between the processes using the file: fine on a local disk, not on NFS (the
        # Kubernetes Job keeps its journal on the archive volume, with one process writing: wal=False there).
        self._db.execute("PRAGMA journal_mode=" + ("WAL" if wal else "DELETE"))
        self._db.execute("PRAGMA synchronous=FULL")  # this table authorises deleting data: durability first
        self._db.execute("BEGIN IMMEDIATE")
        try:
            have = {row[1] for row in self._db.execute("PRAGMA table_info(archives)")}
            if have and "id" not in have:
                self._migrate(have)
            self._db.execute(_SCHEMA)
            self._db.execute(_INDEX)
            self._db.execute(_PRESENTATIONS)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _migrate(self, have: set[str]) -> None:
        """Ledgers from before the journal keyed rows by (presentation, student), so a re-archive replaced its row;
        rows are now one per archive file. Copy them over as they are."""
        self._db.execute("ALTER TABLE archives RENAME TO archives_v1")
        self._db.execute(_SCHEMA)
        cols = [c for c in _COLUMNS.split(", ") if c in have]
        self._db.execute(f"INSERT INTO archives ({', '.join(cols)}) SELECT {', '.join(cols)} FROM archives_v1")
        self._db.execute("DROP TABLE archives_v1")

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
               created_at: datetime | None = None, keep_until: str | None = None) -> int:
        """Record a new archive file as the student's current one; return its row id. Recording the same file
        again (a run killed before it marked it verified) returns the existing row; a different archive at a
        recorded location is refused: files are never overwritten, so that would mean someone did."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            row = self._db.execute("SELECT id, presentation, student, sha256 FROM archives WHERE location = ?",
                                   (location,)).fetchone()
            if row is not None:
                if (row[1], row[2], row[3]) != (presentation, student, sha256):
                    raise LedgerError(f"{location}: already recorded for {row[1]}/{row[2]} with sha256 "
                                      f"{row[3][:12]}…; an archive is never overwritten")
                newest = self._db.execute("SELECT MAX(id) FROM archives WHERE presentation = ? AND student = ?",
                                          (presentation, student)).fetchone()[0]
                if newest != row[0]:
                    raise LedgerError(f"{location}: a newer archive of {presentation}/{student} is recorded")
                rid = row[0]
            else:
                rid = self._db.execute(
                    "INSERT INTO archives (presentation, student, location, sha256, bytes, created_at, keep_until) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (presentation, student, location, sha256, bytes, _ts(created_at), keep_until)).lastrowid
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return int(rid)

    def current(self, presentation: str, student: str) -> ArchiveRecord | None:
        """The student's newest archive of the presentation (None if never archived)."""
        rows = self._select(f"presentation = ? AND student = ? AND {_CURRENT}", (presentation, student))
        return rows[0] if rows else None

    def _current_id(self, presentation: str, student: str) -> int:
        row = self.current(presentation, student)
        if row is None:
            raise LedgerError(f"{presentation}/{student}: no archive recorded")
        return row.id

    def mark_verified(self, presentation: str, student: str, sha256: str | None = None,
                      at: datetime | None = None) -> None:
        """Record a successful read-back of the current archive. Pass the sha256 that was verified: if the ledger
        holds a different archive, the verification was of something else and is refused."""
        row = self.current(presentation, student)
        if row is None:
            raise LedgerError(f"{presentation}/{student}: no archive recorded")
        if sha256 is not None and sha256 != row.sha256:
            raise LedgerError(f"{presentation}/{student}: verified sha256 {sha256[:12]}… is not the recorded "
                              f"archive {row.sha256[:12]}…")
        # A fresh verification also clears an earlier problem: this is the archive that now stands.
        changed = self._write(
            f"UPDATE archives SET verified_at = ?, problem = NULL WHERE id = ? AND sha256 = ? AND {_CURRENT}",
            (_ts(at), row.id, row.sha256),
        )
        if not changed:  # re-recorded by someone else between our read and our write
            raise LedgerError(f"{presentation}/{student}: archive changed while marking it verified; verify again")

    def mark_purged(self, presentation: str, student: str, at: datetime | None = None,
                    row_id: int | None = None) -> None:
        """Record that an archive (the current one, or ``row_id``) was deleted after retention. Refused unless it
        was verified first, or it is a superseded one (an archive that never verified is not a record anyone may
        act on, and is kept for a person to look at)."""
        rid = row_id if row_id is not None else self._current_id(presentation, student)
        # The condition is inside the UPDATE so the check and the write are one atomic step.
        changed = self._write(
            f"UPDATE archives SET purged_at = ? WHERE id = ? AND presentation = ? AND student = ? "
            f"AND (verified_at IS NOT NULL OR NOT {_CURRENT})",
            (_ts(at), rid, presentation, student),
        )
        if not changed:
            raise LedgerError(f"{presentation}/{student}: archive not verified; refusing to mark the data purged")

    def mark_removing(self, presentation: str, student: str, at: datetime | None = None) -> None:
        """Journal the intent to remove the student's course folder, before the removal starts. Refused unless the
        current archive is verified and sound. Idempotent for a removal already under way."""
        changed = self._write(
            f"UPDATE archives SET removing_at = COALESCE(removing_at, ?) WHERE presentation = ? AND student = ? "
            f"AND verified_at IS NOT NULL AND problem IS NULL AND {_CURRENT}",
            (_ts(at), presentation, student),
        )
        if not changed:
            self._current_id(presentation, student)
            raise LedgerError(f"{presentation}/{student}: archive not verified; refusing to start removing the folder")

    def mark_removed(self, presentation: str, student: str, at: datetime | None = None) -> None:
        """Record that the student's course folder is gone. Refused unless the archive is verified and sound."""
        changed = self._write(
            f"UPDATE archives SET removed_at = ?, removing_at = COALESCE(removing_at, ?) WHERE presentation = ? "
            f"AND student = ? AND verified_at IS NOT NULL AND problem IS NULL AND {_CURRENT}",
            (_ts(at), _ts(at), presentation, student),
        )
        if not changed:
            self._current_id(presentation, student)
            raise LedgerError(f"{presentation}/{student}: archive not verified; refusing to record the folder removed")

    def mark_problem(self, presentation: str, student: str, problem: str, row_id: int | None = None) -> None:
        """An archive that was verified is now corrupt or missing: keep the row (it is evidence), flag it."""
        rid = row_id if row_id is not None else self._current_id(presentation, student)
        if not self._write("UPDATE archives SET problem = ? WHERE id = ?", (problem, rid)):
            raise LedgerError(f"{presentation}/{student}: no archive recorded")

    def mark_presentation_archived(self, presentation: str, at: datetime | None = None) -> None:
        """The archive phase is complete. Refused while any of its archives is unverified or has a problem."""
        changed = self._write(
            f"""INSERT INTO presentations (presentation, archived_at) SELECT ?, ?
               WHERE NOT EXISTS (SELECT 1 FROM archives WHERE presentation = ? AND {_CURRENT}
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
        bad = self._db.execute(f"SELECT 1 FROM archives WHERE presentation = ? AND purged_at IS NULL AND {_CURRENT} "
                               "AND (verified_at IS NULL OR problem IS NOT NULL) LIMIT 1", (presentation,)).fetchone()
        if row is None:
            return False, False
        return row[0] is not None and bad is None, row[1] is not None

    def all(self) -> list[ArchiveRecord]:
        """Every row, superseded ones included, oldest first within a student."""
        return self._select("1 ORDER BY presentation, student, id", ())

    def verified(self, presentation: str, student: str) -> bool:
        row = self.current(presentation, student)
        return row is not None and row.ok

    def for_presentation(self, presentation: str, *, current_only: bool = False) -> list[ArchiveRecord]:
        where = "presentation = ?" + (f" AND {_CURRENT}" if current_only else "")
        return self._select(where + " ORDER BY student, id", (presentation,))

    def for_student(self, student: str, *, current_only: bool = False) -> list[ArchiveRecord]:
        """Every archive of a student (a student on two presentations has two rows, or more if re-archived)."""
        where = "student = ?" + (f" AND {_CURRENT}" if current_only else "")
        return self._select(where + " ORDER BY presentation, id", (student,))

    def _select(self, where: str, params: tuple) -> list[ArchiveRecord]:
        cur = self._db.execute(
            f"SELECT {_COLUMNS}, id, NOT ({_CURRENT}) FROM archives WHERE {where}", params)
        return [ArchiveRecord(p, s, loc, sha, size, _dt(c), _dt(v), _dt(pu), ku, _dt(rm), pb,  # type: ignore[arg-type]
                              rid, _dt(ri), bool(sup))
                for p, s, loc, sha, size, c, v, pu, ku, ri, rm, pb, rid, sup in cur.fetchall()]
