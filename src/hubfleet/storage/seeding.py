"""First-run seeding of course material into a student's course folder, without clobbering their work.

This file is shipped as-is into a Kubernetes init container and run as ``python3 seeding.py ...``, and the local
backend imports it. So it is one file, standard library only.

Policies (``seed: [{overwrite: ...}]`` in a course file):

- ``never``: never overwrite an existing file; copy what is missing. A file the student deleted comes back on the
  next start: "delete it to get a fresh copy" is the convention students know from nbgitpuller, and with ``never``
  there is no way for a student's *edit* to be lost by it.
- ``always``: the folder ends up equal to the course material; student edits to seeded files are overwritten
  (for read-only reference material). Deleted files come back.
- ``if-unchanged``: copy missing files; replace a file only if the student never edited it (its hash still equals
  the one recorded when hubfleet copied it) and the course material changed. A student's edit is kept and reported.
  A file the student deleted after seeding stays deleted (recorded in the manifest): they removed it on purpose.

Safety: the target is a student-writable tree. A student can plant a symlink (to another student's folder, or to
``/etc``) where a seeded file or directory should be. Every path is therefore walked with directory file descriptors
and ``O_NOFOLLOW``, so nothing is ever read or written through a symlink in the target; such paths are refused and
reported. Writes go to a temp file in the same directory then ``os.replace``, so a crash never leaves half a file,
and an existing inode (which could be a hard link to someone else's file) is never written into.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import secrets
import stat
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

Policy = Literal["never", "always", "if-unchanged"]
POLICIES: tuple[str, ...] = ("never", "always", "if-unchanged")
MANIFEST_NAME = ".hubfleet-seed.json"
MANIFEST_FORMAT = "hubfleet-seed-manifest/1"
_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class SeedError(Exception):
    """A seeding problem a person can act on (missing source, target root is a symlink...)."""


@dataclass
class SeedReport:
    """What a seed run did, per relative path (POSIX separators)."""

    policy: str
    copied: list[str] = field(default_factory=list)  # did not exist, now does
    updated: list[str] = field(default_factory=list)  # replaced with newer course material
    skipped_existing: list[str] = field(default_factory=list)  # already there (same content, or `never`)
    kept_student_edits: list[str] = field(default_factory=list)  # student changed it: left alone
    kept_student_deletions: list[str] = field(default_factory=list)  # student deleted it: not re-created
    refused_symlinks: list[str] = field(default_factory=list)  # a symlink in the target was in the way
    skipped_source_links: list[str] = field(default_factory=list)  # symlinks/specials in the source

    def summary(self) -> dict[str, object]:
        """Counts for the one-line CLI output; the refused paths are named, since someone should look at them."""
        out: dict[str, object] = {k: len(v) for k, v in asdict(self).items() if isinstance(v, list)}
        out["policy"] = self.policy
        out["refused_symlinks_paths"] = self.refused_symlinks
        return out


def _sha256_fd(fd: int) -> str:
    h = hashlib.sha256()
    while chunk := os.read(fd, _CHUNK):
        h.update(chunk)
    return h.hexdigest()


def _source_files(source: Path, report: SeedReport) -> dict[str, Path]:
    """Regular files under source, by relpath. Symlinks are skipped: following one could copy data from outside
    the course material (or loop), and a symlink copied as-is would point somewhere else in a student's home."""
    files: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(source, followlinks=False):
        base = Path(dirpath)
        for name in sorted(dirnames):
            if (base / name).is_symlink():
                report.skipped_source_links.append((base / name).relative_to(source).as_posix())
        for name in sorted(filenames):
            path = base / name
            rel = path.relative_to(source).as_posix()
            if path.is_symlink() or not path.is_file():
                report.skipped_source_links.append(rel)
            elif rel != MANIFEST_NAME:
                files[rel] = path
    return files


