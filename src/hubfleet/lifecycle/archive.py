"""End of a presentation: each student's course folder becomes one ``.tar.gz`` plus a manifest, verified by reading
it back. Data is only ever deleted after that verification (see ``engine.py``, which re-checks right before).

Shipped as-is into a Kubernetes Job and imported by the local backend, so: standard library only.

Why it is built this way:

- Every byte is read once: the same buffer goes to sha256 and into the tar stream; the compressed bytes are hashed as
  they are written. gzip level 6 is gzip's (and ``tar czf``'s) default, so archives cost what operators expect.
- Exact: every entry is kept as what it is. A symlink is data: it is stored as a link whatever it points to (inside,
  outside, nowhere) and its target is never followed; modes and owners are stored and restored; a file with several
  names inside the folder is stored once plus hard links. What a tar cannot hold (sockets, fifos, devices) is listed
  in the manifest's ``skipped``, so the operator is told before anything is deleted.
- Output goes to ``NAME.tar.gz.<pid>.<random>.partial`` (unique per run: two runs, or a run and the orphaned workers
  of a killed one, never write the same file) and is then *linked* into place, archive first, manifest last. A link
  fails if the name exists, so a finished archive is never overwritten: an existing archive + manifest that verify
  is reused (resume), one that does not is kept for a person to look at and reported. A ``kill -9`` never leaves a
  manifest next to an archive it does not describe.
- The source is the student's folder, which they control: it is walked with ``os.fwalk`` and files are opened
  ``O_NOFOLLOW``, so a planted symlink to another student's files is archived as a link, never as their content.
- The gzip header carries no timestamp and entries are sorted, so the same folder gives a byte-identical archive.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import secrets
import signal
import stat
import sys
import tarfile
import zlib
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

try:
    from hubfleet.lifecycle import faultpoints
    from hubfleet.lifecycle.readback import (
        MANIFEST_FORMAT, MODE_MASK, UnsafeArchive, VerifyResult, _mode, verify_archive,
    )
except ImportError:  # run as a script: the modules sit beside this file
    import faultpoints  # type: ignore[no-redef]
    from readback import MANIFEST_FORMAT, MODE_MASK, UnsafeArchive, VerifyResult, _mode, verify_archive  # type: ignore

__all__ = ["ArchiveResult", "MODE_MASK", "UnsafeArchive", "VerifyResult", "archive_folder", "archive_many",
           "frozen_originals", "originals_record", "verify_archive", "worker_pool"]

GZIP_LEVEL = 6
_CHUNK = 1 << 20
# hubfleet's own files at the top of a course folder, not the student's work: the read-only marker
# (backends/local/workspace.READ_ONLY_MARKER). Restored into a new folder it would mislead.
HUBFLEET_FILES = frozenset({".hubfleet-read-only"})


@dataclass
class ArchiveResult:
    name: str
    archive: str
    manifest: str
    files: int = 0
    bytes: int = 0
    archive_bytes: int = 0
    sha256: str = ""
    resumed: bool = False  # a complete, verified archive was already there
    kept: bool = False  # an archive of this name exists and does not verify: left alone, use another name
    holds: dict = field(default_factory=dict)  # counts of files, dirs, symlinks, hardlinks
    skipped: list = field(default_factory=list)  # what the archive could not hold, and why
    verify: VerifyResult | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.verify is not None and self.verify.ok


class _HashingWriter:
    """Compresses to gzip and hashes the compressed bytes on their way to disk (the tar stream writes here)."""

    def __init__(self, raw) -> None:
        self.raw, self.sha, self.size = raw, hashlib.sha256(), 0
        # wbits=31: a gzip wrapper whose header has mtime 0, so identical input gives identical output.
        self.zip = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)

    def _out(self, data: bytes) -> None:
        if data:
            self.raw.write(data)
            self.sha.update(data)
            self.size += len(data)

    def write(self, data: bytes) -> int:
        self._out(self.zip.compress(data))
        return len(data)

    def finish(self) -> None:
        self._out(self.zip.flush())


class _HashingReader:
    """Reads a source file, feeding each buffer to sha256 as tarfile pulls it."""

    def __init__(self, fd: int) -> None:
        self.fd, self.sha, self.size = fd, hashlib.sha256(), 0

    def read(self, n: int = _CHUNK) -> bytes:
        data = os.read(self.fd, n)
        self.sha.update(data)
        self.size += len(data)
        return data


ORIGINALS_TAG = "\n#originals "


def originals_record(originals: dict) -> str:
    """The line ``workspace.set_read_only`` appends to its marker: what the freeze is about to change."""
    return ORIGINALS_TAG + json.dumps(originals, separators=(",", ":")) + "\n"


def frozen_originals(src: Path) -> dict:
    """What the read-only freeze changed: {relative path: [mode, uid, gid]} as the student had it, recorded by
    ``workspace.set_read_only`` in its marker. Trusted only from a marker the student cannot have written (root's,
    or ours in single-account demo mode); anything else is read as no record."""
    marker = src / ".hubfleet-read-only"
    try:
        fd = os.open(marker, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return {}
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
            return {}
        with os.fdopen(os.dup(fd), "rb") as fh:
            text = fh.read(64 << 20).decode("utf-8", "replace")
    finally:
        os.close(fd)
    _, sep, record = text.partition(ORIGINALS_TAG)
    try:
        return json.loads(record) if sep else {}
    except ValueError:
        return {}


def _write_tar(src: Path, out: _HashingWriter) -> dict:
    """Stream src into a tar on out; return the manifest body (everything but the archive totals)."""
    files: list[dict] = []
    dirs: list[dict] = []
    links: list[dict] = []
    hardlinks: list[dict] = []
    skipped: list[dict] = []
    first_name: dict[tuple[int, int], str] = {}  # (dev, inode) of a multiply linked file -> its first name
    originals = frozen_originals(src)

    def owner(name: str, st: os.stat_result) -> tuple[int, int, int]:
        mode, uid, gid = originals.get(name, (st.st_mode, st.st_uid, st.st_gid))
        return mode & MODE_MASK, uid, gid

    root_st = os.stat(src, follow_symlinks=False)
    mode, uid, gid = owner(".", root_st)
    root = {"mode": _mode(mode), "uid": uid, "gid": gid}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=_CHUNK, copybufsize=_CHUNK) as tar:
        for dirpath, dirnames, filenames, dfd in os.fwalk(src, follow_symlinks=False):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, src)
            prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            if prefix:
                name = prefix.rstrip("/")
                mode, uid, gid = owner(name, os.fstat(dfd))
                info = tarfile.TarInfo(name)
                info.type, info.mode, info.mtime, info.uid, info.gid = tarfile.DIRTYPE, mode, 0, uid, gid
                tar.addfile(info)
                dirs.append({"path": name, "mode": _mode(mode), "uid": uid, "gid": gid})
            # fwalk lists symlinks to directories under dirnames; they are links, not directories to enter.
            entries = sorted(set(filenames) | {d for d in dirnames if os.path.islink(os.path.join(dirpath, d))})
            for fname in entries:
                name = prefix + fname
                if not prefix and fname in HUBFLEET_FILES:
                    continue
                st = os.stat(fname, dir_fd=dfd, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    target = os.readlink(fname, dir_fd=dfd)
                    _, uid, gid = owner(name, st)
                    info = tarfile.TarInfo(name)
                    info.type, info.linkname, info.mtime, info.uid, info.gid = (
                        tarfile.SYMTYPE, target, int(st.st_mtime), uid, gid)
                    tar.addfile(info)
                    links.append({"path": name, "target": target, "uid": uid, "gid": gid})
                    continue
                if not stat.S_ISREG(st.st_mode):
                    kind = ("socket" if stat.S_ISSOCK(st.st_mode) else "fifo" if stat.S_ISFIFO(st.st_mode)
                            else "device")
                    skipped.append({"path": name, "reason": f"a {kind}: holds no data a tar can keep"})
                    continue
                fd = os.open(fname, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
                try:
                    st = os.fstat(fd)  # what we opened, not what was there a moment ago
                    if st.st_nlink > 1 and (st.st_dev, st.st_ino) in first_name:
                        info = tarfile.TarInfo(name)
                        info.type, info.linkname = tarfile.LNKTYPE, first_name[(st.st_dev, st.st_ino)]
                        tar.addfile(info)
                        hardlinks.append({"path": name, "target": info.linkname})
                        continue
                    if st.st_nlink > 1:
                        first_name[(st.st_dev, st.st_ino)] = name
                    mode, uid, gid = owner(name, st)
                    info = tarfile.TarInfo(name)
                    info.size, info.mode, info.mtime, info.uid, info.gid = st.st_size, mode, int(st.st_mtime), uid, gid
                    reader = _HashingReader(fd)
                    tar.addfile(info, reader)
                finally:
                    os.close(fd)
                files.append({"path": name, "size": reader.size, "sha256": reader.sha.hexdigest(),
                              "mode": _mode(mode), "uid": uid, "gid": gid})
    return {"root": root, "files": files, "dirs": dirs, "symlinks": links, "hardlinks": hardlinks, "skipped": skipped}


def _fsync_write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed worker nobody reaped yet (a zombie) writes nothing any more
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rpartition(b")")[2].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def _clear_dead_partials(dest_dir: Path, stem: str) -> None:
    """Remove what killed runs left: ``<stem>.*.partial`` whose writer is gone (and the old fixed names)."""
    (dest_dir / f"{stem}.partial").unlink(missing_ok=True)  # the fixed name earlier versions used
    for part in dest_dir.glob(f"{stem}.*.partial"):
        bits = part.name[len(stem):].split(".")
        pid = next((int(b) for b in bits if b.isdigit()), None)
        if pid is None or not _pid_alive(pid):
            part.unlink(missing_ok=True)


def _holds(doc: dict) -> dict:
    return {k: len(doc.get(k, [])) for k in ("files", "dirs", "symlinks", "hardlinks")}


def _resume(result: ArchiveResult, archive: Path, manifest: Path) -> ArchiveResult:
    """An archive + manifest of this name exist: reuse them if they verify, else keep them and say so."""
    check = verify_archive(archive, manifest)
    if not check.ok:
        result.kept = True
        result.error = (f"{archive} exists and does not verify ({check.problem()}); kept for a person to look at, "
                        "never overwritten")
        result.verify = check
        return result
    doc = json.loads(manifest.read_text())
    totals = doc["totals"]
    result.files, result.bytes = totals["files"], totals["bytes"]
    result.archive_bytes, result.sha256 = totals["archive_bytes"], totals["archive_sha256"]
    result.holds, result.skipped = _holds(doc), doc.get("skipped", [])
    result.resumed, result.verify = True, check
    return result


def archive_folder(src: Path, dest_dir: Path, name: str, *, verify: bool = True) -> ArchiveResult:
    """Archive src as dest_dir/name.tar.gz + dest_dir/name.manifest.json. Never replaces a finished archive: if both
    exist and verify they are reused; if they do not, ``kept`` is set and nothing is written."""
    src, dest_dir = Path(src), Path(dest_dir)
    archive, manifest = dest_dir / f"{name}.tar.gz", dest_dir / f"{name}.manifest.json"
    result = ArchiveResult(name=name, archive=str(archive), manifest=str(manifest))
    if dest_dir.is_dir():
        _clear_dead_partials(dest_dir, archive.name)
        _clear_dead_partials(dest_dir, manifest.name)
    if manifest.exists():
        return _resume(result, archive, manifest)
    if not src.is_dir() or src.is_symlink():
        raise FileNotFoundError(f"{src}: course folder to archive is missing or not a directory")
    dest_dir.mkdir(parents=True, exist_ok=True)
    run = f"{os.getpid()}.{secrets.token_hex(4)}"
    part_archive = dest_dir / f"{archive.name}.{run}.partial"
    part_manifest = dest_dir / f"{manifest.name}.{run}.partial"
    try:
        fd = os.open(part_archive, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as raw:
            out = _HashingWriter(raw)
            body = _write_tar(src, out)
            out.finish()
            raw.flush()
            os.fsync(raw.fileno())
        totals = {"files": len(body["files"]), "bytes": sum(f["size"] for f in body["files"]),
                  "archive_bytes": out.size, "archive_sha256": out.sha.hexdigest()}
        doc = {"format": MANIFEST_FORMAT, "name": name, "archive": archive.name,
               "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "compression": {"format": "gzip", "level": GZIP_LEVEL}, "totals": totals, **body}
        _fsync_write(part_manifest, (json.dumps(doc, indent=1) + "\n").encode())
        if archive.exists() and not manifest.exists():
            archive.unlink()  # a killed run's archive that never got its manifest: never complete, never verified
        try:
            os.link(part_archive, archive)  # fails if the name exists: a finished archive is never overwritten
            os.link(part_manifest, manifest)  # last: a manifest means "this archive is complete"
        except FileExistsError:
            return _resume(result, archive, manifest)  # another run finished the same name a moment ago
    finally:
        part_archive.unlink(missing_ok=True)
        part_manifest.unlink(missing_ok=True)
    dfd = os.open(dest_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)  # make the names durable before anyone deletes the source on the strength of them
    finally:
        os.close(dfd)
    result.files, result.bytes = totals["files"], totals["bytes"]
    result.archive_bytes, result.sha256 = totals["archive_bytes"], totals["archive_sha256"]
    result.holds, result.skipped = _holds(doc), body["skipped"]
    faultpoints.strike("write", archive)
    if verify:
        result.verify = verify_archive(archive, manifest)
        if result.verify.ok:
            faultpoints.strike("verify", archive)
    return result


def _job(src: str, dest_dir: str, name: str) -> ArchiveResult:
    try:
        return archive_folder(Path(src), Path(dest_dir), name)
    except Exception as exc:  # one broken folder must not stop 1,499 others; it is reported, not archived
        d = Path(dest_dir)
        return ArchiveResult(name=name, archive=str(d / f"{name}.tar.gz"), manifest=str(d / f"{name}.manifest.json"),
                             error=f"{type(exc).__name__}: {exc}")


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Pool initializer: the kernel kills this worker when the process that started it dies (``kill -9`` of the
    main process included), so no orphaned worker keeps writing after its run is gone.
    # ref: https://man7.org/linux/man-pages/man2/prctl.2.html (PR_SET_PDEATHSIG)"""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: workers still exit when the pool's pipe closes
        return
    if os.getppid() != parent:  # the parent died before the prctl took effect
        os._exit(1)


