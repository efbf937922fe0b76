"""End-of-presentation archives: what an operator relies on before deleting student data."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hubfleet.lifecycle import archive as archive_mod
from hubfleet.lifecycle.archive import UnsafeArchive, archive_folder, archive_many, verify_archive
from hubfleet.lifecycle.restoring import restore
from hubfleet.lifecycle.ledger import Ledger, LedgerError

ARCHIVE_FILE = Path(archive_mod.__file__)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_course_folder(root: Path, seed: int = 1, random_bytes: int = 50_000) -> Path:
    rng = random.Random(seed)
    (root / "notebooks").mkdir(parents=True)
    (root / "data" / "raw").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "notebooks" / "01-intro.ipynb").write_text(json.dumps({"cells": ["print(1)"] * 200}))
    (root / "data" / "rivers.csv").write_text("".join(f"river{i},{rng.randint(1, 999)}\n" for i in range(5000)))
    (root / "data" / "raw" / "photo.png").write_bytes(rng.randbytes(random_bytes))
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "notes.txt").write_text("café ✓ non-ascii name\n")
    (root / "ünïcode name.txt").write_text("x")
    return root


def disk_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_course_folder(tmp_path / "alice")


def test_roundtrip_manifest_lists_every_file_with_its_sha256(folder: Path, tmp_path: Path) -> None:
    result = archive_folder(folder, tmp_path / "out", "TM351-2026J-alice")
    assert result.ok and not result.resumed
    doc = json.loads(Path(result.manifest).read_text())
    assert {f["path"]: f["sha256"] for f in doc["files"]} == disk_hashes(folder)
    assert doc["totals"]["files"] == 6
    assert doc["totals"]["bytes"] == sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert doc["totals"]["archive_sha256"] == sha(Path(result.archive))
    assert {f["path"]: f["mode"] for f in doc["files"]}["run.sh"] == "0755"
    check = verify_archive(Path(result.archive), Path(result.manifest))
    assert check.ok and check.files == 6 and check.archive_sha256_ok
    # An operator can open it with plain tar.
    listing = subprocess.run(["tar", "tzf", result.archive], capture_output=True, text=True, check=True).stdout
    assert "data/raw/photo.png" in listing.splitlines()


def test_same_folder_gives_identical_archive(folder: Path, tmp_path: Path) -> None:
    a = archive_folder(folder, tmp_path / "a", "x")
    b = archive_folder(folder, tmp_path / "b", "x")
    assert sha(Path(a.archive)) == sha(Path(b.archive))


def test_flipped_byte_is_detected(folder: Path, tmp_path: Path) -> None:
    result = archive_folder(folder, tmp_path / "out", "alice")
    data = bytearray(Path(result.archive).read_bytes())
    data[len(data) // 2] ^= 0x01
    Path(result.archive).write_bytes(bytes(data))
    check = verify_archive(Path(result.archive), Path(result.manifest))
    assert not check.ok
    assert not check.archive_sha256_ok


def test_flipped_byte_in_gzip_trailer_is_detected(folder: Path, tmp_path: Path) -> None:
    result = archive_folder(folder, tmp_path / "out", "alice")
    data = bytearray(Path(result.archive).read_bytes())
    data[-6] ^= 0xFF  # inside the CRC32: only gzip's own check sees this before the archive hash
    Path(result.archive).write_bytes(bytes(data))
    check = verify_archive(Path(result.archive), Path(result.manifest))
    assert not check.ok and check.error and "unreadable archive" in check.error


def test_truncated_archive_fails_verification(folder: Path, tmp_path: Path) -> None:
    result = archive_folder(folder, tmp_path / "out", "alice")
    data = Path(result.archive).read_bytes()
    Path(result.archive).write_bytes(data[: len(data) // 2])
    check = verify_archive(Path(result.archive), Path(result.manifest))
    assert not check.ok and check.error and "truncated" in check.error


def test_edited_manifest_is_reported_as_mismatch(folder: Path, tmp_path: Path) -> None:
    result = archive_folder(folder, tmp_path / "out", "alice")
    doc = json.loads(Path(result.manifest).read_text())
    doc["files"][0]["sha256"] = "0" * 64
    doc["files"].append({"path": "lost.txt", "size": 1, "sha256": "0" * 64, "mode": "0644"})
    Path(result.manifest).write_text(json.dumps(doc))
    check = verify_archive(Path(result.archive), Path(result.manifest))
    assert not check.ok
    assert check.mismatched == [doc["files"][0]["path"]] and check.missing == ["lost.txt"]


def test_cli_verify_exits_nonzero_on_corruption(folder: Path, tmp_path: Path) -> None:
    result = archive_folder(folder, tmp_path / "out", "alice")
    cmd = [sys.executable, str(ARCHIVE_FILE), "verify", "--archive", result.archive, "--manifest", result.manifest]
    assert subprocess.run(cmd, capture_output=True, check=False).returncode == 0
    with open(result.archive, "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert json.loads(done.stdout)["ok"] is False


def test_restore_gives_back_the_same_files(folder: Path, tmp_path: Path) -> None:
    (folder / "notebooks" / "latest.ipynb").symlink_to("01-intro.ipynb")
    result = archive_folder(folder, tmp_path / "out", "alice")
    target = tmp_path / "restored"
    check = restore(Path(result.archive), Path(result.manifest), target)
    assert check.ok
    assert disk_hashes(target) == disk_hashes(folder)
    assert (target / "empty-dir").is_dir()
    assert os.readlink(target / "notebooks" / "latest.ipynb") == "01-intro.ipynb"
    assert os.access(target / "run.sh", os.X_OK)


def test_symlink_to_another_students_files_is_archived_as_a_link_not_as_content(folder: Path, tmp_path: Path) -> None:
    bob = make_course_folder(tmp_path / "bob", seed=2)
    (folder / "bobs-work").symlink_to(bob / "notebooks")
    (folder / "bobs-data.csv").symlink_to(bob / "data" / "rivers.csv")
    result = archive_folder(folder, tmp_path / "out", "alice")
    doc = json.loads(Path(result.manifest).read_text())
    assert doc["skipped"] == []
    assert {s["path"]: s["target"] for s in doc["symlinks"]} == {
        "bobs-work": str(bob / "notebooks"), "bobs-data.csv": str(bob / "data" / "rivers.csv")}
    with tarfile.open(result.archive) as tar:
        members = {m.name: m for m in tar.getmembers() if m.name.startswith("bobs")}
    assert set(members) == {"bobs-work", "bobs-data.csv"} and all(m.issym() for m in members.values())
    assert not any(n.startswith("bobs-work/") for n in members)  # never entered
    assert result.ok


def _crafted(tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> tuple[Path, Path]:
    """A hostile archive with a manifest that matches it exactly, so only the path checks can stop it."""
    arc = tmp_path / "evil.tar.gz"
    with tarfile.open(arc, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    files = [{"path": i.name, "size": len(d), "sha256": hashlib.sha256(d).hexdigest(), "mode": "0644"}
             for i, d in members if d is not None]
    links = [{"path": i.name, "target": i.linkname} for i, d in members if d is None]
    man = tmp_path / "evil.manifest.json"
    man.write_text(json.dumps({"files": files, "symlinks": links, "dirs": [],
                               "totals": {"files": len(files), "archive_sha256": sha(arc)}}))
    return arc, man


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    return info, data


@pytest.mark.parametrize("bad", ["../escaped.txt", "sub/../../escaped.txt", "/tmp/hubfleet-abs-escape.txt"])
def test_path_traversal_in_crafted_tar_is_refused(tmp_path: Path, bad: str) -> None:
    arc, man = _crafted(tmp_path, [_file("ok.txt", b"fine"), _file(bad, b"pwned")])
    assert verify_archive(arc, man).unsafe == [bad]
    target = tmp_path / "restore" / "here"
    with pytest.raises(UnsafeArchive):
        restore(arc, man, target)
    assert not (tmp_path / "restore" / "escaped.txt").exists()
    assert not Path("/tmp/hubfleet-abs-escape.txt").exists()
    assert not target.exists() or not any(target.iterdir())  # nothing written from a refused archive


def test_link_escaping_target_is_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("etc")
    link.type, link.linkname = tarfile.SYMTYPE, "../../../etc"
    arc, man = _crafted(tmp_path, [(link, None), _file("etc/passwd", b"root::0:0")])
    with pytest.raises(UnsafeArchive):
        restore(arc, man, tmp_path / "target")


def test_resume_skips_complete_archives_and_replaces_leftovers(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = archive_folder(folder, out, "alice")
    again = archive_folder(folder, out, "alice")
    assert again.resumed and again.ok and again.sha256 == first.sha256
    # What a kill -9 can leave: a half-written .partial, or an archive renamed without its manifest yet.
    Path(first.manifest).unlink()
    (out / "alice.tar.gz.partial").write_bytes(b"half an archive")
    (out / "alice.manifest.json.partial").write_text("{")
    (out / "alice.tar.gz.999999999.0bad.partial").write_bytes(b"a killed run's")  # no such pid: its writer is gone
    redo = archive_folder(folder, out, "alice")
    assert redo.ok and not redo.resumed
    assert sorted(os.listdir(out)) == ["alice.manifest.json", "alice.tar.gz"]
    # A finished archive that no longer verifies is never overwritten: kept, and the caller told to use a new name.
    with open(out / "alice.tar.gz", "r+b") as fh:
        fh.seek(200)
        fh.write(b"\xff\xfe")
    before = sha(out / "alice.tar.gz")
    kept = archive_folder(folder, out, "alice")
    assert kept.kept and not kept.ok and "never overwritten" in (kept.error or "")
    assert sha(out / "alice.tar.gz") == before


def test_archive_many_archives_and_verifies_each_folder(tmp_path: Path) -> None:
    jobs = [(make_course_folder(tmp_path / "src" / u, seed=i), tmp_path / "out", u)
            for i, u in enumerate(["alice", "bob", "carol"])]
    jobs.append((tmp_path / "src" / "ghost", tmp_path / "out", "ghost"))  # a student without a folder
    results = archive_many(jobs, workers=2)
    assert [r.name for r in results] == ["alice", "bob", "carol", "ghost"]
    assert all(r.ok and r.verify and r.verify.files == 6 for r in results[:3])
    assert not results[3].ok and "missing" in (results[3].error or "")


def _run_many(src_root: Path, dest: Path) -> subprocess.Popen:
    cmd = [sys.executable, str(ARCHIVE_FILE), "many", "--src-root", str(src_root), "--dest", str(dest),
           "--workers", "2"]
    # Own session, so SIGKILL can take the whole process group (workers too), like a pod being killed.
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def test_kill_9_mid_run_then_rerun_gives_the_same_archives(tmp_path: Path) -> None:
    src = tmp_path / "homes"
    for i in range(24):
        make_course_folder(src / f"student{i:02d}", seed=i, random_bytes=3_000_000)
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert _run_many(src, reference).wait() == 0

    proc = _run_many(src, killed)
    deadline = time.monotonic() + 120  # a wait, not a speed assertion
    while time.monotonic() < deadline and proc.poll() is None:
        names = os.listdir(killed) if killed.exists() else []
        if any(n.endswith(".manifest.json") for n in names) and any(n.endswith(".partial") for n in names):
            break
        time.sleep(0.005)
    finished_early = proc.poll() is not None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if finished_early:
        pytest.fail("the run finished before it could be killed: generate bigger folders")

    # Whatever looks complete after the kill (a manifest) is complete.
    for man in killed.glob("*.manifest.json"):
        assert verify_archive(man.with_name(man.name.replace(".manifest.json", ".tar.gz")), man).ok

    rerun = _run_many(src, killed)
    out, _ = rerun.communicate()
    assert rerun.returncode == 0
    assert sorted(os.listdir(killed)) == sorted(os.listdir(reference))
    assert not list(killed.glob("*.partial"))
    for arc in reference.glob("*.tar.gz"):
        assert sha(killed / arc.name) == sha(arc)
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert len(lines) == 24 and all(r["ok"] for r in lines)


def test_two_runs_at_once_do_not_clobber_each_other(tmp_path: Path) -> None:
    src = tmp_path / "homes"
    for i in range(6):
        make_course_folder(src / f"student{i}", seed=i, random_bytes=1_500_000)
    runs = [_run_many(src, tmp_path / "out") for _ in range(2)]
    outs = [r.communicate() for r in runs]
    assert [r.returncode for r in runs] == [0, 0], outs
    assert not list((tmp_path / "out").glob("*.partial"))
    for man in (tmp_path / "out").glob("*.manifest.json"):
        assert verify_archive(man.with_name(man.name.replace(".manifest.json", ".tar.gz")), man).ok


def test_ledger_roundtrip(tmp_path: Path) -> None:
    t0 = datetime(2027, 7, 10, 9, 0, tzinfo=timezone.utc)
    state = tmp_path / "state"
    state.mkdir()
    with Ledger(state) as ledger:
        ledger.record("TM351-2026J", "alice", "s3://archives/TM351-2026J/alice.tar.gz", "a" * 64, 1234,
                      created_at=t0)
        ledger.record("TM351-2026J", "bob", "/srv/archives/bob.tar.gz", "b" * 64, 99, created_at=t0)
        ledger.record("M269-2026J", "alice", "/srv/archives/m269-alice.tar.gz", "c" * 64, 7, created_at=t0)
        assert not ledger.verified("TM351-2026J", "alice")
        with pytest.raises(LedgerError, match="not verified"):
            ledger.mark_purged("TM351-2026J", "alice")
        with pytest.raises(LedgerError, match="not the recorded"):
            ledger.mark_verified("TM351-2026J", "alice", sha256="f" * 64)
        ledger.mark_verified("TM351-2026J", "alice", sha256="a" * 64, at=t0 + timedelta(minutes=5))
        ledger.mark_purged("TM351-2026J", "alice", at=t0 + timedelta(days=365))
        with pytest.raises(LedgerError, match="no archive recorded"):
            ledger.mark_purged("TM351-2026J", "nobody")

    with Ledger(state / "archives.sqlite") as ledger:  # persisted, reopened by file path
        assert ledger.verified("TM351-2026J", "alice") and not ledger.verified("TM351-2026J", "bob")
        rows = ledger.for_presentation("TM351-2026J")
        assert [r.student for r in rows] == ["alice", "bob"]
        assert rows[0].verified_at == t0 + timedelta(minutes=5)
        assert rows[0].purged_at == t0 + timedelta(days=365)
        assert [r.presentation for r in ledger.for_student("alice")] == ["M269-2026J", "TM351-2026J"]
        # A new archive with different content voids the old verification.
        ledger.record("TM351-2026J", "alice", "/new.tar.gz", "d" * 64, 5)
        assert not ledger.verified("TM351-2026J", "alice")
        # One row per archive file: the old one stays (superseded), and a recorded file is never re-recorded as
        # different content.
        assert [(r.location, r.superseded) for r in ledger.for_student("alice") if r.presentation == "TM351-2026J"] == [
            ("s3://archives/TM351-2026J/alice.tar.gz", True), ("/new.tar.gz", False)]
        with pytest.raises(LedgerError, match="never overwritten"):
            ledger.record("TM351-2026J", "alice", "/new.tar.gz", "e" * 64, 5)

    mode = sqlite3.connect(state / "archives.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_highly_compressible_file_roundtrips(tmp_path: Path) -> None:
    # 30 MB of zeros is ~30 KB compressed: verify must inflate it piecewise, not all at once.
    src = tmp_path / "carol"
    src.mkdir()
    with open(src / "disk.img", "wb") as fh:
        fh.truncate(30_000_000)
    result = archive_folder(src, tmp_path / "out", "carol")
    assert result.ok and result.archive_bytes < 100_000
    assert restore(Path(result.archive), Path(result.manifest), tmp_path / "back").ok
    assert (tmp_path / "back" / "disk.img").stat().st_size == 30_000_000
