"""The archive phase as one resumable procedure: archive, verify, record, and only then tear down; and purge.

Backends hand it the student course folders of a presentation (they know the storage layout; this module does
not) and a ``teardown`` callback that deletes one folder and leaves the stub. Per presentation:

1. Students whose ledger row is verified (an earlier, perhaps killed, run) are **re-verified from the store**
   before anything is deleted: bit rot or a deleted object between runs must block the teardown, not be
   discovered when the student asks for their work. A failure is written to the ledger (``mark_problem``) and
   reported; the next run archives that student again from the folder, which is still there.
2. The others are archived with ``archive.archive_many`` (both cores; ``archive.py`` itself resumes a killed run:
   fixed ``.partial`` names, complete archives skipped after verifying). Remote stores get the staged files
   uploaded and then downloaded again for the read-back check.
3. Each verified archive is recorded (``record`` + ``mark_verified`` with the sha256 that was verified).
4. Only when **every** student of the presentation is verified does the teardown start. All or nothing: a
   presentation is either still complete on disk or fully archived, which is what an operator can reason about
   at 3 a.m. A teardown killed half-way is finished by the next run (rows are verified; folders are re-checked).

Nothing here deletes a byte that is not covered by a verified archive: ``Ledger.mark_removed`` and
``mark_purged`` refuse otherwise, and they are called after the check, not before.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from hubfleet.lifecycle.archive import ArchiveResult, archive_many, verify_archive
from hubfleet.lifecycle.ledger import ArchiveRecord, Ledger
from hubfleet.lifecycle.store import (
    ArchiveStore, archive_key, delete_location, location_exists, manifest_key, manifest_location, open_location,
    sha256_of,
)

__all__ = ["Archiver", "PresentationOutcome", "StudentFolder", "audit", "stub_text"]


@dataclass(frozen=True)
class StudentFolder:
    student: str
    path: Path  # the real course folder, archived as the archive's root


@dataclass
class PresentationOutcome:
    key: str
    archived: list[str] = field(default_factory=list)  # verified in this run
    resumed: list[str] = field(default_factory=list)  # verified earlier, re-checked now
    removed: list[str] = field(default_factory=list)  # course folders deleted in this run
    purged: list[str] = field(default_factory=list)  # archives deleted in this run (retention over)
    problems: list[str] = field(default_factory=list)  # "student: what is wrong"

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        parts = [f"{len(self.archived)} archived", f"{len(self.resumed)} already archived"]
        if self.removed:
            parts.append(f"{len(self.removed)} course folder(s) removed")
        if self.purged:
            parts = [f"{len(self.purged)} archive(s) deleted after retention"]
        text = f"{self.key}: " + ", ".join(parts)
        if self.problems:
            text += f"; {len(self.problems)} PROBLEM(S), nothing deleted: " + "; ".join(self.problems[:5])
        return text


def _check_local(archive: str, manifest: str, expect_sha: str) -> str | None:
    """Module-level so a process pool can run it: None when sound, else what is wrong."""
    if not Path(archive).is_file() or not Path(manifest).is_file():
        return f"archive missing: {archive}"
    try:
        recorded = json.loads(Path(manifest).read_text())["totals"]["archive_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"manifest unreadable: {exc}"
    if recorded != expect_sha:
        return f"archive is not the one the ledger recorded ({recorded[:12]}… != {expect_sha[:12]}…)"
    check = verify_archive(Path(archive), Path(manifest))
    if check.ok:
        return None
    return "archive corrupt: " + (check.error or ", ".join(
        f"{k} {getattr(check, k)[:3]}" for k in ("missing", "extra", "mismatched", "unsafe") if getattr(check, k))
        or "archive sha256 does not match its manifest")


class Archiver:
    def __init__(self, store: ArchiveStore, ledger: Ledger, staging: Path, *, workers: int | None = None,
                 executor: str = "process") -> None:
        self.store, self.ledger, self.staging = store, ledger, Path(staging)
        self.workers, self.executor = workers, executor

    # -- verification from the store -----------------------------------------------------------------------------

    def check(self, key: str, students: Iterable[tuple[str, str]]) -> dict[str, str | None]:
        """Re-verify (student, expected sha256) archives from the store, in parallel; {student: problem or None}."""
        items = list(students)
        if not items:
            return {}
        local = self.store.local_dir(key)
        if local is not None:
            pool_cls = ProcessPoolExecutor if self.executor == "process" and len(items) > 1 else ThreadPoolExecutor
            with pool_cls(max_workers=self.workers) as pool:
                futures = {s: pool.submit(_check_local, self.store.url(archive_key(key, s)),
                                          self.store.url(manifest_key(key, s)), sha) for s, sha in items}
                return {s: f.result() for s, f in futures.items()}
        with ThreadPoolExecutor(max_workers=self.workers or 4) as pool:
            return dict(zip((s for s, _ in items), pool.map(lambda i: self._check_remote(key, *i), items)))

    def _check_remote(self, key: str, student: str, expect_sha: str) -> str | None:
        if not self.store.exists(archive_key(key, student)) or not self.store.exists(manifest_key(key, student)):
            return f"archive missing: {self.store.url(archive_key(key, student))}"
        with tempfile.TemporaryDirectory(prefix="hubfleet-verify-") as tmp:
            arc, man = Path(tmp) / "a.tar.gz", Path(tmp) / "a.manifest.json"
            self.store.get(archive_key(key, student), arc)
            self.store.get(manifest_key(key, student), man)
            return _check_local(str(arc), str(man), expect_sha)

    # -- the archive phase -----------------------------------------------------------------------------------------

    def archive(self, key: str, folders: list[StudentFolder], *, keep_until: str | None = None,
                teardown: Callable[[StudentFolder], None] | None = None) -> PresentationOutcome:
        out = PresentationOutcome(key)
        rows = {r.student: r for r in self.ledger.for_presentation(key)}
        earlier = {f.student: rows[f.student].sha256 for f in folders if f.student in rows and rows[f.student].ok}
        todo = [f for f in folders if f.student not in earlier]

        for student, problem in self.check(key, earlier.items()).items():
            if problem:
                # Loud, recorded, and blocking; the folder is still there, so the next run archives it afresh.
                self.ledger.mark_problem(key, student, problem)
                out.problems.append(f"{student}: {problem}")
            else:
                out.resumed.append(student)

        if todo:
            dest = self.store.local_dir(key) or self.staging / key
            results = archive_many([(f.path, dest, f.student) for f in todo], workers=self.workers,
                                   executor=self.executor)
            for folder, result in zip(todo, results):
                problem = self._record(key, result, keep_until)
                if problem:
                    out.problems.append(f"{folder.student}: {problem}")
                else:
                    out.archived.append(folder.student)

        present = {f.student for f in folders}
        for row in rows.values():
            if row.problem and row.student not in present and not row.purged_at:
                # Found bad after its folder was removed: nothing can re-create it here. Keep saying so.
                out.problems.append(f"{row.student}: {row.problem} (course folder already removed: restore it "
                                    "from a backup of the archive store)")
        if out.problems or teardown is None:
            return out
        for folder in folders:
            teardown(folder)
            self.ledger.mark_removed(key, folder.student)
            out.removed.append(folder.student)
        self.ledger.mark_presentation_archived(key)
        return out

    def _record(self, key: str, result: ArchiveResult, keep_until: str | None) -> str | None:
        if not result.ok:
            v = result.verify
            return result.error or (v.error if v else None) or "archive did not verify against its manifest"
        student = result.name
        if self.store.local_dir(key) is None:
            self.store.put(Path(result.archive), archive_key(key, student))
            self.store.put(Path(result.manifest), manifest_key(key, student))
            problem = self._check_remote(key, student, result.sha256)  # the read-back, from the store itself
            if problem:
                return problem
            Path(result.archive).unlink(missing_ok=True)
            Path(result.manifest).unlink(missing_ok=True)
        self.ledger.record(key, student, self.store.url(archive_key(key, student)), result.sha256,
                           result.archive_bytes, keep_until=keep_until)
        self.ledger.mark_verified(key, student, sha256=result.sha256)
        return None

    # -- the purged phase ------------------------------------------------------------------------------------------

    def purge(self, key: str) -> PresentationOutcome:
        """Delete the presentation's archives (retention over) and record it; refuse rows that are not sound."""
        out = PresentationOutcome(key)
        for row in self.ledger.for_presentation(key):
            if row.purged_at:
                continue
            if not row.ok:
                out.problems.append(f"{row.student}: {row.problem or 'never verified'}; kept for a person to look at")
                continue
            delete_location(manifest_location(row.location))
            delete_location(row.location)
            self.ledger.mark_purged(key, row.student)
            out.purged.append(row.student)
        if not out.problems:
            self.ledger.mark_presentation_purged(key)
        return out


