"""The archive ledger: which student's folder of which presentation was archived where, and whether it was verified
and purged. It is the record that lets hubfleet delete student data, so it answers one question above all:
"is there a verified archive of this?" (``Ledger.verified``), and refuses to mark something purged otherwise.

One sqlite file in the fleet's state dir, standard library only (it runs next to ``archive.py`` in a Job too).
WAL mode so the portal can read while an archive run writes; every write is one transaction.
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
    purged_at    TEXT,            -- when the student's live data was deleted
    PRIMARY KEY (presentation, student)
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
               created_at: datetime | None = None) -> None:
        """Record (or re-record) a student's archive. A new archive replaces the old row; if its content differs,
        any earlier verification is void, so verified_at is cleared."""
        self._write(
            """INSERT INTO archives (presentation, student, location, sha256, bytes, created_at)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (presentation, student) DO UPDATE SET
                 location = excluded.location, bytes = excluded.bytes, created_at = excluded.created_at,
                 verified_at = CASE WHEN sha256 = excluded.sha256 THEN verified_at END,
                 sha256 = excluded.sha256""",
            (presentation, student, location, sha256, bytes, _ts(created_at)),
        )

    def mark_verified(self, presentation: str, student: str, sha256: str | None = None,
                      at: datetime | None = None) -> None:
        """Record a successful read-back. Pass the sha256 that was verified: if the ledger holds a different
        archive, the verification was of something else and is refused."""
        row = self._row(presentation, student)
        if sha256 is not None and sha256 != row.sha256:
            raise LedgerError(f"{presentation}/{student}: verified sha256 {sha256[:12]}… is not the recorded "
                              f"archive {row.sha256[:12]}…")
        changed = self._write(
            "UPDATE archives SET verified_at = ? WHERE presentation = ? AND student = ? AND sha256 = ?",
            (_ts(at), presentation, student, row.sha256),
        )
        if not changed:  # re-recorded by someone else between our read and our write
            raise LedgerError(f"{presentation}/{student}: archive changed while marking it verified; verify again")

    def mark_purged(self, presentation: str, student: str, at: datetime | None = None) -> None:
        """Record that the live data was deleted. Refused unless the archive was verified first."""
        # The condition is inside the UPDATE so the check and the write are one atomic step.
        changed = self._write(
            "UPDATE archives SET purged_at = ? WHERE presentation = ? AND student = ? AND verified_at IS NOT NULL",
            (_ts(at), presentation, student),
        )
        if not changed:
            self._row(presentation, student)  # raises if there is no row at all
            raise LedgerError(f"{presentation}/{student}: archive not verified; refusing to mark the data purged")

    def verified(self, presentation: str, student: str) -> bool:
        cur = self._db.execute(
            "SELECT 1 FROM archives WHERE presentation = ? AND student = ? AND verified_at IS NOT NULL",
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
            "SELECT presentation, student, location, sha256, bytes, created_at, verified_at, purged_at "
            f"FROM archives WHERE {where}",
            params,
        )
        return [ArchiveRecord(p, s, loc, sha, size, _dt(c), _dt(v), _dt(pu))  # type: ignore[arg-type]
                for p, s, loc, sha, size, c, v, pu in cur.fetchall()]
