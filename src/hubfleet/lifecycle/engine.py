"""The archive phase as one resumable procedure, a journal in the ledger: archive, verify, record, and only then, one
student at a time, re-verify and remove; and purge. Both backends run this same code (the local backend in-process,
the Kubernetes archive Job through ``jobrunner.py``).

Backends hand it the student course folders of a presentation (they know the storage layout; this module does
not) and a ``Teardown`` (write the student's stub; remove one folder). Per presentation:

1. A student whose folder's removal was started by an earlier run (``removing_at`` in the ledger, a run killed
   half-way) is **never archived again**: what is left is a remnant. The removal is finished, after the archive it
   relied on passes the same check as below; if it does not, the remnant is kept and the problem reported.
2. Students whose current archive is verified (an earlier run) get a quick check (the stored file's sha256 against
   the ledger) so a damaged archive blocks the teardown now, not at the last moment.
3. The others are archived with ``archive.archive_many`` (both cores) under a name no ledger row uses: an archive
   file is never overwritten, so a student archived again gets ``<name>.2.tar.gz`` and a row of their own, and the
   old archive stays for a person to look at. Each verified archive is recorded (``record`` + ``mark_verified`` with
   the sha256 that was verified).
4. What the archives hold, and what they could not hold, is said (``say``) before anything is deleted.
5. Only when every student of the presentation is verified does the teardown start (a presentation is either
   complete on disk or archived). Then, per student: the stub, then the **re-verification** (sha256 of the stored
   file against the ledger, and a full read-back), then ``mark_removing`` (intent), the removal, ``mark_removed``.
   The check runs in the pool, and each student's folder is removed the moment its own check passes: a student
   whose check fails keeps their folder, and the others are not held up by it.

``PresentationOutcome.removed`` is filled only on that path, after that check: the summary printed from it is true
by construction. ``Ledger.mark_removing``/``mark_removed`` and ``mark_purged`` refuse unverified archives too.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from hubfleet.lifecycle import faultpoints
from hubfleet.lifecycle.archive import ArchiveResult, archive_many, verify_archive, worker_pool
from hubfleet.lifecycle.ledger import ArchiveRecord, Ledger
from hubfleet.lifecycle.store import (
    ArchiveStore, archive_key, delete_location, location_exists, manifest_key, manifest_location, open_location,
    sha256_of,
)

__all__ = ["Archiver", "PresentationOutcome", "StudentFolder", "Teardown", "archive_stem", "audit", "stub_text"]

_MAX_GENERATIONS = 50  # archives of one student kept side by side before a person must look


@dataclass(frozen=True)
class StudentFolder:
    student: str  # the real username (what the ledger keeps)
    path: Path | None  # the real course folder, archived as the archive's root; None once it is gone
    name: str = ""  # the archive's file name: catalog.naming.storage_name(student) (default: student)

    @property
    def stem(self) -> str:
        return self.name or self.student


class Teardown(Protocol):
    def stub(self, folder: StudentFolder) -> None:
        """Write the student's WHERE-ARE-MY-FILES note (rebuilt from the ledger)."""

    def remove(self, folder: StudentFolder, halfway: Callable[[], None]) -> None:
        """Delete the course folder (calling ``halfway()`` once, after its first entry is gone); gone is fine."""


def archive_stem(name: str, generation: int) -> str:
    """``name`` for the first archive, ``name.N`` after: a storage name never contains '.', so never ambiguous."""
    return name if generation == 1 else f"{name}.{generation}"


@dataclass
class PresentationOutcome:
    key: str
    archived: list[str] = field(default_factory=list)  # verified in this run
    resumed: list[str] = field(default_factory=list)  # verified earlier, checked again now
    removed: list[str] = field(default_factory=list)  # course folders deleted in this run, each right after its check
    purged: list[str] = field(default_factory=list)  # archives deleted in this run (retention over)
    kept: list[str] = field(default_factory=list)  # course folders kept because their archive failed its check
    problems: list[str] = field(default_factory=list)  # "student: what is wrong"
    holds: str = ""  # what the archives hold, and what they could not

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        parts = [f"{len(self.archived)} archived", f"{len(self.resumed)} already archived"]
        if self.removed:
            parts.append(f"{len(self.removed)} course folder(s) removed, each right after its archive re-verified")
        if self.purged:
            parts = [f"{len(self.purged)} archive(s) deleted after retention"]
        text = f"{self.key}: " + ", ".join(parts)
        if self.problems:
            kept = f"{len(self.kept)} folder(s) kept" if self.kept else "no folder removed for them"
            text += f"; {len(self.problems)} PROBLEM(S), {kept}: " + "; ".join(self.problems[:5])
        return text


