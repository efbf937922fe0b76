"""The presentation lifecycle end to end on the local backend: real hubs, real files, real system users (as root),
the real CLI, walked through every phase with ``--at`` dates. One module-scoped fleet; tests run in file order and
each moves the date forward.

Timeline (fleet lifecycle: 14 days provisioned, 30 days read-only, 365 days retention):

    2026-10-05  TM351-2026J open, M269-2026J provisioned, A233-2026B (per-presentation layout) open
    2026-10-20  A233 read-only
    2026-11-20  A233 archived (kill -9 mid-archive, then a reconcile)
    2027-06-20  TM351 read-only
    2027-07-15  TM351 archived (a corrupted archive first blocks the teardown)
    2028-07-15  TM351 and A233 purged; M269 still open

As root, students are system users (``hf-<name>``) and files are written *as them*, so "not writable" is the
kernel saying no. Without root the fleet runs in demo mode and the same checks run as the current account.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port
from hub_fixture import world_traversable_dir

from hubfleet.backends.local import workspace
from hubfleet.backends.local.backend import LocalBackend, stop_fleet
from hubfleet.backends.local.reconciler import Reconciler
from hubfleet.catalog import load_catalog, naming
from hubfleet.lifecycle.ledger import Ledger
from hubfleet.plan import diff, plan

pytestmark = pytest.mark.slow
ROOT = os.geteuid() == 0
OPEN, A233_RO, A233_ARCHIVED = dt.date(2026, 10, 5), dt.date(2026, 10, 20), dt.date(2026, 11, 20)
TM351_RO, TM351_ARCHIVED, PURGED = dt.date(2027, 6, 20), dt.date(2027, 7, 15), dt.date(2028, 7, 15)
A233_STUDENTS = [f"s{i:02d}" for i in range(24)]
USERS = ["ana", "ben", "cat", "tom", "ian", *A233_STUDENTS]
NOTES = b"week 1: normal forms\nweek 2: joins\n"
PREFIX = naming.account_prefix("lifecycle-test")  # the fleet below has no fleet.account_prefix


def _catalog(root: Path) -> Path:
    (root / "courses").mkdir(parents=True)
    (root / "fleet.yaml").write_text(textwrap.dedent("""\
        fleet:
          name: lifecycle-test
          topology: per-presentation
          platform_team: [opsadmin]
          lifecycle: {provision_days_before_start: 14, read_only_days_after_end: 30, retention_days: 365}
        """))
    (root / "courses" / "TM351.yaml").write_text(textwrap.dedent("""\
        code: TM351
        title: Data management
        team: {instructors: [ian], tutors: [tom]}
        presentations:
          - {id: 2026J, start: 2026-10-03, end: 2027-06-10, enrolment: [{users: [ana, ben]}]}
        """))
    (root / "courses" / "M269.yaml").write_text(textwrap.dedent("""\
        code: M269
        title: Algorithms
        presentations:
          - {id: 2026J, start: 2026-10-10, end: 2028-12-01, enrolment: [{users: [ana, cat]}]}
        """))
    (root / "courses" / "A233.yaml").write_text(textwrap.dedent(f"""\
        code: A233
        title: Digital humanities
        storage: {{layout: per-presentation}}
        team: {{tutors: [tom]}}
        presentations:
          - {{id: 2026B, start: 2026-02-07, end: 2026-10-15, enrolment: [{{users: [{", ".join(A233_STUDENTS)}]}}]}}
        """))
    return root


@dataclass
class Fleet:
    root: Path
    catalog: Path
    state: Path
    storage: Path
    port: int
    backend: LocalBackend

    def cli(self, *args: str, at: dt.date | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args, at=at), capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL)

    def argv(self, *args: str, at: dt.date | None = None) -> list[str]:
        argv = [sys.executable, "-m", "hubfleet.cli.main", *args, str(self.catalog), "--state-dir", str(self.state)]
        if args[0] in ("lifecycle", "status"):
            argv += ["--port", str(self.port)]
        if args[0] in ("lifecycle", "status") or args[:2] == ("archive", "restore"):
            argv += ["--storage-root", str(self.storage)]
        return argv + (["--at", at.isoformat()] if at else [])

    def pres(self, key: str, at: dt.date):  # noqa: ANN201
        return next(p for p in plan(self.backend.loaded.catalog, at).all_presentations() if p.key == key)

    def course_dir(self, key: str, user: str, at: dt.date = OPEN) -> Path:
        pres = self.pres(key, at)
        return workspace.workspace_for(self.storage, pres.hub, user, pres).course_dir

    def ledger(self) -> Ledger:
        return Ledger(self.state)


def _as_user(user: str, *cmd: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run a command as the student's system user (as root), or as ourselves in demo mode."""
    owner = workspace.existing_owner(user, PREFIX) if ROOT else None
    kwargs = {"user": owner.uid, "group": owner.gid, "extra_groups": []} if owner else {}
    return subprocess.run(list(cmd), input=data, capture_output=True, timeout=60, **kwargs)