def worker_pool(workers: int | None, executor: str = "process") -> Executor:
    """A pool whose workers cannot outlive the caller (see ``die_with_parent``)."""
    faultpoints.mark_main()
    if executor != "process":
        return ThreadPoolExecutor(max_workers=workers)
    # fork: the workers are children of this process, so the parent-death signal is tied to it (a forkserver's
    # children would be tied to the forkserver instead).
    import multiprocessing

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=die_with_parent, initargs=(os.getpid(),))


def archive_many(jobs: list[tuple[Path, Path, str]], workers: int | None = None,
                 executor: str = "process") -> list[ArchiveResult]:
    """Archive and verify each (src, dest_dir, name), in parallel; results in job order.

    Processes by default: zlib and hashlib release the GIL, but the tar bookkeeping between buffers does not, and
    benchmarks/archive.py measured processes ahead (see its output for this machine).
    """
    workers = workers or os.cpu_count() or 1
    with worker_pool(workers, executor) as pool:
        futures = [pool.submit(_job, str(s), str(d), n) for s, d, n in jobs]
        return [f.result() for f in futures]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Archive, verify and restore student course folders.")
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("archive", help="archive one folder")
    a.add_argument("--src", required=True, type=Path)
    a.add_argument("--dest", required=True, type=Path)
    a.add_argument("--name", required=True)
    m = sub.add_parser("many", help="archive every sub-folder of --src-root as <dest>/<subfolder>.tar.gz")
    m.add_argument("--src-root", required=True, type=Path)
    m.add_argument("--dest", required=True, type=Path)
    m.add_argument("--workers", type=int, default=None)
    for cmd in ("verify", "restore"):
        p = sub.add_parser(cmd, help=f"{cmd} an archive against its manifest")
        p.add_argument("--archive", required=True, type=Path)
        p.add_argument("--manifest", required=True, type=Path)
        if cmd == "restore":
            p.add_argument("--target", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "archive":
            results = [archive_folder(args.src, args.dest, args.name)]
        elif args.command == "many":
            subs = sorted(p for p in args.src_root.iterdir() if p.is_dir() and not p.is_symlink())
            results = archive_many([(p, args.dest, p.name) for p in subs], workers=args.workers)
        else:
            if args.command == "verify":
                check = verify_archive(args.archive, args.manifest)
            else:
                try:
                    from hubfleet.lifecycle.restoring import restore
                except ImportError:
                    from restoring import restore  # type: ignore[no-redef]
                check = restore(args.archive, args.manifest, args.target)
            print(json.dumps(asdict(check)))
            return 0 if check.ok else 1
    except (UnsafeArchive, OSError) as exc:
        print(f"archive: error: {exc}", file=sys.stderr)
        return 2
    for r in results:
        print(json.dumps({**asdict(r), "ok": r.ok}))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
