"""End of a presentation: each student's course folder becomes one ``.tar.gz`` plus a manifest, verified by reading
it back. Data is only ever deleted after that verification (see ``ledger.py``).

Shipped as-is into a Kubernetes Job (``python3 archive.py many ...``) and imported by the local backend, so: one
file, standard library only.

Why it is built this way:

- Every byte is read once: the same buffer goes to sha256 and into the tar stream; the compressed bytes are hashed as
  they are written. gzip level 6 is gzip's (and ``tar czf``'s) default, so archives cost what operators expect.
- Output goes to ``NAME.tar.gz.partial`` / ``NAME.manifest.json.partial`` and is renamed into place, archive first,
  manifest last. A ``kill -9`` never leaves a manifest next to an archive it does not describe; a rerun overwrites
  the fixed ``.partial`` names (no leftovers) and skips work whose archive + manifest exist and verify (resume).
- The source is the student's folder, which they control: it is walked with ``os.fwalk`` and files are opened
  ``O_NOFOLLOW``, so a planted symlink to another student's files is archived as a link, never as their content.
  Links that point outside the folder are left out (listed in the manifest): they would be refused on restore.
- The gzip header carries no timestamp and entries are sorted, so the same folder gives a byte-identical archive.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import stat
import sys
import tarfile
import zlib
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

MANIFEST_FORMAT = "hubfleet-archive-manifest/1"
GZIP_LEVEL = 6
_CHUNK = 1 << 20
# hubfleet's own files at the top of a course folder, not the student's work: the read-only marker
# (backends/local/workspace.READ_ONLY_MARKER). Restored into a new folder it would mislead.
HUBFLEET_FILES = frozenset({".hubfleet-read-only"})


class UnsafeArchive(Exception):
    """A member would land outside the target (absolute path, ``..``, escaping link) or is not a plain type."""


@dataclass
class VerifyResult:
    ok: bool
    files: int = 0
    bytes: int = 0
    archive_sha256_ok: bool = False
    missing: list[str] = field(default_factory=list)  # in the manifest, not in the archive
    extra: list[str] = field(default_factory=list)  # in the archive, not in the manifest
    mismatched: list[str] = field(default_factory=list)  # size, sha256, mode or link target differ
    unsafe: list[str] = field(default_factory=list)
    error: str | None = None  # unreadable archive/manifest (gzip CRC, truncation, bad JSON)


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


class _GunzipReader:
    """Decompresses a gzip file for tarfile while hashing the raw bytes. zlib with wbits=31 checks the gzip CRC and
    length, so a flipped byte raises here; trailing bytes after the stream are an error too."""

    def __init__(self, path: Path) -> None:
        self.raw = open(path, "rb")
        self.sha, self.unzip, self.buf, self.eof = hashlib.sha256(), zlib.decompressobj(31), b"", False

    def read(self, n: int) -> bytes:
        while len(self.buf) < n and not self.eof:
            chunk = self.unzip.unconsumed_tail
            if not chunk:
                chunk = self.raw.read(_CHUNK)
                self.sha.update(chunk)
                if not chunk:
                    if not self.unzip.eof:
                        raise EOFError("archive is truncated (gzip stream ends early)")
                    self.eof = True
                    break
                if self.unzip.eof:
                    raise ValueError("unexpected data after the end of the gzip stream")
            # Bounded output: 1 MB of crafted zeros would otherwise inflate to 1 GB in one call.
            self.buf += self.unzip.decompress(chunk, _CHUNK)
            if self.unzip.unused_data:
                raise ValueError("unexpected data after the end of the gzip stream")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def drain(self) -> str:
        """Read to the end (checks the gzip trailer) and return the sha256 of the whole file."""
        while self.read(_CHUNK):
            pass
        return self.sha.hexdigest()

    def close(self) -> None:
        self.raw.close()


def _safe_name(name: str) -> bool:
    p = PurePosixPath(name)
    return bool(name) and "\x00" not in name and not p.is_absolute() and ".." not in p.parts and p.parts[0] != "."


def _link_stays_inside(name: str, linkname: str) -> bool:
    if not linkname or linkname.startswith("/"):
        return False
    resolved = os.path.normpath(os.path.join(os.path.dirname(name), linkname))
    return resolved != ".." and not resolved.startswith("../") and not resolved.startswith("/")


def _mode(st_mode: int) -> str:
    return format(stat.S_IMODE(st_mode), "04o")


def _write_tar(src: Path, out: _HashingWriter) -> dict:
    """Stream src into a tar on out; return the manifest body (everything but the archive totals)."""
    files: list[dict] = []
    dirs: list[dict] = []
    links: list[dict] = []
    skipped: list[dict] = []
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=_CHUNK, copybufsize=_CHUNK) as tar:
        for dirpath, dirnames, filenames, dfd in os.fwalk(src, follow_symlinks=False):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, src)
            prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            if prefix:
                st = os.fstat(dfd)
                info = tarfile.TarInfo(prefix.rstrip("/"))
                info.type, info.mode, info.mtime, info.uid, info.gid = tarfile.DIRTYPE, st.st_mode & 0o7777, int(
                    st.st_mtime), st.st_uid, st.st_gid
                tar.addfile(info)
                dirs.append({"path": info.name, "mode": _mode(st.st_mode)})
            # fwalk lists symlinks to directories under dirnames; they are links, not directories to enter.
            entries = sorted(set(filenames) | {d for d in dirnames if os.path.islink(os.path.join(dirpath, d))})
            for fname in entries:
                name = prefix + fname
                if not prefix and fname in HUBFLEET_FILES:
                    continue
                st = os.stat(fname, dir_fd=dfd, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    target = os.readlink(fname, dir_fd=dfd)
                    if not _link_stays_inside(name, target):
                        skipped.append({"path": name, "reason": f"symlink outside the folder: {target}"})
                        continue
                    info = tarfile.TarInfo(name)
                    info.type, info.linkname, info.mtime = tarfile.SYMTYPE, target, int(st.st_mtime)
                    tar.addfile(info)
                    links.append({"path": name, "target": target})
                    continue
                if not stat.S_ISREG(st.st_mode):
                    skipped.append({"path": name, "reason": "not a regular file (fifo, socket or device)"})
                    continue
                fd = os.open(fname, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
                try:
                    st = os.fstat(fd)  # the size of what we opened, not of what was there a moment ago
                    info = tarfile.TarInfo(name)
                    info.size, info.mode, info.mtime = st.st_size, st.st_mode & 0o7777, int(st.st_mtime)
                    info.uid, info.gid = st.st_uid, st.st_gid
                    reader = _HashingReader(fd)
                    tar.addfile(info, reader)
                finally:
                    os.close(fd)
                files.append({"path": name, "size": reader.size, "sha256": reader.sha.hexdigest(),
                              "mode": _mode(st.st_mode)})
    return {"files": files, "dirs": dirs, "symlinks": links, "skipped": skipped}


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def archive_folder(src: Path, dest_dir: Path, name: str, *, verify: bool = True) -> ArchiveResult:
    """Archive src as dest_dir/name.tar.gz + dest_dir/name.manifest.json; skip if both exist and verify."""
    src, dest_dir = Path(src), Path(dest_dir)
    archive, manifest = dest_dir / f"{name}.tar.gz", dest_dir / f"{name}.manifest.json"
    part_archive = archive.with_name(archive.name + ".partial")
    part_manifest = manifest.with_name(manifest.name + ".partial")
    result = ArchiveResult(name=name, archive=str(archive), manifest=str(manifest))
    if archive.exists() and manifest.exists():
        check = verify_archive(archive, manifest)
        if check.ok:
            part_archive.unlink(missing_ok=True)
            part_manifest.unlink(missing_ok=True)
            totals = json.loads(manifest.read_text())["totals"]
            result.files, result.bytes = totals["files"], totals["bytes"]
            result.archive_bytes, result.sha256 = totals["archive_bytes"], totals["archive_sha256"]
            result.resumed, result.verify = True, check
            return result
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: course folder to archive is missing or not a directory")
    dest_dir.mkdir(parents=True, exist_ok=True)
    with open(part_archive, "wb") as raw:  # "wb" truncates whatever a killed run left behind
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
    os.replace(part_archive, archive)
    os.replace(part_manifest, manifest)  # last: a manifest means "this archive is complete"
    dfd = os.open(dest_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)  # make the renames durable before anyone deletes the source on the strength of them
    finally:
        os.close(dfd)
    result.files, result.bytes = totals["files"], totals["bytes"]
    result.archive_bytes, result.sha256 = totals["archive_bytes"], totals["archive_sha256"]
    result.verify = verify_archive(archive, manifest) if verify else None
    return result


def _scan(archive: Path, manifest: Path, on_file=None) -> VerifyResult:
    """Read the archive once, comparing to the manifest; on_file(member, tar) may consume each regular file."""
    try:
        doc = json.loads(Path(manifest).read_text())
        expect_files = {f["path"]: f for f in doc["files"]}
        expect_other = {d["path"]: ("dir", d["mode"]) for d in doc.get("dirs", [])}
        expect_other.update({s["path"]: ("link", s["target"]) for s in doc.get("symlinks", [])})
        totals = doc["totals"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return VerifyResult(ok=False, error=f"{manifest}: unreadable manifest: {exc}")
    res = VerifyResult(ok=False)
    seen: set[str] = set()
    reader = None
    try:
        reader = _GunzipReader(Path(archive))
        with tarfile.open(fileobj=reader, mode="r|", bufsize=_CHUNK) as tar:
            for m in tar:
                name = m.name
                if name in seen or not _safe_name(name):
                    res.unsafe.append(name)
                    continue
                seen.add(name)
                if m.issym():
                    if not _link_stays_inside(name, m.linkname):
                        res.unsafe.append(name)
                    elif expect_other.get(name) != ("link", m.linkname):
                        (res.mismatched if name in expect_other else res.extra).append(name)
                    continue
                if m.isdir():
                    if expect_other.get(name) != ("dir", _mode(m.mode)):
                        (res.mismatched if name in expect_other else res.extra).append(name)
                    continue
                if not m.isreg():  # hard links, devices, fifos: never written by archive_folder
                    res.unsafe.append(name)
                    continue
                want = expect_files.get(name)
                if want is None:
                    res.extra.append(name)
                    continue
                sha, size = hashlib.sha256(), 0
                fh = tar.extractfile(m)
                sink = on_file(m) if on_file else None
                while chunk := fh.read(_CHUNK):
                    sha.update(chunk)
                    size += len(chunk)
                    if sink:
                        sink(chunk)
                if sink:
                    sink(None)
                if (size, sha.hexdigest(), _mode(m.mode)) != (want["size"], want["sha256"], want["mode"]):
                    res.mismatched.append(name)
                res.files += 1
                res.bytes += size
        res.archive_sha256_ok = reader.drain() == totals.get("archive_sha256")
    except (tarfile.TarError, OSError, EOFError, ValueError, zlib.error) as exc:
        res.error = f"{archive}: unreadable archive: {type(exc).__name__}: {exc}"
    finally:
        if reader:
            reader.close()
    res.missing = sorted((set(expect_files) | set(expect_other)) - seen)
    res.ok = (res.error is None and res.archive_sha256_ok and not (res.missing or res.extra or res.mismatched
                                                                    or res.unsafe))
    return res


def verify_archive(archive: Path, manifest: Path) -> VerifyResult:
    """Read archive back and compare every member (size, sha256, mode) and the archive's own sha256."""
    return _scan(archive, manifest)


