"""Processes that outlive their control (issue 16 item 8), with real hubs through the real CLI.

Seen before the fix: two `apply`s on one state dir raced with nothing to stop them; one `up` started a second
JupyterHub for a hub on the same database; a `down` run while an `up` was in its first apply returned, and the `up`
started everything again. Also here: the guard against an apply that would stop most of the fleet.

One module fleet (two hubs, demo mode: no system users needed); tests run in file order.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from conftest import free_port, running_in, wait_until, write_two_course_catalog

from hubfleet.backends.local import process
from hubfleet.backends.local.backend import LocalBackend, stop_fleet
from hubfleet.backends.local.reconciler import Reconciler
from hubfleet.catalog import load_catalog
from hubfleet.plan import diff, plan

AT = dt.date(2026, 11, 1)
HUBS = ("m269-2026j", "tm351-2026j")
pytestmark = pytest.mark.slow


@dataclass
class Fleet:
    catalog: Path
    state: Path
    port: int

    def argv(self, *args: str, catalog: Path | None = None) -> list[str]:
        argv = [sys.executable, "-m", "hubfleet.cli.main", *args, str(catalog or self.catalog),
                "--state-dir", str(self.state)]  # fmt: skip
        if args[0] in ("up", "apply"):
            argv += ["--port", str(self.port), "--at", AT.isoformat()]
        return argv

    def cli(self, *args: str, catalog: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args, catalog=catalog), capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL)  # fmt: skip

    def hub_processes(self, hub: str) -> list[psutil.Process]:
        """Every live JupyterHub process of this hub dir, recorded or not."""
        config = str(self.state / "hubs" / hub / "jupyterhub_config.py")
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.status() != psutil.STATUS_ZOMBIE and config in proc.cmdline() and "-f" in proc.cmdline():
                    found.append(proc)
            except psutil.Error:
                pass
        return found

    def anything_running(self) -> list[psutil.Process]:
        """Any process of the fleet: working in its state dir, or naming it on its command line."""
        found = {p.pid: p for p in running_in(self.state)}
        for proc in psutil.process_iter():
            try:
                if str(self.state) in " ".join(proc.cmdline()) and proc.status() != psutil.STATUS_ZOMBIE:
                    found[proc.pid] = proc
            except psutil.Error:
                pass
        return list(found.values())


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("procs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUBFLEET_DEMO_MODE", "1")  # the CLI subprocesses inherit it
        f = Fleet(write_two_course_catalog(root / "catalog"), root / "state", free_port())
        try:
            yield f
        finally:
            seen = f.anything_running()
            for proc in seen:  # a stray `up` of a failed test first, so it cannot start anything again
                if "hubfleet.cli.main" in " ".join(proc.cmdline()):
                    proc.kill()
            stop_fleet(f.state)
            _, alive = psutil.wait_procs(seen, timeout=30)
            for proc in alive:
                proc.kill()
            assert alive == [], f"left running: {alive}"



def _a_hub_started(fleet: Fleet) -> bool:
    return any(process.read_alive(fleet.state / "hubs" / h / "hub.pid.json") for h in HUBS)


def test_a_second_apply_is_refused_and_told_who_holds_the_fleet(fleet: Fleet) -> None:
    first = subprocess.Popen(fleet.argv("apply", "--yes"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_until(lambda: _a_hub_started(fleet) or first.poll() is not None, what="first apply starting a hub")
        assert first.poll() is None, first.communicate()
        # Freeze the first apply mid-way (a hub started, not yet answering), so "at once" is certain.
        held = psutil.Process(first.pid)
        held.suspend()
        try:
            second = fleet.cli("apply", "--yes")
        finally:
            held.resume()
        out, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == 2, second.stdout + second.stderr
    message = " ".join(second.stderr.split())
    assert f"pid {first.pid}" in message and "hubfleet apply" in message and "since" in message, message
    assert first.returncode == 0, out + err
    for hub in HUBS:
        assert len(fleet.hub_processes(hub)) == 1


def test_an_apply_that_would_stop_most_of_the_fleet_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    # The course files went missing and a new one arrived (a checkout of the wrong branch, say).
    other = tmp_path / "catalog"
    shutil.copytree(fleet.catalog, other)
    for course in (other / "courses").iterdir():
        course.unlink()
    (other / "courses" / "B123.yaml").write_text(textwrap.dedent("""\
        code: B123
        title: Business
        presentations: [{id: 2026J, start: 2026-10-03, end: 2027-06-10, enrolment: [{users: [dana]}]}]
        """))
    pids = {h: [p.pid for p in fleet.hub_processes(h)] for h in HUBS}
    run = fleet.cli("apply", "--yes", catalog=other)
    assert run.returncode == 2, run.stdout + run.stderr
    message = " ".join(run.stderr.split())
    assert "would stop 2 of the 2 running hub(s)" in message and "--allow-mass-stop" in message
    for hub, key in zip(HUBS, ("M269-2026J", "TM351-2026J")):
        assert f"{hub}: {key} is no longer in the catalog" in message
    assert {h: [p.pid for p in fleet.hub_processes(h)] for h in HUBS} == pids  # nothing was stopped
    assert not (fleet.state / "hubs" / "b123-2026j").exists()  # nor created


def test_the_up_loop_holds_back_a_mass_stop_and_says_so_once(fleet: Fleet) -> None:
    backend = LocalBackend(fleet.state, fleet.state / "storage", load_catalog(fleet.catalog), port=fleet.port)
    pids = {h: [p.pid for p in fleet.hub_processes(h)] for h in HUBS}
    # A date at which both presentations have ended: the plan stops both hubs, all of the running fleet.
    loop = Reconciler(fleet.catalog, backend, at=dt.date(2027, 8, 1))
    report = loop.step()
    assert report.results == [] and "would stop 2 of the 2 running hub(s)" in report.errors[0]
    assert {h: [p.pid for p in fleet.hub_processes(h)] for h in HUBS} == pids
    assert loop.step().errors == []  # held back quietly from then on, not a message every few seconds


def test_a_hub_is_never_started_twice(fleet: Fleet) -> None:
    hub = "tm351-2026j"
    pidfile = fleet.state / "hubs" / hub / "hub.pid.json"
    (original,) = fleet.hub_processes(hub)

    # The wall clock steps by a second (NTP): the create time derived from it no longer matches the record.
    record = json.loads(pidfile.read_text())
    pidfile.write_text(json.dumps({**record, "create_time": record["create_time"] + 1.0}))
    run = fleet.cli("apply", "--yes")
    assert run.returncode == 0 and "No changes" in run.stdout, run.stdout + run.stderr
    assert fleet.hub_processes(hub) == [original]

    # The record is lost altogether (a crash between writes): the hub is found, not started again.
    pidfile.unlink()
    run = fleet.cli("apply", "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    assert fleet.hub_processes(hub) == [original]
    assert process.read_alive(pidfile).pid == original.pid

    # A slow start is not a crash: a hub that does not answer in time is left to finish starting, and the next
    # apply waits on it instead of starting another.
    original.kill()
    psutil.wait_procs([original], timeout=10)
    backend = LocalBackend(fleet.state, fleet.state / "storage", load_catalog(fleet.catalog), port=fleet.port,
                           hub_timeout=3)  # fmt: skip
    stopper = threading.Thread(target=_freeze_next_hub, args=(pidfile, original.pid), daemon=True)
    stopper.start()
    spec = plan(backend.loaded.catalog, AT)
    report = backend.apply(diff(spec, backend.observe()), spec)
    stopper.join(timeout=60)
    assert not report.ok and "not answering" in report.failures[0].message
    (slow,) = fleet.hub_processes(hub)
    assert slow.pid != original.pid and slow.status() == psutil.STATUS_STOPPED
    slow.resume()
    backend.hub_timeout = 120
    report = backend.apply(diff(spec, backend.observe()), spec)
    assert report.ok, [r.message for r in report.failures]
    assert fleet.hub_processes(hub) == [slow]


def _freeze_next_hub(pidfile: Path, old_pid: int) -> None:
    """SIGSTOP the next hub process recorded in ``pidfile`` as soon as it appears: a hub that is slow to start."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        record = process.read_record(pidfile)
        if record and record.pid != old_pid:
            os.kill(record.pid, signal.SIGSTOP)
            return
        time.sleep(0.01)


