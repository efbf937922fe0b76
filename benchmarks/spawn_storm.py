"""A class arrives at once: N students sign in and start their servers within a window (default 30 s), through
the front door of a local fleet, with and without pre-warming.

One hub (demo mode, so no system users), 2N students on its roster; each scenario uses N students of its own, so
neither finds the other's home folders. Arrival times are uniform over ``--window`` (seeded). A student's time runs
from pressing "sign in" at the portal to JupyterLab's page served by their own server (local_login_to_lab, shared
with z2jh_spawn.py: portal sign-in, OAuth hop to the hub, spawn, wait until ready, GET /user/<name>/lab):

* cold: the hub is hibernated at the session start (no timetable), so the first student's request wakes it
  through the waker and everyone arriving meanwhile waits on the waker's page;
* pre-warmed: the hub was woken before the session (what the timetable does ``lead`` before it), so the
  first student meets a running hub.

Reported: click -> JupyterLab p50/p95/max, 5xx and 429 responses seen by the students, failed students, and the CPU
seconds of the hub's JupyterHub and proxy processes over the storm (cold: since the wake started them, so the
wake's own start-up is in it). A last line extrapolates to a class of 300 (assumptions printed with it).

    .venv/bin/python benchmarks/spawn_storm.py [--students 20] [--window 30] [--only cold|warm]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from rich.console import Console
from rich.table import Table

from hubfleet.backends.local import process
from hubfleet.backends.local.backend import LocalBackend, stop_fleet
from hubfleet.backends.local.hibernation import is_hibernated
from hubfleet.backends.local.reconciler import Reconciler
from hubfleet.catalog import load_catalog
from hubfleet.plan import diff, plan

from z2jh_spawn import free_port, local_login_to_lab, pct  # noqa: E402 - benchmarks/ is on sys.path when run

AT = dt.date(2026, 11, 1)
HUB = "storm-2026j"
CLASS = 300  # the class size the issue asks us to scale to


def write_catalog(root: Path, students: int) -> Path:
    (root / "courses").mkdir(parents=True, exist_ok=True)
    (root / "fleet.yaml").write_text("fleet:\n  name: bench-storm\n  defaults: {hibernate_after: 1}\n")
    users = ", ".join(f"s{j:04d}" for j in range(students))
    (root / "courses" / "STORM.yaml").write_text(
        "code: STORM\ntitle: Spawn storm\npresentations:\n"
        f"  - {{id: 2026J, start: 2026-10-03, end: 2027-06-10, enrolment: [{{users: [{users}]}}]}}\n")
    return root


@dataclass
class Storm:
    name: str
    took: list[float] = field(default_factory=list)
    codes: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    hub_cpu: float = 0.0
    proxy_cpu: float = 0.0
    wall: float = 0.0


def cpu_seconds(pidfile: Path) -> float:
    record = process.read_alive(pidfile)
    if record is None:
        return 0.0
    try:
        t = psutil.Process(record.pid).cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system


def storm(name: str, backend: LocalBackend, students: list[str], password: str, window: float, seed: int) -> Storm:
    hp = backend.paths.hub(HUB)
    out = Storm(name)
    hub0, proxy0 = cpu_seconds(hp.hub_pidfile), cpu_seconds(hp.proxy_pidfile)  # 0 when hibernated
    rng = random.Random(seed)
    arrivals = sorted(rng.uniform(0, window) for _ in students)
    lock = threading.Lock()
    start = time.perf_counter()

    def student(args: tuple[str, float]) -> None:
        user, at = args
        time.sleep(max(0.0, start + at - time.perf_counter()))
        seen: Counter = Counter()
        try:
            took = local_login_to_lab(backend.port, HUB, user, password, seen)
            with lock:
                out.took.append(took)
        except Exception as exc:  # noqa: BLE001 - a failed student is a result, not the end of the benchmark
            with lock:
                out.failures.append(f"{user}: {exc}")
        with lock:
            out.codes.update(seen)

    with ThreadPoolExecutor(max_workers=len(students)) as pool:
        list(pool.map(student, zip(students, arrivals)))
    out.wall = time.perf_counter() - start
    out.hub_cpu = cpu_seconds(hp.hub_pidfile) - hub0
    out.proxy_cpu = cpu_seconds(hp.proxy_pidfile) - proxy0
    return out


def stop_servers(backend: LocalBackend, users: list[str]) -> None:
    endpoint = backend.endpoint(HUB)
    headers = {"Authorization": f"token {endpoint.token}"}
    with httpx.Client(headers=headers, timeout=120) as api:
        for user in users:
            api.delete(f"{endpoint.api_url}/users/{user}/server")
        for user in users:
            while api.get(f"{endpoint.api_url}/users/{user}").json().get("servers"):
                time.sleep(0.2)


def scale_line(runs: list[Storm], n: int, window: float) -> str:
    warm = next((r for r in runs if r.name == "pre-warmed" and r.took), None) or next(r for r in runs if r.took)
    per_spawn = warm.hub_cpu / max(1, len(warm.took))
    hub_busy = per_spawn * CLASS
    return (f"To {CLASS} in {window:.0f} s: JupyterHub is one process on one core and spent {per_spawn:.2f} CPU-s per "
            f"student here ({warm.name}), so {CLASS} students need ≈{hub_busy:.0f} CPU-s of it: "
            + ("it keeps up with the arrivals" if hub_busy < window else
               f"the last students queue ≈{hub_busy - window:.0f} s behind the hub")
            + f" (assumes cost per spawn stays linear, the spawner and students' servers are not on the hub's core "
              f"— on Kubernetes they are pods on user nodes, which the timetable's placeholders bring up before the "
              f"session; JupyterHub's concurrent_spawn_limit, which the timetable sizes for the window, stays above "
              f"the spawns in flight, so no 429; measured with {n} students on this shared 2-core machine, where "
              f"the students' servers compete with the hub for the same cores).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=20, help="per scenario (default 20 on a 2-core machine)")
    parser.add_argument("--window", type=float, default=30.0, help="seconds over which the students arrive")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["cold", "warm"])
    args = parser.parse_args()
    os.environ["HUBFLEET_DEMO_MODE"] = "1"
    n = args.students
    runs: list[Storm] = []
    with tempfile.TemporaryDirectory(prefix="hubfleet-bench-storm-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        state = root / "state"
        catalog = write_catalog(root / "catalog", 2 * n)
        backend = LocalBackend(state, state / "storage", load_catalog(catalog), port=free_port())
        loop = Reconciler(catalog, backend, at=AT)
        spec = plan(backend.loaded.catalog, AT)
        names = [f"s{j:04d}" for j in range(2 * n)]
        try:
            report = backend.apply(diff(spec, backend.observe()), spec)
            if not report.ok:
                sys.exit(f"apply failed: {[r.message for r in report.failures]}")
            password = (state / "demo-password").read_text().strip()
            if args.only in (None, "cold"):
                while not is_hibernated(backend.paths.hub(HUB)):  # the up loop puts the idle hub to sleep
                    loop.step()
                    time.sleep(0.3)
                runs.append(storm("cold (hibernated)", backend, names[:n], password, args.window, args.seed))
                stop_servers(backend, names[:n])
            if args.only in (None, "warm"):
                # Pre-warmed: the hub is awake at the session start, as the timetable leaves it (the cold run's
                # wake, or the apply above, started it; no loop runs during the storm, so it does not sleep).
                assert not is_hibernated(backend.paths.hub(HUB))
                runs.append(storm("pre-warmed", backend, names[n:], password, args.window, args.seed))
                stop_servers(backend, names[n:])
        finally:
            stop_fleet(state)
    table = Table(title=f"spawn storm: {n} students arriving within {args.window:.0f} s, one local hub "
                        "(click -> JupyterLab, seconds)")  # fmt: skip
    for col in ("scenario", "ok/n", "p50", "p95", "max", "5xx", "429", "hub CPU s", "proxy CPU s", "storm wall s"):
        table.add_column(col)
    for r in runs:
        t = r.took or [float("nan")]
        fivexx = sum(c for code, c in r.codes.items() if code >= 500)
        table.add_row(r.name, f"{len(r.took)}/{n}", f"{statistics.median(t):.1f}", f"{pct(t, 0.95):.1f}",
                      f"{max(t):.1f}", str(fivexx), str(r.codes.get(429, 0)), f"{r.hub_cpu:.1f}",
                      f"{r.proxy_cpu:.1f}", f"{r.wall:.0f}")
    console = Console(width=max(Console().width, 130))
    console.print(table)
    for r in runs:
        for failure in r.failures[:5]:
            console.print(f"[red]{r.name}: {failure}[/]")
    if any(r.took for r in runs):
        console.print(scale_line(runs, n, args.window))


if __name__ == "__main__":
    main()
