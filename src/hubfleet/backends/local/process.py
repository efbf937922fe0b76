"""Detached processes (hubs, proxies) that hubfleet finds again after it restarts itself.

A hub must outlive the ``hubfleet apply`` that started it, so it runs in its own session (no controlling terminal,
not killed by the caller's Ctrl-C) with output going to a log file. hubfleet finds it again through a pidfile that
stores the pid *and* the process create time: pids are recycled, and a bare-pid file would one day make hubfleet
report (or kill!) an unrelated process as "the hub". A record only counts as alive if a process with that pid
exists and started at the recorded time.

"Started at" is the kernel's start time in clock ticks since boot (``/proc/<pid>/stat``) plus the boot id, not
the wall-clock create time: psutil derives that from ``btime`` in ``/proc/stat``, which moves with the system clock
(an NTP step, or a 1 s flip of a truncated btime), and a live hub that suddenly "started at another time" would be
taken for dead and started a second time on the same database. Records written before that field existed fall back
to the create time with a tolerance of a few seconds.

Every process started here carries ``HUBFLEET_PIDFILE=<its pidfile>`` in its environment, so it can be found even
when its record is lost or names another process: ``start_detached`` adopts a live one instead of starting a
second, ``stop`` stops it, and ``hubfleet down`` sweeps every one of a state dir (``marked``).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

__all__ = [
    "MARKER_ENV", "ProcessRecord", "StartFailed", "marked", "read_alive", "read_record", "start_detached", "stop",
]

MARKER_ENV = "HUBFLEET_PIDFILE"
# Only for records without start ticks (written by older versions): btime may have moved by a second or two since.
_CREATE_TIME_TOLERANCE = 2.5
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")

# Popen objects of children we started in *this* interpreter, kept so their exit status can be collected
# (otherwise a stopped hub lingers as a zombie until hubfleet exits, and psutil reports it as still present).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class StartFailed(RuntimeError):
    """The process exited immediately; the message carries the tail of its log."""


@dataclass(frozen=True)
class ProcessRecord:
    pid: int
    create_time: float
    argv: list[str] = field(default_factory=list)
    log_path: str | None = None
    start_ticks: int | None = None  # kernel start time, clock ticks since boot: the identity that never moves
    boot_id: str | None = None

    def process(self) -> psutil.Process | None:
        """The live ``psutil.Process`` this record names, or None if it is gone or the pid was reused."""
        _reap(self.pid)
        try:
            proc = psutil.Process(self.pid)
            if not self._same(proc):
                return None  # same number, different process
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return None

    def _same(self, proc: psutil.Process) -> bool:
        current = _boot_id()
        if self.start_ticks is not None and self.boot_id is not None and current is not None:
            return current == self.boot_id and _start_ticks(proc.pid) == self.start_ticks
        return abs(proc.create_time() - self.create_time) <= _CREATE_TIME_TOLERANCE

    def started_before(self, proc: psutil.Process) -> bool:
        """Did ``proc`` start after this record's process (by kernel start ticks when both are known)?"""
        ticks = _start_ticks(proc.pid)
        if self.start_ticks is not None and ticks is not None and self.boot_id == _boot_id():
            return ticks >= self.start_ticks
        return proc.create_time() >= self.create_time - _CREATE_TIME_TOLERANCE

    def rss_bytes(self, *, children: bool = True) -> int:
        """Resident memory of the process (and, by default, all its descendants); 0 if gone."""
        proc = self.process()
        if proc is None:
            return 0
        procs = [proc, *(proc.children(recursive=True) if children else [])]
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total


