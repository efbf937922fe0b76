"""Where one student's files live on a local hub, and the OS accounts that keep students apart.

In-server paths in the spec (``/home/{username}``, ``/home/{username}/TM351-2026J``, extra mounts) are mapped onto
the storage root, following the presentation's storage layout (DESIGN.md "Storage layouts"):

* ``personal-subfolder``: home ``<storage>/home/<user>``, course folder ``<home>/TM351-2026J``;
* ``per-presentation``: home as above, course folder ``<storage>/presentations/TM351-2026J/<user>`` with a symlink
  ``<home>/TM351-2026J`` to it, so students find it where the personal layout puts it;
* ``ephemeral``: home ``<storage>/ephemeral/<hub>/<user>``, deleted when the server stops.

Every path component that names a user is ``naming.storage_name(username)`` (injective: ``alice.smith`` and
``alice-2esmith`` never share a folder). As root, each student is a system user
``naming.unix_account(fleet prefix, username)`` (no login shell) owning a 0700 home, and the directories above the
homes are 0711 (traverse, not list), so a student cannot read, or even list, another student's files.

Each hub's servers keep their own dotfiles (``~/.jupyter``, ``~/.local``, lab settings) in
``<home>/.hubfleet/<hub>``: the server's sandbox (``sandbox.py``) shows that folder as the home, with only this
hub's course folders bound into it, so nothing of another course is visible from this hub.
"""

from __future__ import annotations

import fcntl
import grp
import os
import pwd
import shutil
import stat
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from hubfleet.catalog import naming
from hubfleet.lifecycle.archive import frozen_originals, originals_record
from hubfleet.lifecycle.restoring import remove_tree
from hubfleet.plan.spec import PresentationSpec

__all__ = [
    "STUB_NAME", "Owner", "Workspace", "course_dirs", "ensure_system_user", "existing_owner", "is_read_only",
    "remove_course_folder", "set_read_only", "username_of", "workspace_for", "write_stub",
]

READ_ONLY_MARKER = ".hubfleet-read-only"


@dataclass(frozen=True)
class Owner:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class Workspace:
    """Real (host) paths of one user's files for one presentation."""

    username: str
    home: Path
    course_dir: Path  # the real directory (seeding and permissions act on this, never through a link)
    course_path: Path  # where the server sees it: <home>/<COURSE-PRES>; a symlink in the per-presentation layout
    mounts: tuple[Path, ...]
    ephemeral: bool
    hub_home: Path  # this hub's dotfiles, shown as the home inside the server's sandbox

    @property
    def course_rel(self) -> str:
        """The course folder as a Jupyter API path (relative to the server's root_dir = home)."""
        return self.course_path.relative_to(self.home).as_posix()


def workspace_for(storage_root: Path, hub: str, username: str, pres: PresentationSpec) -> Workspace:
    layout = pres.storage.layout
    name = Path(pres.storage.course_dir).name  # TM351-2026J: the planner's frozen folder name
    stored = naming.storage_name(username)
    if layout == "ephemeral":
        home = storage_root / "ephemeral" / hub / stored
    else:
        home = storage_root / "home" / stored
    course_path = home / name
    course_dir = storage_root / "presentations" / pres.key / stored if layout == "per-presentation" else course_path
    server_home = pres.storage.home.replace("{username}", username)
    server_course = pres.storage.course_dir.replace("{username}", username)
    mounts = []
    for mount in pres.storage.extra_mounts:
        inside = mount.path.replace("{username}", username)
        mapped = _map(inside, server_course, course_dir) or _map(inside, server_home, home)
        if mapped is None:
            # The local backend has no bind mounts: a path outside the home cannot be given to one student.
            raise ValueError(f"extra mount {mount.name!r}: {inside} is outside {server_home}; not supported locally")
        mounts.append(mapped)
    hub_home = home / ".hubfleet" / hub
    return Workspace(username, home, course_dir, course_path, tuple(mounts), layout == "ephemeral", hub_home)


