"""Fault injection on the archive phase: real folders, real processes, real ``kill -9``, real bit flips.

Each case builds a small presentation (four students, every kind of entry), runs one archive phase as its own
process with a fault set to strike at one step (``hubfleet.lifecycle.faultpoints``), checks what the fault left,
then runs once more without a fault and checks the end state:

- after the fault: every student's files are either still in their folder (content, type, link target) or in a
  verified archive that restores to the original, hash for hash, mode for mode;
- after the next run: every folder is gone, each into a verified archive that restores to the original, and no
  archive file that existed after the fault was changed or deleted (never overwritten);
- ``kill -9`` of only the main process: none of its pool's workers outlives it.

Both backends' code paths run: the local backend's ``LocalArchiving`` (``driver.py``), and the Kubernetes archive
Job's program run from the files its ConfigMap ships (``python -S``: no site-packages, only what the Job gets).
"""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubfleet.backends.kubernetes.archive_job import SHIPPED, shipped_code
from hubfleet.catalog.naming import storage_name
from hubfleet.lifecycle import faultpoints
from hubfleet.lifecycle.ledger import Ledger
from hubfleet.lifecycle.restoring import restore
from hubfleet.lifecycle.store import manifest_location

KEY = "TM351-2026J"
AT = "2027-07-15"  # TM351-2026J ended 2027-06-10: read-only for 30 days, then archived
STUDENTS = ["ana", "ben", "cat", "d.smith@ou"]  # an e-mail login: stored as naming.storage_name, never as typed
DRIVER = Path(__file__).with_name("driver.py")
CORRUPT = [(s, "corrupt") for s in ("write", "verify", "ledger", "stub")]  # between archive write and deletion
KILLS = [(s, a) for s in faultpoints.STEPS for a in ("kill-all", "kill-main")]
FAULTS = CORRUPT + KILLS


def _student_tree(folder: Path, seed: int) -> None:
    """Every kind of entry a student's folder can hold."""
    (folder / "data").mkdir(parents=True)
    (folder / "empty-dir").mkdir()
    (folder / "notes.txt").write_text(f"student {seed}: week 1 normal forms\n")
    (folder / "data" / "blob.bin").write_bytes(os.urandom(700_000 + seed * 1000))
    os.link(folder / "data" / "blob.bin", folder / "data" / "same-blob.bin")  # one file, two names
    (folder / "empty.txt").write_bytes(b"")
    (folder / "ünïcode ✓ naïve.md").write_text("ø\n")
    for name, mode in (("run.sh", 0o755), ("secret.txt", 0o600), ("odd.txt", 0o604)):
        (folder / name).write_text(name)
        (folder / name).chmod(mode)
    (folder / "link-abs").symlink_to(folder / "notes.txt")  # absolute, to a file inside
    (folder / "link-out").symlink_to("../../../../etc/hostname")  # leaves the folder
    (folder / "dangling").symlink_to("nowhere/at/all")
    (folder / "data-link").symlink_to("data")