class _Tree:
    """The target tree, reached only through O_NOFOLLOW directory descriptors (openat-style).

    ``root`` is the course folder (its own last component is opened with O_NOFOLLOW); ``sub`` is the step's target
    inside it, walked one component at a time from there, so a student's symlink anywhere on the way (``data ->
    /etc``) is refused rather than followed, whoever runs the seeding (root, the student, a sandbox)."""

    def __init__(self, root: Path, uid: int | None, gid: int | None, sub: str = "") -> None:
        self.uid, self.gid = uid, gid
        if not root.exists() and not root.is_symlink():
            root.mkdir(parents=True, mode=0o755)
            self._chown(str(root), None)
        try:
            self.root_fd = os.open(root, _DIR_FLAGS)
        except OSError as exc:
            # The course folder itself can be a planted symlink (e.g. to another student's folder).
            raise SeedError(f"{root}: target is not a real directory (symlink?): {exc.strerror}") from exc
        self._dirs: dict[str, int] = {"": self.root_fd}
        self._held: list[int] = []
        if sub:
            try:
                fd = self.dir_fd(sub, create=True)
            except _Refused as exc:
                self.close()
                raise SeedError(f"{root}/{sub}: a symlink or file is in the way of the seed target; refusing") from exc
            # Re-root at the target: every later path is relative to it, the walked descriptors stay open.
            self._held = list(self._dirs.values())
            self.root_fd = os.dup(fd)
            self._dirs = {"": self.root_fd}

    def _fchown(self, fd: int) -> None:
        if self.uid is not None or self.gid is not None:
            os.fchown(fd, -1 if self.uid is None else self.uid, -1 if self.gid is None else self.gid)

    def _chown(self, name: str, dir_fd: int | None) -> None:
        if self.uid is not None or self.gid is not None:
            uid = -1 if self.uid is None else self.uid
            gid = -1 if self.gid is None else self.gid
            os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)

    def dir_fd(self, reldir: str, create: bool) -> int | None:
        """A descriptor for reldir, or None if it is missing and not created. Raises ``_Refused`` when a
        component is a symlink or not a directory."""
        if reldir in self._dirs:
            return self._dirs[reldir]
        parent, _, name = reldir.rpartition("/")
        pfd = self.dir_fd(parent, create)
        if pfd is None:
            return None
        try:
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(name, 0o755, dir_fd=pfd)
                fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)  # a link swapped in after mkdir is refused here
                self._fchown(fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EEXIST):
                raise _Refused(reldir) from exc
            raise
        self._dirs[reldir] = fd
        return fd

    def current_hash(self, rel: str) -> str | None:
        """sha256 of the file at rel now, or None if it does not exist. Refuses symlinks and non-files."""
        reldir, _, name = rel.rpartition("/")
        dfd = self.dir_fd(reldir, create=False)
        if dfd is None:
            return None
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise _Refused(rel) from exc
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # a fifo or directory in the way
                raise _Refused(rel)
            return _sha256_fd(fd)
        finally:
            os.close(fd)

    def write(self, rel: str, data_from: Path | bytes, mode: int) -> None:
        """Atomically put content at rel: temp file next to it, then os.replace (which replaces a name, never
        writes through it)."""
        reldir, _, name = rel.rpartition("/")
        dfd = self.dir_fd(reldir, create=True)
        assert dfd is not None
        tmp = f".{name}.hubfleet-tmp-{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dfd)
        try:
            if isinstance(data_from, bytes):
                os.write(fd, data_from)
            else:
                with open(data_from, "rb") as src:
                    while chunk := src.read(_CHUNK):
                        os.write(fd, chunk)
            os.fchmod(fd, mode)
            if self.uid is not None or self.gid is not None:
                os.fchown(fd, -1 if self.uid is None else self.uid, -1 if self.gid is None else self.gid)
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            try:
                os.unlink(tmp, dir_fd=dfd)
            except FileNotFoundError:
                pass
            raise

    def close(self) -> None:
        for fd in {*self._dirs.values(), *self._held}:
            os.close(fd)
        self._dirs.clear()
        self._held.clear()


class _Refused(Exception):
    """A path in the target goes through a symlink (or a non-file is in the way)."""