def _map(inside: str, prefix: str, real: Path) -> Path | None:
    rel = os.path.relpath(inside, prefix)
    if rel == "." or (not rel.startswith("..") and not os.path.isabs(rel)):
        return real if rel == "." else real / rel
    return None


def prepare(ws: Workspace, storage_root: Path, owner: Owner | None, *, mounts: bool = True) -> None:
    """Create the directories (idempotent). With an owner (root mode): 0711 parents, 0700 owned homes.
    ``mounts=False``: not the extra mounts' directories (a restore extracts first, then calls ``make_mounts``)."""
    for parent in {ws.home.parent, ws.course_dir.parent}:
        _mkdir_chain(storage_root, parent, 0o711 if owner else 0o755)
    _own_dir(ws.home, owner)
    if ws.course_dir != ws.course_path:
        _own_dir(ws.course_dir, owner)
        if not ws.course_path.is_symlink():
            if ws.course_path.exists():
                raise FileExistsError(f"{ws.course_path} exists and is not hubfleet's link to {ws.course_dir}")
            ws.course_path.symlink_to(ws.course_dir)
            if owner:
                os.chown(ws.course_path, owner.uid, owner.gid, follow_symlinks=False)
    else:
        _own_dir(ws.course_dir, owner)
    if mounts:
        make_mounts(ws, owner)


def make_mounts(ws: Workspace, owner: Owner | None) -> None:
    """The extra mounts' directories inside the home or course folder (those not there yet)."""
    for mount in ws.mounts:
        for d in reversed([mount, *mount.parents]):
            if d == ws.home or d == ws.course_dir or not (ws.home in d.parents or ws.course_dir in d.parents):
                continue
            _own_dir(d, owner)
    # The sandbox's home: the student's own (so dotfiles persist), with empty mount points for the course folder
    # and the extra mounts outside it, made here as the student's rather than by bwrap as root.
    for d in (ws.home / ".hubfleet", ws.hub_home):
        _own_dir(d, owner)
    for target in (ws.course_path, *(m for m in ws.mounts if ws.course_dir not in m.parents)):
        inner = ws.hub_home / target.relative_to(ws.home)
        for d in reversed([inner, *inner.parents]):
            if ws.hub_home in d.parents:
                _own_dir(d, owner)


def _mkdir_chain(top: Path, path: Path, mode: int) -> None:
    top.mkdir(parents=True, exist_ok=True)
    if mode == 0o711:
        # Students must be able to traverse the storage root to reach their own home.
        top.chmod(stat.S_IMODE(top.stat().st_mode) | 0o111)
    for d in reversed([path, *path.parents]):
        if d == top or top not in d.parents:
            continue
        if not d.is_dir():
            d.mkdir(mode=mode)
            d.chmod(mode)  # umask-proof


def _own_dir(path: Path, owner: Owner | None) -> None:
    if path.is_symlink():
        raise PermissionError(f"{path} is a symlink; refusing to use it as a directory")
    if not path.is_dir():
        path.mkdir(mode=0o700)
        if owner:
            os.chown(path, owner.uid, owner.gid)
        return
    if owner and not _frozen(path):
        st = path.stat()
        if (st.st_uid, st.st_gid) != (owner.uid, owner.gid):
            os.chown(path, owner.uid, owner.gid)
        if st.st_mode & 0o077:
            path.chmod(0o700)


def _frozen(path: Path) -> bool:
    return any((d / READ_ONLY_MARKER).exists() for d in (path, *path.parents))


def remove(ws: Workspace) -> None:
    """Delete an ephemeral home (workshops keep nothing)."""
    if ws.ephemeral:
        shutil.rmtree(ws.home, ignore_errors=True)