# -- reporting ---------------------------------------------------------------------------------------------------


def audit(ledger: Ledger, *, deep: bool = False, presentations: Iterable[str] | None = None) -> list[str]:
    """What is wrong with the recorded archives, one line each; empty when all is well.

    Shallow (status, every few seconds is fine): the row is sound and both objects exist. Deep (``lifecycle run``):
    also the archive's sha256, read back in full; a mismatch is written to the ledger, which blocks purge.
    """
    wanted = set(presentations) if presentations is not None else None
    problems = []
    for row in ledger.all():
        if row.purged_at or (wanted is not None and row.presentation not in wanted):
            continue
        where = f"{row.presentation}/{row.student}"
        if row.problem:
            problems.append(f"{where}: {row.problem}")
        elif row.verified_at is None:
            problems.append(f"{where}: archive recorded but never verified ({row.location})")
        elif not (location_exists(row.location) and location_exists(manifest_location(row.location))):
            problems.append(f"{where}: archive missing: {row.location}")
            if deep:
                ledger.mark_problem(row.presentation, row.student, f"archive missing: {row.location}")
        elif deep:
            sha, _ = sha256_of(open_location(row.location))
            if sha != row.sha256:
                problem = f"archive corrupt: sha256 {sha[:12]}… is not the recorded {row.sha256[:12]}…"
                ledger.mark_problem(row.presentation, row.student, problem)
                problems.append(f"{where}: {problem}")
    return problems