def test_down_during_ups_first_apply_leaves_nothing_running(fleet: Fleet) -> None:
    assert fleet.cli("down").returncode == 0
    assert fleet.anything_running() == []
    up = subprocess.Popen(fleet.argv("up"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_until(lambda: _a_hub_started(fleet) or up.poll() is not None, what="up starting a hub")
        assert up.poll() is None, up.communicate()
        down = fleet.cli("down")
        assert down.returncode == 0, down.stdout + down.stderr
        assert f"pid {up.pid}" in " ".join(down.stdout.split())
        # `down` returned only after the `up` let go of the fleet; it is gone, and so is everything it started.
        assert up.wait(timeout=30) is not None
        assert fleet.anything_running() == []
    finally:
        if up.poll() is None:
            up.kill()


_HOLD = """
import os, sys, time
from pathlib import Path
from hubfleet.backends.local.statelock import StateLock
lock = StateLock(Path(sys.argv[1]), "hubfleet lifecycle run demo")
lock.acquire()
if sys.argv[2] == "fork" and os.fork() == 0:
    time.sleep(300)  # a forked worker: it inherited the locked descriptor
    os._exit(0)
print("held", flush=True)
time.sleep(300)
"""


def _holding(tmp_path: Path, mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path), mode], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    from hubfleet.backends.local.statelock import StateLock, StateLocked

    holder = _holding(tmp_path, "plain")
    with pytest.raises(StateLocked, match=f"`hubfleet lifecycle run demo` \\(pid {holder.pid}, since "):
        StateLock(tmp_path).acquire()
    holder.kill()
    holder.wait()
    StateLock(tmp_path).acquire()  # the kernel dropped the lock with the process


def test_workers_that_outlive_their_parent_keep_the_fleet_and_are_named(tmp_path: Path) -> None:
    from hubfleet.backends.local.statelock import StateLock, StateLocked

    parent = _holding(tmp_path, "fork")
    (worker,) = psutil.Process(parent.pid).children()
    parent.kill()  # kill -9 of the main process only: its worker lives on, and may still be writing
    parent.wait()
    try:
        with pytest.raises(StateLocked) as refused:
            StateLock(tmp_path).acquire()
        assert f"pid {parent.pid} (gone; still held by its child process(es) {worker.pid}" in str(refused.value)
    finally:
        worker.kill()
        psutil.wait_procs([worker], timeout=10)
    StateLock(tmp_path).acquire()
