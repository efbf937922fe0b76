"""Exact archives: a folder holding every kind of entry goes into an archive and comes back equal (content, type,
mode, link target, hard links, and owners as root), in place for every storage layout and extra mount, and into a
new presentation with ``--into``. A restore that fails half-way leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import stat
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from hubfleet.backends.local import workspace
from hubfleet.backends.local.archiving import LocalArchiving
from hubfleet.backends.local.fleetstate import FleetPaths
from hubfleet.catalog import load_catalog
from hubfleet.lifecycle.archive import archive_folder
from hubfleet.lifecycle.ledger import Ledger
from hubfleet.lifecycle.restoring import restore
from hubfleet.plan import plan

ROOT = os.geteuid() == 0
BIG = 100 * 1024 * 1024


def every_kind(folder: Path, big: bool = False) -> None:
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / "empty-dir").mkdir()
    (folder / "notes.txt").write_text("week 1\n")
    (folder / "zero.bin").write_bytes(b"")
    (folder / "sub" / "data.bin").write_bytes(os.urandom(300_000))
    os.link(folder / "sub" / "data.bin", folder / "hard-copy.bin")
    (folder / "ünïcode — ✓ 名前.txt").write_text("ø")
    for name, mode in (("run.sh", 0o755), ("private", 0o600), ("odd", 0o751), ("locked", 0o400)):
        (folder / name).write_text(name)
        (folder / name).chmod(mode)
    (folder / "sub" / "deeper").chmod(0o705)
    (folder / "sticky-dir").mkdir()
    (folder / "sticky-dir").chmod(0o1777)
    (folder / "abs-inside").symlink_to(folder / "notes.txt")  # absolute, pointing inside
    (folder / "escaping").symlink_to("../../../etc/passwd")
    (folder / "abs-outside").symlink_to("/etc/hostname")
    (folder / "dangling").symlink_to("does/not/exist")
    (folder / "dir-link").symlink_to("sub")
    (folder / "sub" / "up").symlink_to("..")
    if big:
        with open(folder / "big.img", "wb") as fh:  # 100 MB, sparse: fast to make, all of it read and archived
            fh.truncate(BIG)
    if ROOT:
        os.chown(folder / "notes.txt", 4242, 4343)
        os.chown(folder / "abs-inside", 4244, 4345, follow_symlinks=False)
        os.chown(folder / "sub", 4246, 4347)


def tree(root: Path, owners: bool = ROOT) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames, dfd in os.fwalk(root, follow_symlinks=False):
        rel = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            path = name if rel == "." else f"{rel}/{name}"
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            who = (st.st_uid, st.st_gid) if owners else ()
            if stat.S_ISLNK(st.st_mode):
                out[path] = ("link", os.readlink(name, dir_fd=dfd), *who)
            elif stat.S_ISDIR(st.st_mode):
                out[path] = ("dir", stat.S_IMODE(st.st_mode), *who)
            else:
                sha = hashlib.sha256()
                fd = os.open(name, os.O_RDONLY, dir_fd=dfd)
                with os.fdopen(fd, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        sha.update(chunk)
                out[path] = ("file", sha.hexdigest(), stat.S_IMODE(st.st_mode), st.st_nlink, *who)
    return out


def test_every_kind_of_entry_roundtrips_exactly(tmp_path: Path) -> None:
    src = tmp_path / "alice"
    src.mkdir()
    every_kind(src, big=True)
    before = tree(src)
    result = archive_folder(src, tmp_path / "out", "alice")
    assert result.ok and result.skipped == []
    assert result.holds == {"files": 9, "dirs": 4, "symlinks": 6, "hardlinks": 1}
    with tarfile.open(result.archive) as tar:
        kinds = {m.name: m.type for m in tar.getmembers()}
    assert kinds["escaping"] == kinds["abs-outside"] == kinds["dangling"] == tarfile.SYMTYPE  # links, not content
    assert tarfile.LNKTYPE in (kinds["hard-copy.bin"], kinds["sub/data.bin"])  # the file is stored once
    back = tmp_path / "back"
    check = restore(Path(result.archive), Path(result.manifest), back)
    assert check.ok, check
    assert tree(back) == before


def test_what_an_archive_cannot_hold_is_listed(tmp_path: Path) -> None:
    import socket

    src = tmp_path / "s"
    src.mkdir()
    (src / "keep.txt").write_text("x")
    os.mkfifo(src / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "kernel.sock"))
    try:
        result = archive_folder(src, tmp_path / "out", "s")
    finally:
        sock.close()
    assert result.ok
    reasons = {s["path"]: s["reason"].split(":")[0] for s in result.skipped}
    assert reasons == {"pipe": "a fifo", "kernel.sock": "a socket"}


def _catalog(root: Path) -> Path:
    (root / "courses").mkdir(parents=True)
    (root / "fleet.yaml").write_text(textwrap.dedent("""\
        fleet:
          name: roundtrip-test
          topology: per-presentation
          lifecycle: {provision_days_before_start: 14, read_only_days_after_end: 30, retention_days: 365}
        """))
    (root / "courses" / "TM351.yaml").write_text(textwrap.dedent("""\
        code: TM351
        title: Data management
        storage:
          extra_mounts: [{name: postgres, path: "{course_dir}/.postgres/data"}]
        presentations:
          - {id: 2025J, start: 2025-10-04, end: 2026-06-11, enrolment: [{users: [ana]}]}
          - {id: 2026J, start: 2026-10-03, end: 2027-06-10, enrolment: [{users: [ana]}]}
        """))
    (root / "courses" / "A233.yaml").write_text(textwrap.dedent("""\
        code: A233
        title: Digital humanities
        storage: {layout: per-presentation}
        presentations:
          - {id: 2026B, start: 2026-02-07, end: 2026-10-15, enrolment: [{users: [ana]}]}
        """))
    return root


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):  # noqa: ANN201
    root = tmp_path_factory.mktemp("roundtrip")
    catalog = _catalog(root / "catalog")
    loaded = load_catalog(catalog)
    (root / "state").mkdir()
    archiving = LocalArchiving(FleetPaths(root / "state"), root / "storage", loaded, demo_mode=True,
                               portal_url="http://127.0.0.1:1/portal/archives/", workers=1)
    said: list[str] = []
    archiving.say = said.append
    originals = {}
    when = dt.date(2026, 11, 20)  # TM351-2025J and A233-2026B archived; TM351-2026J open
    for key in ("TM351-2025J", "A233-2026B"):
        pres = next(p for p in plan(loaded.catalog, dt.date(2026, 1, 10) if key == "TM351-2025J" else
                                    dt.date(2026, 3, 1)).all_presentations() if p.key == key)
        ws = workspace.workspace_for(root / "storage", pres.hub, "ana", pres)
        workspace.prepare(ws, root / "storage", None)  # as the spawner makes it: the extra mount included
        every_kind(ws.course_dir)
        (ws.course_dir / ".postgres" / "data" / "PG_VERSION").parent.mkdir(parents=True, exist_ok=True)
        (ws.course_dir / ".postgres" / "data" / "PG_VERSION").write_text("15\n")
        originals[key] = tree(ws.course_dir)
        retired = next(p for p in plan(loaded.catalog, when).retired if p.key == key)
        out = archiving.archive(retired)
        assert out.ok and out.removed == ["ana"], out.summary()
        assert not ws.course_dir.exists()
    return root, catalog, loaded, archiving, originals, said


def test_the_cli_is_told_what_the_archives_hold_before_deleting(fleet) -> None:
    said = fleet[5]
    assert said[0].startswith("TM351-2025J: the archives of 1 student(s) hold 9 files")
    assert "6 symlinks, 1 hard links" in said[0] and "could not hold" not in said[0]


@pytest.mark.parametrize("key", ["TM351-2025J", "A233-2026B"], ids=["personal-subfolder+mount", "per-presentation"])
def test_restore_in_place_gives_the_folder_back_equal(fleet, key: str) -> None:
    root, catalog, loaded, archiving, originals, _ = fleet
    run = subprocess.run([sys.executable, "-m", "hubfleet.cli.main", "archive", "restore", str(catalog),
                          "--state-dir", str(root / "state"), "--storage-root", str(root / "storage"),
                          "--presentation", key, "--user", "ana"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "HUBFLEET_DEMO_MODE": "1"})
    assert run.returncode == 0, run.stdout + run.stderr
    pres = next(p for p in plan(loaded.catalog, dt.date(2026, 12, 1)).all_presentations() if p.key == key)
    ws = workspace.workspace_for(root / "storage", pres.hub, "ana", pres)
    assert tree(ws.course_dir, owners=False) == {k: v[:-2] if ROOT else v for k, v in originals[key].items()}
    if key.startswith("A233"):
        assert ws.course_path.is_symlink() and ws.course_path.resolve() == ws.course_dir.resolve()


def test_restore_into_a_new_presentation(fleet) -> None:
    root, _, loaded, archiving, originals, _ = fleet
    spec = plan(loaded.catalog, dt.date(2026, 12, 1))
    into = next(p for p in spec.all_presentations() if p.key == "TM351-2026J")
    (row,) = archiving.records("A233-2026B", "ana")
    result = archiving.restore(row, into, None)
    assert result.check.ok
    assert result.target.name == "from-A233-2026B"
    assert tree(result.target, owners=False) == {k: v[:-2] if ROOT else v for k, v in originals["A233-2026B"].items()}
    # The new presentation's extra mount is made after extracting, next to (not inside) the restored folder.
    assert (result.target.parent / ".postgres" / "data").is_dir()


@pytest.mark.skipif(not ROOT, reason="fills a real (tiny) tmpfs: needs root to mount it")
def test_a_restore_that_fails_half_way_leaves_nothing_behind(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    every_kind(src)
    (src / "sub" / "more.bin").write_bytes(os.urandom(2_000_000))
    result = archive_folder(src, tmp_path / "out", "x")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        (small / "existing-empty").mkdir()
        for target in (small / "new", small / "existing-empty"):
            check = restore(Path(result.archive), Path(result.manifest), target)
            assert not check.ok and "could not write" in check.error and "No space left" in check.error, check
        assert os.listdir(small) == ["existing-empty"] and os.listdir(small / "existing-empty") == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_restore_refuses_a_folder_with_work_in_it_and_changes_nothing(fleet) -> None:
    root, _, loaded, archiving, _, _ = fleet
    spec = plan(loaded.catalog, dt.date(2026, 12, 1))
    original = next(p for p in spec.all_presentations() if p.key == "TM351-2025J")
    (row,) = archiving.records("TM351-2025J", "ana")
    ws = workspace.workspace_for(root / "storage", original.hub, "ana", original)
    before = tree(ws.course_dir)  # restored by the in-place test above: the student's work is there now
    with pytest.raises(FileExistsError):
        archiving.restore(row, None, original)
    assert tree(ws.course_dir) == before
    with Ledger(root / "state") as ledger:
        manifest = json.loads(Path(ledger.current("TM351-2025J", "ana").location.replace(
            ".tar.gz", ".manifest.json")).read_text())
    assert manifest["format"] == "hubfleet-archive-manifest/2" and manifest["skipped"] == []
