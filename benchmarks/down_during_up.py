"""How long `hubfleet down` takes when an `up` is still in its first apply, and what the writer lock costs.

Runs the tests' two-course catalog (demo mode) in a temp dir: starts `hubfleet up`, waits until its first hub
process exists (the `up` is then waiting for hubs to answer), and times `hubfleet down` until it returns, i.e. until
the `up` has let go of the lock and nothing of the fleet runs. Also times a refused second writer (lock held) and
``process.read_alive`` / ``process.marked`` on this machine. Everything is stopped at the end.

    .venv/bin/python benchmarks/down_during_up.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

from hubfleet.backends.local import process
from hubfleet.backends.local.backend import fleet_processes, stop_fleet
from hubfleet.backends.local.statelock import StateLock, StateLocked

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import free_port, write_two_course_catalog  # noqa: E402 - the tests' catalog

HUBS = ("m269-2026j", "tm351-2026j")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "hubfleet.cli.main", *args]


def one_run(root: Path) -> tuple[float, int]:
    catalog, state, port = write_two_course_catalog(root / "catalog"), root / "state", free_port()
    up = subprocess.Popen(cli("up", str(catalog), "--state-dir", str(state), "--port", str(port), "--at", "2026-11-01"),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not any(process.read_alive(state / "hubs" / h / "hub.pid.json") for h in HUBS):
            if time.monotonic() > deadline or up.poll() is not None:
                raise RuntimeError("up did not start a hub")
            time.sleep(0.05)
        t0 = time.perf_counter()
        subprocess.run(cli("down", str(catalog), "--state-dir", str(state)), check=True, capture_output=True)
        elapsed = time.perf_counter() - t0
        up.wait(timeout=30)
        return elapsed, len(fleet_processes(state))
    finally:
        if up.poll() is None:
            up.kill()
        stop_fleet(state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ["HUBFLEET_DEMO_MODE"] = "1"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        results = [one_run(Path(tmp) / f"run{i}") for i in range(args.runs)]
        times = [t for t, _ in results]
        rows.append(("down during up's first apply (2 hubs)", f"median {statistics.median(times):.1f} s, "
                     f"max {max(times):.1f} s", f"left running: {max(n for _, n in results)}"))  # fmt: skip
        lock_dir = Path(tmp) / "lock"
        held = StateLock(lock_dir, "benchmark holder")
        held.acquire()
        n, t0 = 50, time.perf_counter()
        for _ in range(n):
            try:
                StateLock(lock_dir).acquire()
            except StateLocked:
                pass
        rows.append(("a second writer refused, holder named", f"{(time.perf_counter() - t0) / n * 1e3:.1f} ms", ""))
        held.release()
        record = process.start_detached(["sleep", "60"], tmp, None, Path(tmp) / "s.log", Path(tmp) / "s.pid.json")
        n, t0 = 1000, time.perf_counter()
        for _ in range(n):
            process.read_alive(Path(tmp) / "s.pid.json")
        per_call = (time.perf_counter() - t0) / n * 1e6
        rows.append(("process.read_alive (per record, every tick)", f"{per_call:.0f} us", ""))
        t0 = time.perf_counter()
        process.marked(tmp)
        rows.append(("process.marked scan (start, stop, down)", f"{(time.perf_counter() - t0) * 1e3:.1f} ms",
                     f"{len(psutil.pids())} processes on the machine"))  # fmt: skip
        process.stop(Path(tmp) / "s.pid.json")
        del record
    table = Table("what", "time", "note", title="process control")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


if __name__ == "__main__":
    main()