def restore(archive: Path, manifest: Path, target: Path) -> VerifyResult:
    """Extract into target (new or empty), refusing anything that would land outside it; then re-hash from disk.

    The archive is verified first, so nothing is written from a tampered or unsafe archive. Raises UnsafeArchive
    for an unsafe one; returns the post-extraction check otherwise.
    """
    target = Path(target)
    first = verify_archive(archive, manifest)
    if first.unsafe:
        raise UnsafeArchive(f"{archive}: refusing to restore, unsafe members: {', '.join(first.unsafe[:5])}")
    if not first.ok:
        return first
    target.mkdir(parents=True, exist_ok=True)
    if any(target.iterdir()):
        raise FileExistsError(f"{target}: restore target must be empty")
    root = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    dir_modes: list[tuple[str, int]] = []

    def parent_fd(name: str) -> tuple[int, str]:
        # Walk each component without following links, so a link restored earlier cannot redirect a later file.
        fd = os.dup(root)
        *parts, leaf = name.split("/")
        for part in parts:
            try:
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(part, 0o700, dir_fd=fd)
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return fd, leaf

    def open_file(m: tarfile.TarInfo):
        dfd, leaf = parent_fd(m.name)
        fd = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dfd)
        os.close(dfd)

        def sink(chunk: bytes | None) -> None:
            if chunk is None:
                os.fchmod(fd, m.mode & 0o777)  # no setuid/setgid bits from an archive
                os.utime(fd, (m.mtime, m.mtime))
                os.close(fd)
            else:
                os.write(fd, chunk)
        return sink

    try:
        doc = json.loads(Path(manifest).read_text())
        for d in doc.get("dirs", []):
            dfd, leaf = parent_fd(d["path"] + "/x")
            os.close(dfd)
            dir_modes.append((d["path"], int(d["mode"], 8) & 0o777))
        for s in doc.get("symlinks", []):
            dfd, leaf = parent_fd(s["path"])
            os.symlink(s["target"], leaf, dir_fd=dfd)
            os.close(dfd)
        _scan(archive, manifest, on_file=open_file)
        for path, mode in sorted(dir_modes, reverse=True):  # deepest first, so read-only dirs come last
            os.chmod(path, mode, dir_fd=root, follow_symlinks=True)
    finally:
        os.close(root)
    return _check_on_disk(target, doc)