def set_read_only(course_dir: Path, read_only: bool, owner: Owner | None = None) -> None:
    """Freeze (or unfreeze) a course folder: students can open and download, not change, their files.

    Clearing write bits alone is advisory: a student owns the files and could ``chmod u+w`` them back. So with an
    ``owner`` (root mode) the tree is also handed to root, group = the student's group, readable by that group.
    A marker file records the state so unfreezing only touches a tree hubfleet froze. Symlinks are never
    followed (a student could point one at another student's files).
    """
    course_dir = Path(course_dir)
    marker = course_dir / READ_ONLY_MARKER
    if not course_dir.is_dir() or course_dir.is_symlink() or read_only == marker.exists():
        return
    # What the freeze changes is recorded in the marker, so the archive keeps, and a thaw gives back, the student's
    # own modes and owners (not the frozen 0440 root-owned ones).
    originals: dict = {}
    first_seen: dict[tuple[int, int], list[int]] = {}  # a hard-linked file is met once per name, frozen at the first
    if not read_only:
        originals = frozen_originals(course_dir)
        marker.unlink()
    for path in _walk(course_dir):
        st = path.lstat()
        is_dir = stat.S_ISDIR(st.st_mode)
        rel = path.relative_to(course_dir).as_posix()
        if read_only:
            originals[rel] = first_seen.setdefault((st.st_dev, st.st_ino), [stat.S_IMODE(st.st_mode), st.st_uid,
                                                                            st.st_gid])
        if not read_only and rel in originals:
            mode, uid, gid = originals[rel]
            if owner:
                os.chown(path, uid, gid, follow_symlinks=False)
            path.chmod(mode & 0o1777)
            continue
        if read_only:
            if owner:
                os.chown(path, 0, owner.gid, follow_symlinks=False)
                path.chmod((0o550 if is_dir else 0o440) | (st.st_mode & 0o100 and 0o110))
            else:
                path.chmod(stat.S_IMODE(st.st_mode) & ~0o222)
        else:
            if owner:
                os.chown(path, owner.uid, owner.gid, follow_symlinks=False)
            mode = stat.S_IMODE(st.st_mode) | 0o200
            path.chmod(mode | 0o700 if is_dir else mode)
    if read_only:
        marker.write_text("This folder is read-only: the presentation has ended. Download what you need.\n"
                          + originals_record(originals))
        marker.chmod(0o444)
        if owner:
            os.chown(marker, 0, owner.gid)


def is_read_only(course_dir: Path) -> bool:
    """Did :func:`set_read_only` freeze this folder?"""
    return (Path(course_dir) / READ_ONLY_MARKER).exists()


def _walk(top: Path):
    yield top
    for root, dirs, files in os.walk(top, followlinks=False):
        for name in dirs + files:
            path = Path(root) / name
            if not path.is_symlink():
                yield path


# -- system users (root mode) --------------------------------------------------------------------------------


_ACCOUNT_LOCK = threading.Lock()
# useradd is machine-wide, so the lock is too: every hub (one process each) and every fleet on this machine.
ACCOUNT_LOCK_FILE = Path("/run/lock/hubfleet-accounts.lock")


def account_comment(fleet: str, username: str) -> str:
    """The GECOS comment that marks an account as this fleet's (``:`` and newlines cannot occur in it)."""
    return f"hubfleet {fleet} {naming.storage_name(username)}"


def ensure_system_user(username: str, home: Path, prefix: str, fleet: str) -> Owner:
    """Create the student's account once (system account, no login shell, no home made by useradd: ours exists).

    Serialised (a thread lock and an flock on a machine-wide file) so two first spawns of one student cannot race
    on useradd. An existing account is reused only if its comment names this fleet and this user; anything else
    (another fleet's student, a local account that happens to have the name) is refused, never adopted.
    """
    name = naming.unix_account(prefix, username)
    comment = account_comment(fleet, username)
    with _ACCOUNT_LOCK, _flock(ACCOUNT_LOCK_FILE):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", str(home),
                 "--shell", "/usr/sbin/nologin", "--comment", comment, name],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            entry = pwd.getpwnam(name)
    if entry.pw_gecos != comment:
        raise PermissionError(
            f"system account {name} exists but is not fleet {fleet}'s account for {username} (its comment is "
            f"{entry.pw_gecos!r}); refusing to run this student's server as it. Set fleet.account_prefix to a "
            "prefix no other fleet on this machine uses, or remove the stale account."
        )
    grp.getgrgid(entry.pw_gid)  # fail early if the user group is missing
    return Owner(name, entry.pw_uid, entry.pw_gid)


