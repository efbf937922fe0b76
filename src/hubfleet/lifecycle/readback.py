"""Reading an archive back: every member against its manifest, and the archive file's own sha256, in one pass.

Used by the archiver right after writing (``archive.py``), before any deletion (``engine.py``), and by restore
(``restoring.py``, which writes the members out during the same pass). Standard library only: shipped into the
Kubernetes archive Job with the rest of the lifecycle package.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

MANIFEST_FORMAT = "hubfleet-archive-manifest/2"
_CHUNK = 1 << 20
# Mode bits an archive may give back: never setuid/setgid (a restore runs as root).
MODE_MASK = 0o1777


class UnsafeArchive(Exception):
    """A member would land outside the target (absolute path, ``..``, a path through a link) or is not a type
    archive_folder writes."""


@dataclass
class VerifyResult:
    ok: bool
    files: int = 0
    bytes: int = 0
    archive_sha256_ok: bool = False
    missing: list[str] = field(default_factory=list)  # in the manifest, not in the archive
    extra: list[str] = field(default_factory=list)  # in the archive, not in the manifest
    mismatched: list[str] = field(default_factory=list)  # size, sha256, mode, owner or link target differ
    unsafe: list[str] = field(default_factory=list)
    error: str | None = None  # unreadable archive/manifest (gzip CRC, truncation, bad JSON)

    def problem(self) -> str:
        """One line saying what is wrong (empty when ok)."""
        if self.ok:
            return ""
        if self.error:
            return self.error
        parts = [f"{k} {getattr(self, k)[:3]}" for k in ("missing", "extra", "mismatched", "unsafe")
                 if getattr(self, k)]
        return ", ".join(parts) or "archive sha256 does not match its manifest"


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


def _mode(st_mode: int) -> str:
    return format(st_mode & MODE_MASK, "04o")


def _expected(doc: dict) -> dict[str, tuple]:
    """Every manifest entry as the tuple its tar member must match."""
    want: dict[str, tuple] = {}
    for f in doc["files"]:
        want[f["path"]] = ("file", f["size"], f["sha256"], f["mode"], f.get("uid"), f.get("gid"))
    for d in doc.get("dirs", []):
        want[d["path"]] = ("dir", d["mode"], d.get("uid"), d.get("gid"))
    for s in doc.get("symlinks", []):
        want[s["path"]] = ("link", s["target"], s.get("uid"), s.get("gid"))
    for h in doc.get("hardlinks", []):
        want[h["path"]] = ("hard", h["target"])
    return want


def _owner_or_none(doc_has_owner: bool, m: tarfile.TarInfo) -> tuple:
    return (m.uid, m.gid) if doc_has_owner else (None, None)


def _scan(archive: Path, manifest: Path, on_file=None) -> VerifyResult:
    """Read the archive once, comparing every member to the manifest; on_file(member) may consume regular files."""
    try:
        doc = json.loads(Path(manifest).read_text())
        want = _expected(doc)
        totals = doc["totals"]
        owned = doc.get("format") == MANIFEST_FORMAT  # format 1 manifests recorded no owners
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return VerifyResult(ok=False, error=f"{manifest}: unreadable manifest: {exc}")
    res = VerifyResult(ok=False)
    seen: dict[str, str] = {}  # name -> kind, in archive order
    reader = None
    try:
        reader = _GunzipReader(Path(archive))
        with tarfile.open(fileobj=reader, mode="r|", bufsize=_CHUNK) as tar:
            for m in tar:
                name = m.name
                if name in seen or not _safe_name(name):
                    res.unsafe.append(name)
                    continue
                if m.issym():
                    got: tuple = ("link", m.linkname, *_owner_or_none(owned, m))
                elif m.islnk():
                    # A hard link may only name a regular file stored earlier in this archive.
                    if seen.get(m.linkname) != "file":
                        res.unsafe.append(name)
                        continue
                    got = ("hard", m.linkname)
                elif m.isdir():
                    got = ("dir", _mode(m.mode), *_owner_or_none(owned, m))
                elif m.isreg():
                    sha, size = hashlib.sha256(), 0
                    fh = tar.extractfile(m)
                    sink = on_file(m) if on_file and name in want else None
                    while chunk := fh.read(_CHUNK):
                        sha.update(chunk)
                        size += len(chunk)
                        if sink:
                            sink(chunk)
                    if sink:
                        sink(None)
                    got = ("file", size, sha.hexdigest(), _mode(m.mode), *_owner_or_none(owned, m))
                    res.files += 1
                    res.bytes += size
                else:  # devices, fifos: never written by archive_folder
                    res.unsafe.append(name)
                    continue
                seen[name] = got[0]
                expect = want.get(name)
                if expect is None:
                    res.extra.append(name)
                elif expect != got:  # a format-1 manifest has no owners: None on both sides
                    res.mismatched.append(name)
        res.archive_sha256_ok = reader.drain() == totals.get("archive_sha256")
    except (tarfile.TarError, OSError, EOFError, ValueError, zlib.error) as exc:
        res.error = f"{archive}: unreadable archive: {type(exc).__name__}: {exc}"
    finally:
        if reader:
            reader.close()
    # Nothing may be stored below a symlink or a file: on restore that path would lead through the link.
    for name in seen:
        parts = name.split("/")
        if any(seen.get("/".join(parts[:i]), "dir") != "dir" for i in range(1, len(parts))):
            res.unsafe.append(name)
    res.missing = sorted(set(want) - set(seen))
    res.ok = (res.error is None and res.archive_sha256_ok and not (res.missing or res.extra or res.mismatched
                                                                    or res.unsafe))
    return res


def verify_archive(archive: Path, manifest: Path) -> VerifyResult:
    """Read archive back and compare every member (type, size, sha256, mode, owner, link target) to the manifest,
    and the archive's own sha256."""
    return _scan(archive, manifest)
