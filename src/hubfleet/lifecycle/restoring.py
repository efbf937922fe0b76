"""Putting a verified archive back: into a new or empty folder, exactly as it was, or not at all.

Exact: types, contents, modes (without setuid/setgid), owners (as root; or all handed to one ``owner``), symlinks
with their stored targets (never followed, wherever they point), hard links as links. Nothing is written from an
archive that does not verify first, and a restore that fails half-way removes what it wrote: the target is left as
it was found (absent, or empty).

Every path is walked from the target's file descriptor one component at a time with ``O_NOFOLLOW``, so a link
restored a moment earlier (``data -> /etc``) can never redirect a later file out of the target.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from hubfleet.lifecycle.readback import MODE_MASK, UnsafeArchive, VerifyResult, _scan, verify_archive

__all__ = ["compare_tree", "remove_tree", "restore"]


def remove_tree(path: Path, on_first=None) -> None:
    """Delete a directory tree without following any link in it (links are unlinked, not entered). Not root: each
    directory gets u+rwx first, so a frozen (read-only) tree can still be removed. ``on_first()`` is called once,
    after the first entry is gone (the fault suite's ``delete`` step: a removal half-way)."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    called = on_first is None
    if os.geteuid() != 0:
        os.chmod(path, stat.S_IMODE(st.st_mode) | 0o700)
        for dirpath, dirnames, _files, dfd in os.fwalk(path, follow_symlinks=False):
            for d in dirnames:
                dst = os.stat(d, dir_fd=dfd, follow_symlinks=False)
                if stat.S_ISDIR(dst.st_mode):
                    os.chmod(d, stat.S_IMODE(dst.st_mode) | 0o700, dir_fd=dfd)
    for dirpath, dirnames, filenames, dfd in os.fwalk(path, topdown=False, follow_symlinks=False):
        for name in filenames:
            os.unlink(name, dir_fd=dfd)
            if not called:
                called = True
                on_first()
        for name in dirnames:
            if stat.S_ISLNK(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode):
                os.unlink(name, dir_fd=dfd)
            else:
                os.rmdir(name, dir_fd=dfd)
    os.rmdir(path)


class _Target:
    """The restore target, opened once; every path below it is reached without following links."""

    def __init__(self, target: Path) -> None:
        self.root = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)

    def parent(self, name: str, create: bool = True) -> tuple[int, str]:
        fd = os.dup(self.root)
        *parts, leaf = name.split("/")
        for part in parts:
            try:
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o700, dir_fd=fd)
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return fd, leaf

    def dir_fd(self, name: str) -> int:
        dfd, leaf = self.parent(name + "/x")
        return dfd

    def close(self) -> None:
        os.close(self.root)


def restore(archive: Path, manifest: Path, target: Path, owner: tuple[int, int] | None = None) -> VerifyResult:
    """Extract into target (new or empty), refusing anything that would land outside it; then re-check from disk.

    The archive is verified first, so nothing is written from a tampered or unsafe archive. Raises UnsafeArchive
    for an unsafe one and FileExistsError for a target with something in it; returns the post-extraction check
    otherwise. ``owner`` (uid, gid): hand every entry to this account instead of the stored owners (a student's
    files restored for that student). Owners are only set when running as root.
    """
    target = Path(target)
    first = verify_archive(archive, manifest)
    if first.unsafe:
        raise UnsafeArchive(f"{archive}: refusing to restore, unsafe members: {', '.join(first.unsafe[:5])}")
    if not first.ok:
        return first
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    if not created and any(target.iterdir()):
        raise FileExistsError(f"{target}: restore target must be empty")
    try:
        check = _extract(archive, manifest, target, owner)
    except BaseException:
        _undo(target, created)
        raise
    if not check.ok:
        _undo(target, created)
    return check


def _undo(target: Path, created: bool) -> None:
    """A failed restore leaves nothing behind: the target as it was found."""
    if created:
        remove_tree(target)
        return
    for child in target.iterdir():
        remove_tree(child)