def tree(root: Path, modes: bool = True) -> dict[str, tuple]:
    """Every entry below root: type, content hash or link target, mode, link count (hard links)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames, dfd in os.fwalk(root, follow_symlinks=False):
        rel = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            path = name if rel == "." else f"{rel}/{name}"
            if path == ".hubfleet-read-only":
                continue
            st_ = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            mode = stat.S_IMODE(st_.st_mode) if modes else None
            if stat.S_ISLNK(st_.st_mode):
                out[path] = ("link", os.readlink(name, dir_fd=dfd))
            elif stat.S_ISDIR(st_.st_mode):
                out[path] = ("dir", mode)
            else:
                fd = os.open(name, os.O_RDONLY, dir_fd=dfd)
                with os.fdopen(fd, "rb") as fh:
                    out[path] = ("file", hashlib.sha256(fh.read()).hexdigest(), mode, st_.st_nlink)
    return out


def tree_without_modes(t: dict[str, tuple]) -> dict[str, tuple]:
    return {k: ("dir", None) if v[0] == "dir" else ("file", v[1], None, v[3]) if v[0] == "file" else v
            for k, v in t.items()}


@dataclass
class World:
    root: Path
    backend: str  # "local" | "job"

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    def folder(self, user: str) -> Path:
        # Both backends see homes under storage names (the Job decodes them back to usernames with naming.username_of).
        return self.storage / "home" / storage_name(user) / KEY

    @property
    def archives(self) -> Path:
        return (self.root / "state" / "archives" if self.backend == "local" else self.root / "archives") / KEY

    def ledger(self) -> Ledger:
        if self.backend == "local":
            return Ledger(self.root / "state")
        return Ledger(self.archives / ".journal.sqlite", wal=False)

    def argv(self) -> list[str]:
        if self.backend == "local":
            return [sys.executable, str(DRIVER), str(self.root / "catalog"), str(self.root / "state"),
                    str(self.storage), AT, KEY]
        return [sys.executable, "-S", "-m", "hubfleet.lifecycle.jobrunner", "archive", "--presentation", KEY,
                "--layout", "personal-subfolder", "--src-root", str(self.storage), "--course-folder", KEY,
                "--dest", str(self.root / "archives"), "--exclude", "tom", "--teardown",
                "--portal-url", "https://hubs.example/portal/archives/", "--namespace", "tm351-2026j",
                "--marker-out", str(self.root / "marker.json"), "--workers", "2"]

    def env(self, fault: tuple[str, str] | None, n: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUBFLEET_FAULT")}
        if self.backend == "job":  # only what the Job's ConfigMap ships, laid out as in the pod
            env["PYTHONPATH"] = str(self.root / "code")
        if fault:
            env[faultpoints.ENV] = f"{fault[0]}:{fault[1]}"
            env[faultpoints.ONCE] = str(self.root / f"struck-{n}")
        return env


def make_world(root: Path, backend: str) -> tuple[World, dict[str, dict]]:
    world = World(root, backend)
    (root / "catalog" / "courses").mkdir(parents=True)
    (root / "catalog" / "fleet.yaml").write_text(textwrap.dedent("""\
        fleet:
          name: faults-test
          topology: per-presentation
          lifecycle: {provision_days_before_start: 14, read_only_days_after_end: 30, retention_days: 365}
        """))
    (root / "catalog" / "courses" / "TM351.yaml").write_text(textwrap.dedent(f"""\
        code: TM351
        title: Data management
        team: {{tutors: [tom]}}
        presentations:
          - {{id: 2026J, start: 2026-10-03, end: 2027-06-10, enrolment: [{{users: [{", ".join(STUDENTS)}]}}]}}
        """))
    (root / "state").mkdir()
    for i, user in enumerate([*STUDENTS, "tom"]):
        _student_tree(world.folder(user), i)
    if backend == "job":
        code = shipped_code()
        for key, rel in SHIPPED.items():
            (root / "code" / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / "code" / rel).write_text(code[key])
    return world, {u: tree(world.folder(u)) for u in STUDENTS}


def _session_alive(sid: int) -> list[int]:
    """Processes of a session that are still running (zombies excluded: they run nothing)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_bytes().rpartition(b")")[2].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] not in (b"Z", b"X"):
            alive.append(int(entry.name))
    return alive


@dataclass
class Run:
    code: int
    output: str
    leftovers: list[int]


def run(world: World, fault: tuple[str, str] | None = None, n: int = 0) -> Run:
    log = world.root / f"run-{n}.log"
    with open(log, "wb") as fh:  # a file, not a pipe: an orphaned worker must not hold the test up
        proc = subprocess.Popen(world.argv(), stdout=fh, stderr=subprocess.STDOUT, env=world.env(fault, n),
                                start_new_session=True, stdin=subprocess.DEVNULL)
        code = proc.wait(timeout=300)
    leftovers = _session_alive(proc.pid)
    deadline = time.monotonic() + 30  # the kernel delivers the parent-death signal promptly; this is a wait
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.05)
        leftovers = _session_alive(proc.pid)
    for pid in leftovers:  # clean up what the test found, then fail on it below
        os.kill(pid, signal.SIGKILL)
    return Run(code, log.read_text(errors="replace"), leftovers)


def restored_tree(world: World, location: str, into: Path) -> dict[str, tuple]:
    check = restore(Path(location), Path(manifest_location(location)), into)
    assert check.ok, check
    return tree(into)


def assert_nothing_lost(world: World, original: dict[str, dict], scratch: Path) -> None:
    """Every student's files are in their folder as they were, or in a verified archive that restores to them."""
    with world.ledger() as ledger:
        rows = {u: ledger.current(KEY, u) for u in STUDENTS}
    for user in STUDENTS:
        folder, row = world.folder(user), rows[user]
        # The freeze before archiving changes modes (read-only), so a folder still there is compared without them.
        intact = folder.is_dir() and tree(folder, modes=False) == tree_without_modes(original[user])
        if intact:
            continue
        assert row is not None and row.verified_at and row.removing_at, (
            f"{user}: folder changed or gone without a verified archive and a journalled removal: {row}")
        assert restored_tree(world, row.location, scratch / user) == original[user], user


def archive_files(world: World) -> dict[str, str]:
    if not world.archives.is_dir():
        return {}
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in world.archives.glob("*.tar.gz")}