def _write_as(user: str, path: Path, data: bytes) -> None:
    run = _as_user(user, "sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"', "_", str(path), data=data)
    assert run.returncode == 0, run.stderr


def _tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file() and p.name != workspace.READ_ONLY_MARKER}


def _make_folder(fleet: Fleet, key: str, user: str, files: dict[str, bytes]) -> Path:
    """A course folder as the spawner lays it out, with files written by the student themselves."""
    pres = fleet.pres(key, OPEN)
    ws = workspace.workspace_for(fleet.storage, pres.hub, user, pres)
    owner = workspace.ensure_system_user(user, ws.home, PREFIX, "lifecycle-test") if ROOT else None
    workspace.prepare(ws, fleet.storage, owner)
    for rel, data in files.items():
        _write_as(user, ws.course_dir / rel, data)
    return ws.course_dir


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    root = world_traversable_dir("hf-lifecycle-")
    with pytest.MonkeyPatch.context() as mp:
        if not ROOT:
            mp.setenv("HUBFLEET_DEMO_MODE", "1")
        catalog = _catalog(root / "catalog")
        state, storage = root / "state", root / "storage"
        backend = LocalBackend(state, storage, load_catalog(catalog), port=free_port(), demo_mode=not ROOT)
        f = Fleet(root, catalog, state, storage, backend.port, backend)
        try:
            yield f
        finally:
            stop_fleet(state)
            if ROOT:
                for user in USERS:
                    subprocess.run(["userdel", naming.unix_account(PREFIX, user)], capture_output=True)
            shutil.rmtree(root, ignore_errors=True)


# -- open -----------------------------------------------------------------------------------------------------


def test_open_hubs_come_up_and_students_write_their_work(fleet: Fleet) -> None:
    run = fleet.cli("lifecycle", "run", at=OPEN)
    assert run.returncode == 0, run.stdout + run.stderr
    assert {p.name for p in (fleet.state / "hubs").iterdir()} == {"a233-2026b", "m269-2026j", "tm351-2026j"}
    notes = _make_folder(fleet, "TM351-2026J", "ana", {"notes.txt": NOTES, "data/rivers.csv": b"river,km\nWye,250\n"})
    _make_folder(fleet, "TM351-2026J", "ben", {"essay.md": b"# Ben's essay\n" * 50})
    _make_folder(fleet, "TM351-2026J", "tom", {"marking-guide.md": b"tutor notes\n"})
    _make_folder(fleet, "TM351-2026J", "ian", {"solutions/week1.ipynb": b'{"cells": []}'})
    _make_folder(fleet, "M269-2026J", "ana", {"sort.py": b"print(sorted([3, 1, 2]))\n"})
    for i, user in enumerate(A233_STUDENTS):  # big enough that an archive run can be caught half-way
        _make_folder(fleet, "A233-2026B", user, {"corpus.bin": os.urandom(4_000_000), f"notes-{i}.txt": b"x" * i})
    _make_folder(fleet, "A233-2026B", "tom", {"answers.md": b"tutor's own\n"})
    assert (notes / "notes.txt").read_bytes() == NOTES
    if ROOT:
        assert (notes / "notes.txt").stat().st_uid == workspace.existing_owner("ana", PREFIX).uid


# -- A233: read-only, then archived with a kill -9 in the middle -------------------------------------------------


