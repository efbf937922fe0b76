"""One writer per state dir: the lock ``up``, ``apply``, ``lifecycle run``, ``archive restore`` and ``down`` hold.

Two writers on one state dir race on everything in it: both see a hub as not running and start it (two JupyterHubs
on one sqlite database), one stops what the other just started, and a ``down`` that returns while an ``up`` is still
in its first apply is undone by that ``up`` a few seconds later. So every command that changes the state dir holds
an exclusive ``flock`` on ``<state>/hubfleet.lock`` for as long as it runs.

Why flock: the kernel drops the lock when the holder's last descriptor closes, which includes ``kill -9`` and a
crash, so there is no stale lock to clean up and no pid guessing. The descriptor is close-on-exec, so hubs and
proxies started by the holder do not keep it; a child *forked* without exec (a multiprocessing worker) does, and
then counts as a holder until it exits, which is right: it may still be writing.

The file's content names the holder (pid, command line, since when) for the refusal message; the lock itself is
the flock, never the content. ``down`` uses ``stop_holder``: it signals the holder (SIGTERM, which the CLI turns
into the same clean stop as Ctrl-C), waits for the lock, and only then stops the fleet, so nothing is started
behind its back.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from hubfleet.backends.base import WriterBusy

__all__ = ["Holder", "StateLock", "StateLocked", "holder", "stop_holder"]

LOCK_NAME = "hubfleet.lock"


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str
    since: str  # ISO 8601, UTC
    pids: tuple[int, ...] = ()  # every live process that holds the lock (the recorded one, or forked workers)

    def describe(self) -> str:
        alive = self.pid in self.pids
        who = f"pid {self.pid}" + ("" if alive or not self.pids else
                                   f" (gone; still held by its child process(es) {', '.join(map(str, self.pids))})")
        return f"`{self.command}` ({who}, since {self.since})"


class StateLocked(WriterBusy):
    def __init__(self, state: Path, holder: Holder | None) -> None:
        self.state, self.holder = state, holder
        who = holder.describe() if holder else "another hubfleet process (it has not written its name yet)"
        super().__init__(f"{state} is in use by {who}. One command at a time changes a fleet: wait for it to "
                         "finish, or stop it (`hubfleet down` stops a running `up` and everything it started).")


class StateLock:
    """``with StateLock(state, "hubfleet apply ..."):`` or ``acquire()`` / ``release()``; raises ``StateLocked``."""

    def __init__(self, state: Path, command: str | None = None) -> None:
        self.state = Path(state)
        self.path = self.state / LOCK_NAME
        self.command = command or " ".join(["hubfleet", *sys.argv[1:]])
        self._fd: int | None = None

    def acquire(self, timeout: float = 0.0) -> None:
        """Take the lock, waiting up to ``timeout`` seconds for a holder to let go; raise ``StateLocked``."""
        self.state.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise
            if time.monotonic() >= deadline:
                os.close(fd)
                raise StateLocked(self.state, holder(self.state))
            time.sleep(0.1)
        self._fd = fd
        since = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
        text = json.dumps({"pid": os.getpid(), "command": self.command, "since": since}) + "\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            # Leave the name behind: it is only read while someone holds the flock, and truncating here would
            # race with the next holder's write.
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def holder(self) -> str | None:
        """Who holds this state dir now (the ``WriterLock`` contract), described for ``status``."""
        who = holder(self.state)
        return who.describe() if who is not None else None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(state: Path) -> Holder | None:
    """Who holds the lock now, or None if nobody does."""
    path = Path(state) / LOCK_NAME
    pids = _holding_pids(path)
    if not pids:
        return None
    data: dict = {}
    for _ in range(20):  # the holder writes its name just after taking the lock
        try:
            data = json.loads(path.read_text() or "{}")
            break
        except (OSError, ValueError):
            time.sleep(0.05)
    pid = int(data.get("pid") or min(pids))
    return Holder(pid=pid, command=str(data.get("command", "hubfleet")), since=str(data.get("since", "?")),
                  pids=tuple(sorted(pids)))  # fmt: skip


def stop_holder(lock: StateLock, timeout: float = 120.0) -> Holder | None:
    """Take ``lock``, first stopping whoever holds it: SIGTERM to every process holding it, wait up to ``timeout``
    seconds for the lock, then SIGKILL. Returns who held it (None if nobody did). Only processes that hold this very
    lock are signalled."""
    try:
        lock.acquire()
        return None
    except StateLocked as exc:
        who = exc.holder
    for pid in who.pids if who else ():
        _signal(pid, signal.SIGTERM)
    try:
        lock.acquire(timeout)
    except StateLocked as exc:
        for pid in exc.holder.pids if exc.holder else ():
            _signal(pid, signal.SIGKILL)
        lock.acquire(30)
    return who


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        psutil.Process(pid).send_signal(sig)
    except psutil.Error:
        pass


def _holding_pids(path: Path) -> set[int]:
    """Live processes holding the flock on ``path``: the one /proc/locks names, or, if it is gone, the processes that
    inherited its descriptor (forked workers)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return set()
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    named: set[int] = set()
    try:
        for line in Path("/proc/locks").read_text().splitlines():
            parts = line.split()
            # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"; a blocked waiter's line has "->" and holds nothing.
            if "->" not in parts and len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == inode:
                named.add(int(parts[4]))
    except OSError:
        return set()
    if not named:
        return set()
    alive = {pid for pid in named if psutil.pid_exists(pid)}
    if alive:
        return alive
    holders = set()
    for proc in psutil.process_iter():
        try:
            if any(f.path == str(path) for f in proc.open_files()):
                holders.add(proc.pid)
        except psutil.Error:
            pass
    return holders