def start_detached(
    argv: Sequence[str],
    cwd: str | os.PathLike[str],
    env: Mapping[str, str] | None,
    log_path: str | os.PathLike[str],
    pidfile: str | os.PathLike[str],
) -> ProcessRecord:
    """Start ``argv`` in a new session with stdout+stderr appended to ``log_path``; record it in ``pidfile``.

    If ``pidfile`` already names a live process, that record is returned and nothing new is started, so
    calling this twice is harmless; so is a lost or stale record while the process it was for still runs (found by
    its marker and argv, re-recorded and returned). Raises ``StartFailed`` if the process dies at once (bad argv,
    port taken...).
    """
    existing = read_alive(pidfile) or _adopt(Path(pidfile), list(argv))
    if existing is not None:
        return existing
    for pid in list(_CHILDREN):  # collect the children that exited since (a long-lived portal wakes many hubs)
        _reap(pid)
    env = dict(os.environ if env is None else env)
    env[MARKER_ENV] = str(Path(pidfile).absolute())
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        popen = subprocess.Popen(  # noqa: S603 - argv is built by hubfleet, never a shell string
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # New session = new process group led by the child: stop() can signal the whole group (JupyterHub
            # and any helper it forks) and a terminal's SIGINT/SIGHUP to hubfleet does not reach it.
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[popen.pid] = popen
    try:
        create_time = psutil.Process(popen.pid).create_time()
    except psutil.NoSuchProcess:
        create_time = 0.0
    record = _record_of(popen.pid, create_time, list(argv), str(log_path))
    if popen.poll() is not None or create_time == 0.0:
        raise StartFailed(f"{argv[0]} exited with {popen.poll()} at once; log tail:\n{_tail(log_path)}")
    _write_record(Path(pidfile), record)
    return record


def read_record(pidfile: str | os.PathLike[str]) -> ProcessRecord | None:
    """The record in ``pidfile`` whether or not the process still runs; None if absent or unreadable."""
    try:
        data = json.loads(Path(pidfile).read_text())
        ticks = data.get("start_ticks")
        return ProcessRecord(
            pid=int(data["pid"]),
            create_time=float(data["create_time"]),
            argv=list(data.get("argv", [])),
            log_path=data.get("log_path"),
            start_ticks=int(ticks) if ticks is not None else None,
            boot_id=data.get("boot_id"),
        )
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def marked(prefix: str | os.PathLike[str]) -> list[psutil.Process]:
    """Live processes started by ``start_detached`` with a pidfile under ``prefix`` (a state dir, a hub dir), whatever
    their records say; a process whose parent carries the same marker (a helper it forked) is not listed apart."""
    prefix = str(Path(prefix).absolute()).rstrip("/") + "/"
    found: dict[int, tuple[psutil.Process, str]] = {}
    for proc in psutil.process_iter():
        mark = _marker(proc)
        if mark is not None and mark.startswith(prefix):
            found[proc.pid] = (proc, mark)
    out = []
    for pid, (proc, mark) in found.items():
        try:
            parent = proc.ppid()
        except psutil.Error:
            continue
        if parent in found and found[parent][1] == mark:
            continue
        out.append(proc)
    return out


def _marker(proc: psutil.Process) -> str | None:
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.environ().get(MARKER_ENV)
    except psutil.Error:
        return None


def _adopt(pidfile: Path, argv: list[str]) -> ProcessRecord | None:
    """The live process started for ``pidfile`` with this ``argv`` if there is one (its record was lost, or names a
    process that is gone): recorded again and returned, so nobody starts a second one next to it."""
    wanted = str(pidfile.absolute())
    for proc in marked(pidfile.parent):
        try:
            if _marker(proc) != wanted or (argv and proc.cmdline()[-len(argv):] != argv):
                continue
            old = read_record(pidfile)
            record = _record_of(proc.pid, proc.create_time(), argv, old.log_path if old else None)
        except psutil.Error:
            continue
        _write_record(pidfile, record)
        return record
    return None


def _record_of(pid: int, create_time: float, argv: list[str], log_path: str | None) -> ProcessRecord:
    return ProcessRecord(pid=pid, create_time=create_time, argv=argv, log_path=log_path,
                         start_ticks=_start_ticks(pid), boot_id=_boot_id())  # fmt: skip


def _start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot (never moves)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces or ")": split after the last ")".
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


@functools.cache
def _boot_id() -> str | None:
    # Constant for the life of this process (a reboot ends it), so read once: observe() checks records every tick.
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return None


def read_alive(pidfile: str | os.PathLike[str]) -> ProcessRecord | None:
    """The record in ``pidfile`` if that very process (pid *and* create time) is still running, else None."""
    record = read_record(pidfile)
    if record is None or record.process() is None:
        return None
    return record


def stop(pidfile: str | os.PathLike[str], timeout: float = 10.0, *, descendants: bool = True) -> bool:
    """Stop the recorded process and its process group: SIGTERM, wait up to ``timeout`` s, then SIGKILL.

    ``descendants``: also stop, afterwards, every descendant that was alive when ``stop`` began but lives in
    another session. JupyterHub starts single-user servers and hub-managed services (idle-culler) with
    ``start_new_session=True``, so they are not in the hub's group; a clean hub shutdown stops them itself, but
    a hub that had to be killed leaves them orphaned (an orphaned culler was seen here). Pass False for a hub
    restart meant to keep servers running (with ``JupyterHub.cleanup_servers = False``).

    Idempotent: a missing pidfile or an already-dead process is fine. The pidfile is removed at the end.
    Returns True if a live process was signalled. Processes are identified by pid *and* start time, so a recycled
    pid is never killed. A live process started for this pidfile that the record does not name (lost record) is
    stopped too.
    """
    pidfile = Path(pidfile)
    record = read_record(pidfile)
    proc = record.process() if record else None
    if proc is None:
        record = _adopt(pidfile, [])
        proc = record.process() if record else None
    if proc is None or record is None:
        pidfile.unlink(missing_ok=True)
        return False
    # Snapshot before signalling: once the leader exits, its children are re-parented and cannot be found
    # through it any more.
    members = _group_members(proc)
    others = [p for p in _descendants(proc) if p not in members] if descendants else []
    _signal_group(proc, signal.SIGTERM)
    _wait_or_kill(members, timeout, lambda: _signal_group(proc, signal.SIGKILL), reap=record.pid)
    stragglers = _running([p for p in others if p.is_running()])
    for p in stragglers:
        _send(p, signal.SIGTERM)
    _wait_or_kill(stragglers, min(timeout, 10.0), lambda: None)
    _reap(record.pid)
    pidfile.unlink(missing_ok=True)
    return True


def _wait_or_kill(procs: list[psutil.Process], timeout: float, kill_group: Callable[[], None], reap: int = 0) -> None:
    deadline = time.monotonic() + timeout
    alive = procs
    while alive and time.monotonic() < deadline:
        _reap(reap)
        _gone, alive = psutil.wait_procs(alive, timeout=0.2)
        alive = _running(alive)
    if alive:
        kill_group()
        for p in alive:  # members that left the group (setsid) still belong to this process
            _send(p, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=5)
        _reap(reap)


def _running(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those of ``procs`` that have not exited. A zombie has: it waits for its parent to collect its status, which
    only the parent can do. A hub woken by the portal is the portal's child, so the ``up`` loop that hibernates it
    saw it as alive until the timeout (20 s, then SIGKILL and 5 s more) at every hibernation."""
    running = []
    for p in procs:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                running.append(p)
        except psutil.NoSuchProcess:
            pass
    return running


def _descendants(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


def _send(proc: psutil.Process, sig: signal.Signals) -> None:
    try:
        proc.send_signal(sig)  # psutil refuses if the pid now belongs to another process
    except psutil.Error:
        pass


def _group_members(proc: psutil.Process) -> list[psutil.Process]:
    """The process plus its descendants that are still in its process group."""
    members = [proc]
    try:
        pgid = os.getpgid(proc.pid)
        for child in proc.children(recursive=True):
            try:
                if os.getpgid(child.pid) == pgid:
                    members.append(child)
            except OSError:
                pass
    except (OSError, psutil.Error):
        pass
    return members


def _signal_group(proc: psutil.Process, sig: signal.Signals) -> None:
    try:
        pgid = os.getpgid(proc.pid)
    except OSError:
        return
    if pgid == proc.pid:  # it leads its own group (start_detached made it so): signal the group
        try:
            os.killpg(pgid, sig)
        except OSError:
            pass
    else:  # never killpg a group we do not lead, it could be hubfleet's own
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass


def _reap(pid: int) -> None:
    popen = _CHILDREN.get(pid)
    if popen is not None and popen.poll() is not None:
        _CHILDREN.pop(pid, None)


def _write_record(pidfile: Path, record: ProcessRecord) -> None:
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    tmp = pidfile.with_name(f".{pidfile.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(record), indent=2) + "\n")
    os.replace(tmp, pidfile)  # atomic: a reader sees the old record or the new one, never half a file


def _tail(path: Path, nbytes: int = 2000) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - nbytes))
            return fh.read().decode(errors="replace")
    except OSError:
        return "(no log)"
