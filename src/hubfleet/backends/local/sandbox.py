"""The private mount namespace each student's server runs in on a local hub (root mode): Debian's bubblewrap.

A server sees the machine read-only as usual (interpreters, /usr, /etc), except:

* the storage root, the fleet's state dir and the archive store are empty (a tmpfs each): no other student's
  home, no database, roster, log or archive is even there to try;
* inside the storage root there is only the student's home path, and in it only this hub's dotfiles
  (``<home>/.hubfleet/<hub>``, shown as the home) with this presentation's course folder bound at its usual path
  (``<home>/TM351-2026J``) and the declared extra mounts. The student's other courses are not visible, so a tutor
  who opens the server (JupyterHub's ``access:servers``) sees this course only;
* ``/tmp``, ``/var/tmp`` and ``/dev/shm`` are private to the server;
* its own pid and IPC namespaces: it cannot see or signal other students' processes, and when the server dies its
  kernels die with it.

bwrap runs as root (hubfleet's hub is root) to build the namespace, then ``setpriv`` drops to the student's account
with no capabilities left in the bounding set, and ``no_new_privs`` set by bwrap, so a setuid binary gives nothing
back. Paths stay exactly where they are on the host, so the hub, the archiver and the student agree on every path.

A course folder is a mount point inside the sandbox, so it cannot be renamed away or replaced by the student
(``EBUSY``): that is what makes the read-only phase hold (issue 15).

ref: https://github.com/containers/bubblewrap (bwrap(1)); https://man7.org/linux/man-pages/man1/setpriv.1.html
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Confinement", "command", "find_bwrap", "find_setpriv"]

PRIVATE_TMP = (Path("/tmp"), Path("/var/tmp"))


@dataclass(frozen=True)
class Confinement:
    """What one server may see. Every path is a host path and appears at the same path inside."""

    uid: int
    gid: int
    home: Path  # the student's home path (shown, but holding only what is bound below)
    hub_home: Path  # this hub's dotfiles, bound (read-write) at ``home``
    course: tuple[tuple[Path, Path, bool], ...]  # (real dir, path inside, read_only): course folders, extra mounts
    hidden: tuple[Path, ...]  # state dir, storage root, archive store: empty inside
    runtime: tuple[Path, ...]  # read-only paths the server needs that may lie under a hidden one (venv, lab config)
    cwd: Path


def find_bwrap() -> str | None:
    return shutil.which("bwrap")


def find_setpriv() -> str | None:
    return shutil.which("setpriv")


def command(conf: Confinement, inner: list[str], *, bwrap: str, setpriv: str) -> list[str]:
    """The argv that runs ``inner`` as the student inside the sandbox ``conf`` describes."""
    argv = [
        bwrap,
        "--die-with-parent",  # the hub's stop (a signal to bwrap) ends the whole server, kernels included
        "--new-session",  # no TIOCSTI into a terminal outside. ref: bwrap(1) --new-session
        "--unshare-pid", "--unshare-ipc",
        "--ro-bind", "/", "/",
        "--dev", "/dev",  # a fresh /dev with its own /dev/shm
        "--proc", "/proc",
    ]  # fmt: skip
    masked: list[Path] = []
    for tmp in PRIVATE_TMP:
        argv += ["--perms", "1777", "--tmpfs", str(tmp)]
        masked.append(tmp)
    for path in sorted(set(conf.hidden), key=lambda p: len(p.parts)):
        if not _under(path, masked):
            argv += ["--perms", "0711", "--tmpfs", str(path)]
            masked.append(path)
    made: set[Path] = set(masked)

    def parents(target: Path) -> None:
        # Directories bwrap would otherwise create 0700 root: make the path down to a mount point traversable.
        nonlocal argv
        for d in reversed(target.parents):
            if d not in made and _under(d, masked) and d not in masked:
                argv += ["--perms", "0711", "--dir", str(d)]
                made.add(d)

    parents(conf.home)
    argv += ["--bind", str(conf.hub_home), str(conf.home)]
    made.add(conf.home)
    for real, inside, read_only in sorted(conf.course, key=lambda m: len(m[1].parts)):
        parents(inside)
        argv += ["--ro-bind" if read_only else "--bind", str(real), str(inside)]
        made.add(inside)
    for path in conf.runtime:
        if _under(path, masked):
            parents(path)
            argv += ["--ro-bind", str(path), str(path)]
            made.add(path)
    argv += ["--chdir", str(conf.cwd), "--"]
    argv += [setpriv, f"--reuid={conf.uid}", f"--regid={conf.gid}", "--init-groups", "--bounding-set=-all", "--"]
    return argv + list(inner)


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)