def _check_on_disk(target: Path, doc: dict) -> VerifyResult:
    res = VerifyResult(ok=False, archive_sha256_ok=True)
    for f in doc["files"]:
        path = target / f["path"]
        try:
            with open(path, "rb") as fh:
                sha, size = hashlib.sha256(), 0
                while chunk := fh.read(_CHUNK):
                    sha.update(chunk)
                    size += len(chunk)
        except FileNotFoundError:
            res.missing.append(f["path"])
            continue
        if (size, sha.hexdigest()) != (f["size"], f["sha256"]) or path.is_symlink():
            res.mismatched.append(f["path"])
        res.files += 1
        res.bytes += size
    res.ok = not (res.missing or res.mismatched)
    return res


def _job(src: str, dest_dir: str, name: str) -> ArchiveResult:
    try:
        return archive_folder(Path(src), Path(dest_dir), name)
    except Exception as exc:  # one broken folder must not stop 1,499 others; it is reported, not archived
        d = Path(dest_dir)
        return ArchiveResult(name=name, archive=str(d / f"{name}.tar.gz"), manifest=str(d / f"{name}.manifest.json"),
                             error=f"{type(exc).__name__}: {exc}")


def archive_many(jobs: list[tuple[Path, Path, str]], workers: int | None = None,
                 executor: str = "process") -> list[ArchiveResult]:
    """Archive and verify each (src, dest_dir, name), in parallel; results in job order.

    Processes by default: zlib and hashlib release the GIL, but the tar bookkeeping between buffers does not, and
    benchmarks/archive.py measured processes ahead (see its output for this machine).
    """
    workers = workers or os.cpu_count() or 1
    pool: Executor = (ProcessPoolExecutor if executor == "process" else ThreadPoolExecutor)(max_workers=workers)
    with pool:
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
            check = (verify_archive(args.archive, args.manifest) if args.command == "verify"
                     else restore(args.archive, args.manifest, args.target))
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