def test_read_only_freezes_students_at_the_storage_level(fleet: Fleet) -> None:
    run = fleet.cli("lifecycle", "run", at=A233_RO)
    assert run.returncode == 0, run.stdout + run.stderr
    folder = fleet.course_dir("A233-2026B", "s03")
    assert _as_user("s03", "cat", str(folder / "notes-3.txt")).stdout == b"xxx"
    assert _as_user("s03", "sh", "-c", f"echo more >> {folder / 'notes-3.txt'}").returncode != 0
    assert _as_user("s03", "sh", "-c", f"echo new > {folder / 'new.txt'}").returncode != 0
    # The tutor's own folder is exempt; the TM351 students (still open) are untouched.
    _write_as("tom", fleet.course_dir("A233-2026B", "tom") / "answers.md", b"still writable\n")
    _write_as("ana", fleet.course_dir("TM351-2026J", "ana") / "week3.txt", b"open presentation\n")


def test_kill_9_during_archive_then_reconcile_gives_every_archive_once(fleet: Fleet) -> None:
    expected = {u: _tree(fleet.course_dir("A233-2026B", u)) for u in A233_STUDENTS}
    tutor_before = _tree(fleet.course_dir("A233-2026B", "tom"))
    out = fleet.state / "archives" / "A233-2026B"
    proc = subprocess.Popen(fleet.argv("lifecycle", "run", at=A233_ARCHIVED), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 300  # a wait for the right moment, not a speed assertion
    while time.monotonic() < deadline and proc.poll() is None:
        names = os.listdir(out) if out.is_dir() else []
        if any(n.endswith(".manifest.json") for n in names) and any(n.endswith(".partial") for n in names):
            break
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.fail("the archive run finished before it could be killed: make the folders bigger")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert all(fleet.course_dir("A233-2026B", u).is_dir() for u in A233_STUDENTS)  # nothing deleted yet

    report = Reconciler(fleet.catalog, fleet.backend, at=A233_ARCHIVED).step()
    assert report.errors == [] and all(r.ok for r in report.results), [r.message for r in report.results]
    assert [(r.action.kind.value, r.action.presentation) for r in report.results] == [
        ("archive", "A233-2026B"), ("delete", None)]

    names = sorted(os.listdir(out))
    assert names == sorted(f"{u}{s}" for u in A233_STUDENTS for s in (".tar.gz", ".manifest.json"))
    with fleet.ledger() as ledger:
        rows = ledger.for_presentation("A233-2026B")
        assert [r.student for r in rows] == A233_STUDENTS and all(r.ok and r.removed_at for r in rows)
    for user in A233_STUDENTS:
        manifest = json.loads((out / f"{user}.manifest.json").read_text())
        assert {f["path"]: f["sha256"] for f in manifest["files"]} == expected[user]
        assert not fleet.course_dir("A233-2026B", user).exists()
        assert not (fleet.storage / "home" / user / "A233-2026B").is_symlink()
        assert "A233-2026B" in (fleet.storage / "home" / user / workspace.STUB_NAME).read_text()
    assert _tree(fleet.course_dir("A233-2026B", "tom")) == tutor_before  # the team's files stay, unarchived
    retired = list((fleet.state / "retired").glob("a233-2026b-*"))
    assert len(retired) == 1 and (retired[0] / "jupyterhub.sqlite").is_file()  # the hub's db kept as a backup
    # Teardown is idempotent: nothing left to do, and running it again changes nothing.
    assert not diff(plan(fleet.backend.loaded.catalog, A233_ARCHIVED), fleet.backend.observe())
    run = fleet.cli("lifecycle", "run", at=A233_ARCHIVED)
    assert run.returncode == 0 and "No changes" in run.stdout, run.stdout + run.stderr


# -- TM351: read-only, corrupted archive, archived, restore ----------------------------------------------------


def test_tm351_read_only_readable_not_writable_team_exempt(fleet: Fleet) -> None:
    run = fleet.cli("lifecycle", "run", at=TM351_RO)
    assert run.returncode == 0, run.stdout + run.stderr
    notes = fleet.course_dir("TM351-2026J", "ana") / "notes.txt"
    assert _as_user("ana", "cat", str(notes)).stdout == NOTES
    assert _as_user("ana", "sh", "-c", f"echo x >> {notes}").returncode != 0
    assert _as_user("ana", "sh", "-c", f"rm -f {notes}").returncode != 0 or notes.exists()
    _write_as("ian", fleet.course_dir("TM351-2026J", "ian") / "solutions/week2.ipynb", b"{}")
    hub = json.loads((fleet.state / "hubs" / "tm351-2026j" / "hub.json").read_text())
    assert hub["spec"]["presentations"][0]["phase"] == "read-only"  # what the hub's banner and spawner read


def test_corrupted_archive_blocks_teardown_and_is_loud(fleet: Fleet) -> None:
    pres = fleet.pres("TM351-2026J", TM351_ARCHIVED)
    first = fleet.backend.archiving.archive(pres, teardown=False)  # archived and verified, nothing removed
    assert first.ok and sorted(first.archived) == ["ana", "ben"]
    ben = fleet.state / "archives" / "TM351-2026J" / "ben.tar.gz"
    data = bytearray(ben.read_bytes())
    data[len(data) // 2] ^= 0x01  # flip one bit
    ben.write_bytes(bytes(data))

    run = fleet.cli("lifecycle", "run", at=TM351_ARCHIVED)
    assert run.returncode != 0, run.stdout
    assert "ben" in run.stdout + run.stderr and "corrupt" in (run.stdout + run.stderr)
    # The closing line is built from what the run did (rich wraps it: compare words).
    assert "No course folder was removed." in " ".join(run.stderr.split())
    for user in ("ana", "ben"):
        assert fleet.course_dir("TM351-2026J", user).is_dir()  # all or nothing: no folder removed
    assert (fleet.state / "hubs" / "tm351-2026j").is_dir()  # and the hub not deleted
    status = fleet.cli("status", at=TM351_ARCHIVED)
    assert "ARCHIVE PROBLEM TM351-2026J/ben" in status.stderr, status.stdout + status.stderr


def test_next_run_rearchives_then_tears_down_and_leaves_a_stub(fleet: Fleet) -> None:
    m269_before = _tree(fleet.course_dir("M269-2026J", "ana"))
    team_before = {u: _tree(fleet.course_dir("TM351-2026J", u)) for u in ("tom", "ian")}
    ana_before = _tree(fleet.course_dir("TM351-2026J", "ana"))
    run = fleet.cli("lifecycle", "run", at=TM351_ARCHIVED)
    assert run.returncode == 0, run.stdout + run.stderr
    # Said before deleting: what the archives hold; and at the end, what was removed, each after its own check.
    said = " ".join(run.stdout.split())
    assert "TM351-2026J: the archives of 2 student(s) hold" in said
    assert said.index("student(s) hold") < said.index("2 course folder(s) removed")

    out = fleet.state / "archives" / "TM351-2026J"
    with tarfile.open(out / "ana.tar.gz") as tar:
        assert hashlib.sha256(tar.extractfile("notes.txt").read()).digest() == hashlib.sha256(NOTES).digest()
    manifest = json.loads((out / "ana.manifest.json").read_text())
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == ana_before
    with fleet.ledger() as ledger:
        rows = {r.student: r for r in ledger.for_presentation("TM351-2026J")}
    assert set(rows) == {"ana", "ben"}  # tutor and instructor are not archived as student work
    assert all(r.ok and r.removed_at and r.removed_at >= r.verified_at for r in rows.values())
    assert rows["ana"].sha256 == hashlib.sha256((out / "ana.tar.gz").read_bytes()).hexdigest()
    # Ben's damaged archive was not overwritten: his new one has its own name; the old one is kept as evidence.
    assert Path(rows["ben"].location).name == "ben.2.tar.gz" and (out / "ben.tar.gz").is_file()
    for user in ("ana", "ben"):
        assert not fleet.course_dir("TM351-2026J", user).exists()
        stub = (fleet.storage / "home" / user / workspace.STUB_NAME).read_text()
        assert "TM351-2026J" in stub and "/portal/archives/" in stub and "hubfleet archive restore" in stub
    assert _tree(fleet.course_dir("M269-2026J", "ana")) == m269_before  # the other presentation, untouched
    assert {u: _tree(fleet.course_dir("TM351-2026J", u)) for u in ("tom", "ian")} == team_before
    assert not (fleet.state / "hubs" / "tm351-2026j").exists()
    assert (next((fleet.state / "retired").glob("tm351-2026j-*")) / "jupyterhub.sqlite").is_file()
    assert fleet.cli("status", at=TM351_ARCHIVED).stderr == ""


def test_portal_serves_a_student_only_their_own_archives(fleet: Fleet) -> None:
    from types import SimpleNamespace

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from hubfleet.web.archives import router
    from hubfleet.web.auth import require_user

    app = FastAPI()
    app.state.source = SimpleNamespace(state=fleet.state)
    app.include_router(router, prefix="/portal")
    app.dependency_overrides[require_user] = lambda: "ana"
    client = TestClient(app)
    page = client.get("/portal/archives/")
    assert page.status_code == 200 and "TM351-2026J" in page.text and "A233" not in page.text
    own = client.get("/portal/archives/TM351-2026J/ana.tar.gz")
    assert own.status_code == 200
    assert own.content == (fleet.state / "archives" / "TM351-2026J" / "ana.tar.gz").read_bytes()
    assert client.get("/portal/archives/TM351-2026J/ben.tar.gz").status_code == 403
    assert client.get("/portal/archives/A233-2026B/ana.tar.gz").status_code == 404
    assert client.get("/portal/archives/TM351-2026J/..%2F..%2Farchives.sqlite").status_code in (403, 404)
    app.dependency_overrides.clear()
    assert client.get("/portal/archives/api").status_code == 401


def test_restore_into_a_new_presentation_gives_the_same_hashes(fleet: Fleet) -> None:
    listed = fleet.cli("archive", "list", "--presentation", "TM351-2026J")
    assert listed.returncode == 0 and "ana" in listed.stdout and "ben" in listed.stdout, listed.stderr
    run = fleet.cli("archive", "restore", "--presentation", "TM351-2026J", "--user", "ana", "--into", "M269-2026J")
    assert run.returncode == 0, run.stdout + run.stderr
    restored = fleet.course_dir("M269-2026J", "ana") / "from-TM351-2026J"
    manifest = json.loads((fleet.state / "archives" / "TM351-2026J" / "ana.manifest.json").read_text())
    assert _tree(restored) == {f["path"]: f["sha256"] for f in manifest["files"]}
    # Modes and owners as the student had them before the freeze (not the frozen 0440/0550, not root's).
    for rel, mode in (("notes.txt", 0o644), ("data", 0o755), ("data/rivers.csv", 0o644)):
        st = (restored / rel).lstat()
        assert st.st_mode & 0o7777 == mode, (rel, oct(st.st_mode))
        if ROOT:
            assert st.st_uid == workspace.existing_owner("ana", PREFIX).uid, rel
    _write_as("ana", restored / "notes.txt", b"carrying on next year\n")  # hers again, and writable
    again = fleet.cli("archive", "restore", "--presentation", "TM351-2026J", "--user", "ana", "--into", "M269-2026J")
    assert again.returncode != 0  # never over existing work


# -- purge ----------------------------------------------------------------------------------------------------------


def test_purge_deletes_archives_after_retention_and_records_it(fleet: Fleet) -> None:
    m269_before = _tree(fleet.course_dir("M269-2026J", "ana"))
    team_before = _tree(fleet.course_dir("TM351-2026J", "ian"))
    run = fleet.cli("lifecycle", "run", at=PURGED)
    assert run.returncode == 0, run.stdout + run.stderr
    assert not (fleet.state / "archives" / "TM351-2026J").exists()
    assert not (fleet.state / "archives" / "A233-2026B").exists()
    with fleet.ledger() as ledger:
        assert all(r.purged_at for r in ledger.all())
        assert ledger.presentation_state("TM351-2026J") == (True, True)
    assert "deleted on" in (fleet.storage / "home" / "ben" / workspace.STUB_NAME).read_text()
    assert _tree(fleet.course_dir("M269-2026J", "ana")) == m269_before
    assert _tree(fleet.course_dir("TM351-2026J", "ian")) == team_before  # the team's material is exempt
    again = fleet.cli("lifecycle", "run", at=PURGED)
    assert again.returncode == 0 and "No changes" in again.stdout, again.stdout + again.stderr