def check_fault_then_recovery(root: Path, backend: str, faults: list[tuple[str, str]]) -> None:
    world, original = make_world(root, backend)
    for n, fault in enumerate(faults):
        before = archive_files(world)
        got = run(world, fault, n)
        assert got.leftovers == [], f"workers outlived the run's main process: {got.leftovers}\n{got.output}"
        if not (world.root / f"struck-{n}").exists():
            # Only a later fault may miss: its step may be behind the run already (nothing left to write).
            assert n > 0, f"the fault {fault} never struck:\n{got.output}"
            assert got.code == 0, got.output
        elif fault[1] == "corrupt":
            assert got.code == 1, got.output  # the damage is found and reported, not deleted over
        else:
            assert got.code == -signal.SIGKILL, got.output
        assert_nothing_lost(world, original, root / f"scratch-{n}")
        after = archive_files(world)
        for name, sha in before.items():  # a later run never rewrites an archive file, whatever it holds
            if fault[1] != "corrupt":
                assert after.get(name) == sha, f"{name} was overwritten or deleted"
    kept = archive_files(world)
    final = run(world, None, len(faults))
    assert final.code == 0, final.output
    assert archive_files(world).items() >= kept.items(), "an archive file was overwritten or deleted"
    assert not list(world.archives.glob("*.partial")), "a killed run's .partial files were left behind"
    with world.ledger() as ledger:
        rows = {u: ledger.current(KEY, u) for u in STUDENTS}
    for user in STUDENTS:
        assert not world.folder(user).exists(), user
        assert rows[user].ok and rows[user].removed_at, rows[user]
        assert Path(rows[user].location).name.split(".")[0] == storage_name(user)  # the ledger keeps the username
        assert restored_tree(world, rows[user].location, root / "final" / user) == original[user], user
    assert tree(world.folder("tom")) == tree(world.folder("tom"))  # the tutor's folder: exempt, still there
    assert world.folder("tom").is_dir()


@pytest.mark.parametrize("backend", ["local", "job"])
@pytest.mark.parametrize("fault", FAULTS, ids=[f"{s}-{a}" for s, a in FAULTS])
def test_one_fault_at_each_step_then_one_more_run(tmp_path: Path, backend: str, fault: tuple[str, str]) -> None:
    check_fault_then_recovery(tmp_path, backend, [fault])


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(faults=st.lists(st.sampled_from(FAULTS), min_size=2, max_size=3), backend=st.sampled_from(["local", "job"]))
def test_faults_one_after_another_then_one_more_run(tmp_path_factory, faults, backend) -> None:
    check_fault_then_recovery(tmp_path_factory.mktemp("faults"), backend, faults)


@pytest.mark.parametrize("backend", ["local", "job"])
def test_interrupted_removal_is_finished_never_archived_again(tmp_path: Path, backend: str) -> None:
    """Issue 15, item 2: kill -9 half-way through removing a folder, then the archive is found damaged. The remnant
    must not be archived again over the only full copy: it is kept, the archive file is left as it is, and the
    problem is loud. Once the archive is back (from a backup of the store), the next run finishes the removal."""
    world, original = make_world(tmp_path, backend)
    assert run(world, ("delete", "kill-all"), 0).code == -signal.SIGKILL
    with world.ledger() as ledger:
        (pending,) = [r for r in (ledger.current(KEY, u) for u in STUDENTS) if r and r.removal_pending]
    remnant = world.folder(pending.student)
    assert remnant.is_dir() and tree(remnant, modes=False) != tree_without_modes(original[pending.student])
    remnant_before = tree(remnant, modes=False)
    archive = Path(pending.location)
    good = archive.read_bytes()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0x01
    archive.write_bytes(bytes(damaged))
    files_before = archive_files(world)

    got = run(world, None, 1)
    assert got.code == 1 and pending.student in got.output and "interrupted" in got.output, got.output
    assert tree(remnant, modes=False) == remnant_before  # kept as it was: neither archived nor deleted
    assert archive_files(world) == {**files_before, **{k: v for k, v in archive_files(world).items()
                                                      if k not in files_before
                                                      and not k.startswith(storage_name(pending.student))}}
    assert archive.read_bytes() == bytes(damaged)  # the evidence is not overwritten
    # and the remnant got no archive of its own
    assert not list(world.archives.glob(f"{storage_name(pending.student)}.*.tar.gz"))
    with world.ledger() as ledger:
        row = ledger.current(KEY, pending.student)
        assert row.id == pending.id and row.problem and row.removal_pending

    archive.write_bytes(good)  # the platform team restores the file from a backup of the archive store
    again = run(world, None, 2)
    assert again.code == 0, again.output
    assert not remnant.exists()
    with world.ledger() as ledger:
        row = ledger.current(KEY, pending.student)
    assert row.id == pending.id and row.ok and row.removed_at
    assert restored_tree(world, row.location, tmp_path / "back") == original[pending.student]
