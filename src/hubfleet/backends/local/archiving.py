"""The local backend's side of the lifecycle: which folders belong to whom, freezing, archiving, teardown, purge,
restore. The procedure itself (archive, verify, record, then delete) is ``hubfleet.lifecycle.engine``; this module
knows the storage layout (``workspace.py``) and who is on the course team.

Team members (instructors, tutors, the platform team, and roster rows with a tutor/instructor role) are exempt:
their course folders are not frozen in the read-only phase, never archived as if they were student work, and
never deleted by teardown or purge (datahub#7829 archived a professor's files away).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hubfleet.backends.local import workspace
from hubfleet.backends.local.fleetstate import FleetPaths
from hubfleet.catalog import naming
from hubfleet.catalog.loader import LoadedCatalog
from hubfleet.catalog.naming import storage_name
from hubfleet.lifecycle.archive import VerifyResult
from hubfleet.lifecycle.engine import Archiver, PresentationOutcome, StudentFolder, audit, stub_text
from hubfleet.lifecycle.restoring import remove_tree, restore
from hubfleet.lifecycle.ledger import ArchiveRecord, Ledger
from hubfleet.lifecycle.store import ArchiveStore, manifest_location, open_location, open_store
from hubfleet.plan.spec import FleetSpec, Phase, PresentationSpec

__all__ = ["ArchiveFailed", "LocalArchiving", "RestoreResult", "STAFF_ROLES"]

STAFF_ROLES = ("tutor", "instructor")


class ArchiveFailed(RuntimeError):
    """An archive, purge or hub delete did not go ahead; nothing was deleted. The message says what is wrong."""


@dataclass
class RestoreResult:
    student: str
    target: Path
    check: VerifyResult


class LocalArchiving:
    def __init__(self, paths: FleetPaths, storage_root: Path, loaded: LoadedCatalog, *, demo_mode: bool,
                 portal_url: str, store: str | None = None, workers: int | None = None) -> None:
        self.paths, self.storage_root, self.loaded = paths, Path(storage_root), loaded
        self.demo_mode, self.portal_url, self.store_spec, self.workers = demo_mode, portal_url, store, workers
        # Where the engine says what the archives hold before it deletes anything (the CLI prints it), and every
        # outcome of this process's archive phases (the CLI's closing line is built from them, not asserted).
        self.say: Callable[[str], None] | None = None
        self.outcomes: list[PresentationOutcome] = []

    def ledger(self) -> Ledger:
        # One connection per call site: apply runs hubs in threads and sqlite connections stay in their thread.
        return Ledger(self.paths.state)

    def store(self) -> ArchiveStore:
        return open_store(self.store_spec, self.paths.state)

    # -- who is who ------------------------------------------------------------------------------------------------

    def team(self, pres: PresentationSpec) -> set[str]:
        team = set(pres.instructors) | set(pres.tutors) | set(self.loaded.catalog.fleet.platform_team)
        for source in pres.enrolment:
            if "csv" in source:
                team |= {m.username for m in self.loaded.rosters.get(source["csv"], []) if m.role in STAFF_ROLES}
            elif "users" in source and source.get("role", "student") in STAFF_ROLES:
                team |= set(source["users"])
        return team

    def student_folders(self, pres: PresentationSpec) -> list[StudentFolder]:
        team = self.team(pres)
        return [StudentFolder(u, p, storage_name(u))
                for u, p in workspace.course_dirs(self.storage_root, pres).items() if u not in team]

    def owner(self, user: str) -> workspace.Owner | None:
        fleet = self.loaded.catalog.fleet
        return None if self.demo_mode else workspace.existing_owner(user, naming.account_prefix(fleet.name, fleet.account_prefix))

    # -- read-only: storage level, every reconcile ------------------------------------------------------------------

    def enforce_read_only(self, spec: FleetSpec) -> list[str]:
        """Freeze students' course folders of read-only presentations (and thaw them if dates moved back).

        The spawner does the same at each spawn; doing it here too means a server that was running when the phase
        changed, or a student who never logs in again, cannot keep writing: the storage says no, not the UI.
        """
        notes = []
        for hub in spec.hubs:
            for pres in hub.presentations:
                want = pres.phase == Phase.read_only
                for folder in self.student_folders(pres):
                    if workspace.is_read_only(folder.path) != want:
                        workspace.set_read_only(folder.path, want, self.owner(folder.student))
                        notes.append(f"{pres.key}: {folder.student}'s course folder {'frozen' if want else 'thawed'}")
        return notes

    # -- archive, teardown, purge --------------------------------------------------------------------------------

    def archive(self, pres: PresentationSpec, *, teardown: bool = True) -> PresentationOutcome:
        folders = self.student_folders(pres)
        for folder in folders:
            # Nothing may change under the archiver: a server of a shared hub may still run.
            workspace.set_read_only(folder.path, True, self.owner(folder.student))
        with self.ledger() as ledger:
            archiver = Archiver(self.store(), ledger, self.paths.state / "archive-staging", workers=self.workers,
                                say=self.say)
            out = archiver.archive(pres.key, folders, keep_until=pres.purge_on.isoformat(),
                                   teardown=_Teardown(self, ledger, pres) if teardown else None)
        self.outcomes.append(out)
        if out.ok and teardown:
            shutil.rmtree(self.paths.state / "archive-staging" / pres.key, ignore_errors=True)
        return out

    def purge(self, pres: PresentationSpec) -> PresentationOutcome:
        with self.ledger() as ledger:
            out = Archiver(self.store(), ledger, self.paths.state / "archive-staging").purge(pres.key)
        self.outcomes.append(out)
        with self.ledger() as ledger:
            for student in out.purged:
                if (self.storage_root / "home" / student).is_dir():
                    self._write_stub(ledger, student)
        if out.ok:
            # What is left of the presentation's own storage: students' folders are gone since teardown; the
            # team's stay (exempt), so the directory only goes when it is empty.
            try:
                (self.storage_root / "presentations" / pres.key).rmdir()
            except OSError:
                pass
        return out

    def _write_stub(self, ledger: Ledger, student: str) -> None:
        text = stub_text(student, ledger.for_student(student), self.portal_url, str(self.loaded.root))
        workspace.write_stub(self.storage_root / "home" / naming.storage_name(student), text, self.owner(student))

    def problems(self, deep: bool = False) -> list[str]:
        if not (self.paths.state / "archives.sqlite").exists():
            return []
        with self.ledger() as ledger:
            return audit(ledger, deep=deep)

    def carry_out(self, kind: str, key: str, spec: FleetSpec | None) -> str:
        """The backend's ``archive`` / ``purge`` action for one retired presentation; raises ArchiveFailed."""
        pres = next((p for p in (spec.retired if spec else ()) if p.key == key), None)
        if pres is None:
            raise ArchiveFailed(f"{key} is not a retired presentation of the spec being applied")
        out = self.archive(pres) if kind == "archive" else self.purge(pres)
        if not out.ok:
            raise ArchiveFailed(out.summary())
        return out.summary()

    def guard_delete(self, applied: dict, spec: FleetSpec | None) -> None:
        """Refuse to delete a hub while a presentation of it, wanted by no hub any more, still holds students'
        folders without a complete archive phase. (One that moved to another hub keeps its files in use.)"""
        wanted = {p.key for h in (spec.hubs if spec else ()) for p in h.presentations}
        pending = []
        with self.ledger() as ledger:
            for raw in applied.get("presentations", []):
                pres = PresentationSpec.model_validate(raw)
                if pres.key not in wanted and self.student_folders(pres) and not ledger.presentation_state(pres.key)[0]:
                    pending.append(pres.key)
        if pending:
            raise ArchiveFailed(f"kept: {', '.join(pending)} not archived yet (students' folders are still there)")

    # -- restore ----------------------------------------------------------------------------------------------------

    def records(self, presentation: str | None = None, user: str | None = None) -> list[ArchiveRecord]:
        with self.ledger() as ledger:
            rows = ledger.for_presentation(presentation) if presentation else ledger.all()
        return [r for r in rows if user is None or r.student == user]

    def restore(self, row: ArchiveRecord, into: PresentationSpec | None,
                original: PresentationSpec | None) -> RestoreResult:
        """Extract a verified archive and re-hash every file from disk against the manifest.

        Into a new presentation: a ``from-<OLD>`` folder inside the student's course folder there (never over their
        new work). Without one: the original course folder, which must be gone or empty.
        """
        if row.purged_at:
            raise FileNotFoundError(f"{row.presentation}/{row.student}: archive was purged on {row.purged_at:%Y-%m-%d}")
        pres = into or original
        if pres is None:
            raise KeyError(f"{row.presentation} is not in the catalog any more; say --into NEW-PRESENTATION")
        ws = workspace.workspace_for(self.storage_root, pres.hub, row.student, pres)
        target = ws.course_dir / f"from-{row.presentation}" if into is not None else ws.course_dir
        owner = self.owner(row.student)
        made = [p for p in (ws.home, ws.course_dir, ws.course_path) if not (p.exists() or p.is_symlink())]
        with tempfile.TemporaryDirectory(prefix="hubfleet-restore-") as tmp:
            archive, manifest = Path(tmp) / "a.tar.gz", Path(tmp) / "a.manifest.json"
            for location, local in ((row.location, archive), (manifest_location(row.location), manifest)):
                with open_location(location) as src, open(local, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            # The student's home and course folder as the spawner would make them (owner, modes, links), but not
            # the extra mounts yet: their skeletons would make the original folder non-empty (TM351's
            # .postgres/data). They are made after extracting, where the archive did not bring them back.
            workspace.prepare(ws, self.storage_root, owner, mounts=False)
            try:
                check = restore(archive, manifest, target, owner=(owner.uid, owner.gid) if owner else None)
            except BaseException:
                _unmake(made)
                raise
        if check.ok:
            workspace.make_mounts(ws, owner)
        else:
            _unmake(made)  # a failed restore leaves nothing behind (restore() already emptied the target)
        return RestoreResult(row.student, target, check)


def _unmake(made: list[Path]) -> None:
    """Remove what a failed restore created (deepest first), never anything that was there before it."""
    for path in reversed(made):
        if path.is_symlink():
            path.unlink()
        elif path.is_dir():
            remove_tree(path)


@dataclass
class _Teardown:
    """The engine's teardown on the local backend: the stub in the student's home, then the course folder."""

    archiving: LocalArchiving
    ledger: Ledger
    pres: PresentationSpec
    removed: list[str] = field(default_factory=list)

    def stub(self, folder: StudentFolder) -> None:
        self.archiving._write_stub(self.ledger, folder.student)

    def remove(self, folder: StudentFolder, halfway: Callable[[], None]) -> None:
        workspace.remove_course_folder(self.archiving.storage_root, self.pres, folder.student, folder.path, halfway)