def stub_text(student: str, rows: list[ArchiveRecord], portal_url: str, catalog_hint: str = "CATALOG") -> str:
    """``WHERE-ARE-MY-FILES.txt``: one section per archived presentation of this student, rebuilt from the ledger
    each time, so a student on two presentations reads about both and a purge updates it."""
    now = datetime.now(timezone.utc).date().isoformat()
    lines = [
        "Where are my files?",
        "===================",
        "",
        "When a presentation ends, hubfleet keeps your work for you: your course folder is packed into one",
        "archive (.tar.gz) with a list of every file and its checksum, checked, and only then removed here.",
        "",
    ]
    for row in sorted(rows, key=lambda r: r.presentation):
        lines.append(f"{row.presentation}")
        if row.purged_at:
            lines.append(f"  The archive was deleted on {row.purged_at.date().isoformat()}: its retention period ended.")
        else:
            archived = (row.verified_at or row.created_at).date().isoformat()
            lines.append(f"  Archived and verified on {archived} (sha256 {row.sha256}).")
            lines.append(f"  Download it: log in at {portal_url} (\"My archives\").")
            if row.keep_until:
                lines.append(f"  It is kept until {row.keep_until}, then deleted.")
            lines.append("  Need it back in a new presentation? Ask your tutor or the platform team; staff run:")
            lines.append(f"    hubfleet archive restore {catalog_hint} --presentation {row.presentation} "
                         f"--user {student} --into NEW-PRESENTATION")
        lines.append("")
    lines.append(f"(This file was written by hubfleet on {now}.)")
    return "\n".join(lines) + "\n"