def check_archive(archive: str, manifest: str, expect_sha: str, deep: bool = True) -> str | None:
    """Module-level so a process pool can run it: None when the archive is the ledger's and sound, else what is
    wrong. Deep: a full read-back (every member against the manifest, the file's sha256 against it); else only the
    stored file's sha256."""
    if not Path(archive).is_file() or not Path(manifest).is_file():
        return f"archive missing: {archive}"
    try:
        recorded = json.loads(Path(manifest).read_text())["totals"]["archive_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"manifest unreadable: {exc}"
    if recorded != expect_sha:
        return f"archive is not the one the ledger recorded ({recorded[:12]}… != {expect_sha[:12]}…)"
    if not deep:
        sha, _ = sha256_of(open(archive, "rb"))
        if sha != expect_sha:
            return f"archive corrupt: sha256 {sha[:12]}… is not the recorded {expect_sha[:12]}…"
        return None
    check = verify_archive(Path(archive), Path(manifest))
    return None if check.ok else "archive corrupt: " + check.problem()


def _describe(docs: list[dict]) -> tuple[str, list[str]]:
    counts = {k: sum(len(d.get(k, [])) for d in docs) for k in ("files", "dirs", "symlinks", "hardlinks")}
    total = sum(d.get("totals", {}).get("bytes", 0) for d in docs)
    text = (f"{counts['files']} files ({total / 1e6:,.1f} MB), {counts['dirs']} folders, "
            f"{counts['symlinks']} symlinks, {counts['hardlinks']} hard links")
    cannot = [f"{d.get('name', '?')}: {s['path']} ({s['reason']})" for d in docs for s in d.get("skipped", [])]
    return text, cannot


class Archiver:
    def __init__(self, store: ArchiveStore, ledger: Ledger, staging: Path, *, workers: int | None = None,
                 executor: str = "process", say: Callable[[str], None] | None = None) -> None:
        self.store, self.ledger, self.staging = store, ledger, Path(staging)
        self.workers, self.executor = workers, executor
        self.say = say or (lambda line: None)

    # -- checks against the store ----------------------------------------------------------------------------------

    def _check(self, row: ArchiveRecord, deep: bool = True) -> str | None:
        local = self.store.local_dir(row.presentation)
        if local is not None:
            return check_archive(row.location, manifest_location(row.location), row.sha256, deep)
        return self._check_remote(row.location, row.sha256, deep)

    def _check_remote(self, location: str, expect_sha: str, deep: bool = True) -> str | None:
        if not location_exists(location) or not location_exists(manifest_location(location)):
            return f"archive missing: {location}"
        with tempfile.TemporaryDirectory(prefix="hubfleet-verify-") as tmp:
            arc, man = Path(tmp) / "a.tar.gz", Path(tmp) / "a.manifest.json"
            for src, dst in ((location, arc), (manifest_location(location), man)):
                with open_location(src) as fh, open(dst, "wb") as out:
                    while chunk := fh.read(1 << 20):
                        out.write(chunk)
            return check_archive(str(arc), str(man), expect_sha, deep)

    def _pool(self, n: int):  # noqa: ANN202
        local = self.store.local_dir("x") is not None
        if local and self.executor == "process" and n > 1:
            return worker_pool(self.workers, "process")
        return ThreadPoolExecutor(max_workers=self.workers or 4)

    def _checks(self, rows: list[ArchiveRecord], deep: bool) -> Iterable[tuple[ArchiveRecord, str | None]]:
        """(row, problem or None), in the order the checks finish."""
        if not rows:
            return
        with self._pool(len(rows)) as pool:
            if self.store.local_dir("x") is not None:
                futures = {pool.submit(check_archive, r.location, manifest_location(r.location), r.sha256, deep): r
                           for r in rows}
            else:
                futures = {pool.submit(self._check_remote, r.location, r.sha256, deep): r for r in rows}
            for fut in as_completed(futures):
                yield futures[fut], fut.result()

    # -- the archive phase -----------------------------------------------------------------------------------------

    def archive(self, key: str, folders: list[StudentFolder], *, keep_until: str | None = None,
                teardown: Teardown | None = None) -> PresentationOutcome:
        out = PresentationOutcome(key)
        current = {r.student: r for r in self.ledger.for_presentation(key, current_only=True)}
        present = {f.student: f for f in folders}
        finishing = [(present.get(r.student) or StudentFolder(r.student, None), r)
                     for r in current.values() if r.removal_pending]
        started = {f.student for f, _ in finishing}
        earlier = [current[f.student] for f in folders if f.student not in started and f.student in current
                   and current[f.student].ok and not current[f.student].removed_at]
        # Never archived, archived but the archive failed a check, or a new folder where one was removed: archive.
        todo = [f for f in folders if f.student not in started | {r.student for r in earlier}]

        for row, problem in self._checks(earlier, deep=False):
            if problem:
                # Loud, recorded, and blocking; the folder is still there, so the next run archives it afresh.
                self.ledger.mark_problem(key, row.student, problem, row_id=row.id)
                out.problems.append(f"{row.student}: {problem}")
            else:
                out.resumed.append(row.student)
        self._archive_todo(key, todo, keep_until, out)

        for row in current.values():
            if row.problem and row.student not in present and not row.purged_at and not row.removal_pending:
                # Found bad after its folder was removed: nothing can re-create it here. Keep saying so.
                out.problems.append(f"{row.student}: {row.problem} (course folder already removed: restore it "
                                    "from a backup of the archive store)")
        self._say_holds(key, out)
        if teardown is None:
            return out
        # A removal an earlier run started is finished whatever else is wrong: it was authorised then.
        self._teardown(key, finishing, teardown, out, pending=True)
        if out.problems:
            return out
        rows = {r.student: r for r in self.ledger.for_presentation(key, current_only=True)}
        self._teardown(key, [(f, rows[f.student]) for f in folders if f.student not in started], teardown, out)
        if not out.problems:
            self.ledger.mark_presentation_archived(key)
        return out

    def _archive_todo(self, key: str, todo: list[StudentFolder], keep_until: str | None,
                      out: PresentationOutcome) -> None:
        used = {r.location for r in self.ledger.for_presentation(key)}
        generation = {f.student: 1 for f in todo}
        dest = self.store.local_dir(key) or self.staging / key
        while todo:
            for f in todo:
                while (self.store.url(archive_key(key, archive_stem(f.stem, generation[f.student]))) in used
                       or self._taken_remotely(key, archive_stem(f.stem, generation[f.student]))):
                    generation[f.student] += 1
            jobs = [(f.path, dest, archive_stem(f.stem, generation[f.student])) for f in todo]
            results = archive_many(jobs, workers=self.workers, executor=self.executor)  # type: ignore[arg-type]
            retry = []
            for folder, result in zip(todo, results):
                if result.kept and generation[folder.student] < _MAX_GENERATIONS:
                    # An archive of that name exists and does not verify: never overwritten, the next name is used.
                    generation[folder.student] += 1
                    retry.append(folder)
                    continue
                problem = self._record(key, folder, result, keep_until)
                if problem:
                    out.problems.append(f"{folder.student}: {problem}")
                else:
                    out.archived.append(folder.student)
            todo = retry

    def _taken_remotely(self, key: str, stem: str) -> bool:
        """Remote stores only: an object of that name, not in the ledger (an upload whose run was killed)."""
        return self.store.local_dir(key) is None and self.store.exists(archive_key(key, stem))

    def _record(self, key: str, folder: StudentFolder, result: ArchiveResult, keep_until: str | None) -> str | None:
        if not result.ok:
            v = result.verify
            return result.error or (v.problem() if v else None) or "archive did not verify against its manifest"
        stem = result.name
        location = self.store.url(archive_key(key, stem))
        if self.store.local_dir(key) is None:
            self.store.put(Path(result.archive), archive_key(key, stem))
            self.store.put(Path(result.manifest), manifest_key(key, stem))
            problem = self._check_remote(location, result.sha256)  # the read-back, from the store itself
            if problem:
                return problem
            Path(result.archive).unlink(missing_ok=True)
            Path(result.manifest).unlink(missing_ok=True)
        self.ledger.record(key, folder.student, location, result.sha256, result.archive_bytes, keep_until=keep_until)
        self.ledger.mark_verified(key, folder.student, sha256=result.sha256)
        faultpoints.strike("ledger", location if self.store.local_dir(key) is not None else None)
        return None

    def _say_holds(self, key: str, out: PresentationOutcome) -> None:
        """What the presentation's archives hold and what they could not hold, said before anything is deleted."""
        students = set(out.archived) | set(out.resumed)
        if not students:
            return
        docs = []
        for row in self.ledger.for_presentation(key, current_only=True):
            if row.student in students:
                try:
                    with open_location(manifest_location(row.location)) as fh:
                        docs.append(json.loads(fh.read()))
                except (OSError, ValueError):
                    continue  # a missing manifest fails the check before removal; nothing to describe here
        text, cannot = _describe(docs)
        out.holds = f"{key}: the archives of {len(students)} student(s) hold {text}"
        if cannot:
            out.holds += f"; they could not hold {len(cannot)} entr(y/ies): " + "; ".join(cannot[:20])
        self.say(out.holds)

    def _teardown(self, key: str, items: list[tuple[StudentFolder, ArchiveRecord]], teardown: Teardown,
                  out: PresentationOutcome, *, pending: bool = False) -> None:
        by_student = {f.student: f for f, _ in items}
        if not pending:
            for folder, row in items:
                # Stub first: a kill between it and the removal leaves a note pointing at a verified archive,
                # never a student with neither folder nor note.
                teardown.stub(folder)
                faultpoints.strike("stub", row.location if self.store.local_dir(key) is not None else None)
        for row, problem in self._checks([r for _, r in items], deep=True):
            folder = by_student[row.student]
            if problem:
                self.ledger.mark_problem(key, row.student, problem, row_id=row.id)
                what = ("its removal was interrupted earlier; what is left of the folder is kept and will not be "
                        "archived again: restore the archive from a backup of the store" if pending
                        else "the course folder is kept; the next run archives it afresh")
                out.problems.append(f"{row.student}: {problem} ({what})")
                out.kept.append(row.student)
                teardown.stub(folder)  # the note no longer points at an archive that failed
                continue
            # The check just passed: journal the intent, remove, journal the end. Nothing else runs in between.
            if row.problem:  # an earlier check failed (a store briefly away); this one read it back in full
                self.ledger.mark_verified(key, row.student, sha256=row.sha256)
            self.ledger.mark_removing(key, row.student)
            teardown.remove(folder, lambda: faultpoints.strike("delete"))
            if pending:
                teardown.stub(folder)
            self.ledger.mark_removed(key, row.student)
            out.removed.append(row.student)

    # -- the purged phase ------------------------------------------------------------------------------------------

    def purge(self, key: str) -> PresentationOutcome:
        """Delete the presentation's archives (retention over) and record it; refuse current rows that are not
        sound. Superseded archives (a student archived again) go too: retention is the decision about them."""
        out = PresentationOutcome(key)
        for row in self.ledger.for_presentation(key):
            if row.purged_at:
                continue
            if not row.superseded and not row.ok:
                out.problems.append(f"{row.student}: {row.problem or 'never verified'}; kept for a person to look at")
                continue
            delete_location(manifest_location(row.location))
            delete_location(row.location)
            self.ledger.mark_purged(key, row.student, row_id=row.id)
            if not row.superseded:
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
        if row.purged_at or row.superseded or (wanted is not None and row.presentation not in wanted):
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
    # The archives that stand: current and sound, or the ones a removed folder relied on. An archive that failed
    # its check while the folder is still there is not one to point a student at.
    shown = [r for r in rows if r.purged_at or ((not r.superseded or r.removed_at) and (r.ok or r.removed_at))]
    for row in sorted(shown, key=lambda r: (r.presentation, r.id)):
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