class _flock:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


# -- the archive phase: whose folders exist, removing them, the stub left behind ------------------------------

STUB_NAME = "WHERE-ARE-MY-FILES.txt"


def course_dirs(storage_root: Path, pres: PresentationSpec) -> dict[str, Path]:
    """{username: real course folder} of everyone (students and team) with a folder for this presentation.

    Read from the disk, not the roster: a student dropped from the roster mid-presentation still has work to keep.
    Symlinks are skipped (a student could plant one pointing at someone else's folder).
    """
    root = Path(storage_root)
    name = Path(pres.storage.course_dir).name
    if pres.storage.layout == "personal-subfolder":
        candidates = ((home.name, home / name) for home in _subdirs(root / "home"))
    elif pres.storage.layout == "per-presentation":
        candidates = ((d.name, d) for d in _subdirs(root / "presentations" / pres.key))
    else:
        return {}  # ephemeral: nothing is kept, so nothing is archived
    return {username_of(stored): path for stored, path in candidates if path.is_dir() and not path.is_symlink()}


def username_of(stored: str) -> str:
    """The username a folder name (``naming.storage_name``) stands for; a name cut short (``_`` + hash) cannot be
    decoded and is returned as it is, which still names the folder uniquely."""
    if "_" in stored:
        return stored
    out = bytearray()
    i = 0
    try:
        while i < len(stored):
            if stored[i] == "-":
                out.append(int(stored[i + 1:i + 3], 16))
                i += 3
            else:
                out.extend(stored[i].encode())
                i += 1
        name = out.decode()
    except (ValueError, IndexError, UnicodeDecodeError):
        return stored
    return name if naming.storage_name(name) == stored else stored


def _subdirs(parent: Path) -> list[Path]:
    try:
        return sorted(p for p in parent.iterdir() if p.is_dir() and not p.is_symlink())
    except FileNotFoundError:
        return []


def existing_owner(username: str, prefix: str) -> Owner | None:
    """The student's system user if one was ever created (root mode); never creates one."""
    try:
        entry = pwd.getpwnam(naming.unix_account(prefix, username))
    except KeyError:
        return None
    return Owner(entry.pw_name, entry.pw_uid, entry.pw_gid)


def remove_course_folder(storage_root: Path, pres: PresentationSpec, username: str, course_dir: Path | None,
                         halfway=None) -> None:
    """Delete one student's course folder (the caller has verified its archive and journalled the intent), and the
    per-presentation link. Gone already is fine (a removal a killed run started, finished now).

    ``remove_tree`` unlinks symlinks without following them (fd-based), so a link a student planted cannot make this
    delete anything outside the folder. A frozen tree has no write bits: root does not need them, any other account
    gets them back first (the files are its own in demo mode).
    """
    if course_dir is not None and Path(course_dir).is_dir() and not Path(course_dir).is_symlink():
        remove_tree(Path(course_dir), halfway)
    link = Path(storage_root) / "home" / naming.storage_name(username) / Path(pres.storage.course_dir).name
    if pres.storage.layout == "per-presentation" and link.is_symlink():
        link.unlink()


def write_stub(home: Path, text: str, owner: Owner | None) -> Path:
    """Write ``<home>/WHERE-ARE-MY-FILES.txt`` atomically, owned by the student. The home is the student's, so the
    temp file is created O_EXCL|O_NOFOLLOW and renamed over the name: a planted symlink is replaced, never
    written through."""
    home = Path(home)
    if not home.is_dir():
        home.mkdir(parents=True, mode=0o700)
        if owner:
            os.chown(home, owner.uid, owner.gid)
    if home.is_symlink():
        raise PermissionError(f"{home} is a symlink; refusing to write the stub through it")
    target = home / STUB_NAME
    tmp = home / f".{STUB_NAME}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if owner:
            os.chown(tmp, owner.uid, owner.gid)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