def _load_manifest(tree: _Tree, manifest: Path | None) -> dict:
    empty = {"format": MANIFEST_FORMAT, "files": {}, "deleted": {}}
    try:
        if manifest is None:
            fd = os.open(MANIFEST_NAME, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=tree.root_fd)
        else:
            fd = os.open(manifest, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as fh:
            data = json.loads(fh.read())
    except (OSError, ValueError):
        # Missing, a symlink, or mangled by hand: start over. if-unchanged then treats every existing file as the
        # student's own (kept), which is the safe direction to be wrong in.
        return empty
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        return empty
    data.setdefault("deleted", {})
    return data


def _save_manifest(tree: _Tree, manifest: Path | None, data: dict) -> None:
    payload = (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()
    if manifest is None:
        tree.write(MANIFEST_NAME, payload, 0o644)
        return
    manifest.parent.mkdir(parents=True, exist_ok=True)
    tmp = manifest.with_name(f".{manifest.name}.tmp-{secrets.token_hex(4)}")
    tmp.write_bytes(payload)
    os.replace(tmp, manifest)


def seed(
    source: Path,
    target: Path,
    policy: Policy,
    manifest: Path | None = None,
    *,
    uid: int | None = None,
    gid: int | None = None,
    base: Path | None = None,
) -> SeedReport:
    """Copy course material from source into target under policy; see the module docstring for the rules.

    ``manifest`` defaults to ``target/.hubfleet-seed.json`` (relpath -> sha256 of what hubfleet last copied).
    ``uid``/``gid`` chown what is created, for a backend running as root on behalf of a student.
    ``base`` is the course folder when ``target`` is a folder inside it: the part below ``base`` is walked without
    following links and may not contain ``..``. Without it, ``target`` is the course folder itself.
    """
    source, target = Path(source), Path(target)
    if policy not in POLICIES:
        raise SeedError(f"unknown seed policy {policy!r}: expected one of {', '.join(POLICIES)}")
    if not source.is_dir():
        raise SeedError(f"{source}: seed source is missing or not a directory")
    root, sub = _split(target, Path(base) if base is not None else None)
    report = SeedReport(policy=policy)
    files = _source_files(source, report)
    tree = _Tree(root, uid, gid, sub)
    try:
        state = _load_manifest(tree, Path(manifest) if manifest else None)
        recorded: dict[str, str] = state["files"]
        deleted: dict[str, str] = state["deleted"]
        for rel, src in files.items():
            try:
                _seed_one(tree, rel, src, policy, recorded, deleted, report)
            except _Refused:
                report.refused_symlinks.append(rel)
        _save_manifest(tree, Path(manifest) if manifest else None, state)
    finally:
        tree.close()
    return report


def _split(target: Path, base: Path | None) -> tuple[Path, str]:
    """(course folder, target below it as 'a/b' or ''), refusing a target that is not below the course folder."""
    if base is None:
        return target, ""
    try:
        rel = target.relative_to(base)
    except ValueError:
        raise SeedError(f"{target}: the seed target is not inside the course folder {base}") from None
    parts = [p for p in rel.as_posix().split("/") if p not in ("", ".")]
    if ".." in parts:
        raise SeedError(f"{target}: a seed target may not contain '..'")
    return base, "/".join(parts)


def _seed_one(
    tree: _Tree, rel: str, src: Path, policy: str, recorded: dict, deleted: dict, report: SeedReport
) -> None:
    with open(src, "rb") as fh:
        new = _sha256_fd(fh.fileno())
        mode = 0o644 | (os.fstat(fh.fileno()).st_mode & 0o111)  # keep scripts executable; student can edit
    current = tree.current_hash(rel)
    if current == new:
        # Already what we would write: recording it lets if-unchanged update it later.
        recorded[rel] = new
        deleted.pop(rel, None)
        report.skipped_existing.append(rel)
        return
    if current is None:
        if policy == "if-unchanged" and (rel in recorded or rel in deleted):
            # Seeded before and now gone: the student deleted it. Remember that, so it survives manifest rewrites.
            deleted[rel] = recorded.pop(rel, deleted.get(rel))
            report.kept_student_deletions.append(rel)
            return
        tree.write(rel, src, mode)
        recorded[rel] = new
        deleted.pop(rel, None)
        report.copied.append(rel)
        return
    if policy == "never":
        report.skipped_existing.append(rel)
        return
    if policy == "if-unchanged" and recorded.get(rel) != current:
        # Edited by the student (or present before hubfleet ever seeded it): theirs. Keep the old record so a
        # later revert to the original is recognised as unchanged again.
        report.kept_student_edits.append(rel)
        return
    tree.write(rel, src, mode)
    recorded[rel] = new
    report.updated.append(rel)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Seed course material into a student's course folder.")
    parser.add_argument("--source", required=True, type=Path, help="course material (read-only is fine)")
    parser.add_argument("--target", required=True, type=Path, help="the student's course folder")
    parser.add_argument("--policy", required=True, choices=POLICIES)
    parser.add_argument("--manifest", type=Path, default=None, help=f"default: TARGET/{MANIFEST_NAME}")
    parser.add_argument("--uid", type=int, default=None, help="chown created files/dirs to this uid")
    parser.add_argument("--gid", type=int, default=None, help="chown created files/dirs to this gid")
    parser.add_argument("--base", type=Path, default=None,
                        help="the course folder, when TARGET is a folder inside it (walked without following links)")
    args = parser.parse_args(argv)
    try:
        report = seed(args.source, args.target, args.policy, args.manifest, uid=args.uid, gid=args.gid,
                      base=args.base)
    except SeedError as exc:
        print(f"seeding: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.summary(), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