def _extract(archive: Path, manifest: Path, target: Path, owner: tuple[int, int] | None) -> VerifyResult:
    doc = json.loads(Path(manifest).read_text())
    as_root = os.geteuid() == 0

    def ids(entry: dict) -> tuple[int, int] | None:
        if not as_root:
            return None
        if owner is not None:
            return owner
        return (entry["uid"], entry["gid"]) if entry.get("uid") is not None else None

    by_file = {f["path"]: f for f in doc["files"]}
    write_error: list[OSError] = []
    t = _Target(target)
    try:
        for d in doc.get("dirs", []):
            os.close(t.dir_fd(d["path"]))

        def open_file(m):
            dfd, leaf = t.parent(m.name)
            fd = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dfd)
            os.close(dfd)
            entry = by_file[m.name]

            def sink(chunk: bytes | None) -> None:
                if chunk is not None:
                    try:
                        while chunk:
                            chunk = chunk[os.write(fd, chunk):]
                    except OSError as exc:
                        os.close(fd)  # the disk is full, say: no descriptor left open on the target
                        write_error.append(exc)
                        raise
                    return
                who = ids(entry)
                if who:
                    os.fchown(fd, *who)
                os.fchmod(fd, int(entry["mode"], 8) & MODE_MASK)  # after chown: chown clears setid bits anyway
                os.utime(fd, (m.mtime, m.mtime))
                os.close(fd)
            return sink

        scan = _scan(archive, manifest, on_file=open_file)
        if write_error:  # the archive was fine (verified above); writing it out was not
            scan.error = f"{target}: could not write the restored files: {write_error[0]}"
        if not scan.ok:
            return scan
        for h in doc.get("hardlinks", []):
            sfd, sleaf = t.parent(h["target"], create=False)
            dfd, leaf = t.parent(h["path"])
            os.link(sleaf, leaf, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
            os.close(sfd)
            os.close(dfd)
        # Links last: nothing is written below a path once a link could stand on it.
        for s in doc.get("symlinks", []):
            dfd, leaf = t.parent(s["path"])
            os.symlink(s["target"], leaf, dir_fd=dfd)
            who = ids(s)
            if who:
                os.chown(leaf, *who, dir_fd=dfd, follow_symlinks=False)
            os.close(dfd)
        # Directories deepest first, so a read-only directory is closed only after everything below it is in.
        root = doc.get("root")
        entries = sorted(doc.get("dirs", []), key=lambda d: d["path"].count("/"), reverse=True)
        for d in [*entries, *([{**root, "path": "."}] if root else [])]:
            fd = os.dup(t.root) if d["path"] == "." else t.dir_fd(d["path"])
            try:
                who = ids(d)
                if who:
                    os.fchown(fd, *who)
                os.fchmod(fd, int(d["mode"], 8) & MODE_MASK)
            finally:
                os.close(fd)
    finally:
        t.close()
    return compare_tree(target, doc)


def compare_tree(target: Path, doc: dict) -> VerifyResult:
    """Re-read the restored tree from disk and compare every entry to the manifest (content, type, mode, target)."""
    import hashlib

    res = VerifyResult(ok=False, archive_sha256_ok=True)
    for f in doc["files"]:
        path = target / f["path"]
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                raise FileNotFoundError(path)
            sha, size = hashlib.sha256(), 0
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    sha.update(chunk)
                    size += len(chunk)
        except FileNotFoundError:
            res.missing.append(f["path"])
            continue
        except PermissionError:  # a 0000 file, restored as such, unreadable to a non-root restorer: check metadata
            size, digest = st.st_size, f["sha256"]
        else:
            digest = sha.hexdigest()
        if (size, digest, format(st.st_mode & MODE_MASK, "04o")) != (f["size"], f["sha256"], f["mode"]):
            res.mismatched.append(f["path"])
        res.files += 1
        res.bytes += size
    for s in doc.get("symlinks", []):
        path = target / s["path"]
        if not path.is_symlink():
            res.missing.append(s["path"])
        elif os.readlink(path) != s["target"]:
            res.mismatched.append(s["path"])
    for h in doc.get("hardlinks", []):
        try:
            if not os.path.samestat(os.lstat(target / h["path"]), os.lstat(target / h["target"])):
                res.mismatched.append(h["path"])
        except FileNotFoundError:
            res.missing.append(h["path"])
    for d in doc.get("dirs", []):
        path = target / d["path"]
        if path.is_symlink() or not path.is_dir():
            res.missing.append(d["path"])
        elif format(path.lstat().st_mode & MODE_MASK, "04o") != d["mode"]:
            res.mismatched.append(d["path"])
    res.ok = not (res.missing or res.mismatched)
    return res
