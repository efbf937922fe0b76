"""What a local fleet costs: no-op reconcile time, memory per idle hub, and a student's login-to-ready time.

Brings up 10, then 20 real hubs (demo mode, one presentation each) behind a front door in a temp dir, measures,
and stops everything at the end (also on Ctrl-C or failure).

* no-op reconcile: observe + plan + diff with an empty plan (best and median of 20 runs); target < 1 s at 20 hubs.
  The ``up`` loop's full step (which also syncs members.json, fleet.json and front-door routes) is shown too.
* RSS per idle hub: hub + its proxy, including children (idle culler), via psutil; baseline 126 MiB + 56 MiB.
* login-to-ready: form login through the front door -> /hub/spawn -> server ready (median of 3 students).

    .venv/bin/python benchmarks/local_fleet.py [--hubs 10 20]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hubfleet.backends.local import process
from hubfleet.backends.local.backend import LocalBackend, stop_fleet
from hubfleet.backends.local.reconciler import Reconciler
from hubfleet.catalog import load_catalog
from hubfleet.plan import diff, plan

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import browser_client  # noqa: E402 - the tests' client for *.localhost hosts (connects to 127.0.0.1)

AT = dt.date(2026, 11, 1)
BASELINE_HUB_MIB, BASELINE_PROXY_MIB = 126, 56
TARGET_SECONDS = 1.0
MIB = 1 << 20


def write_catalog(root: Path, hubs: int) -> Path:
    (root / "courses").mkdir(parents=True, exist_ok=True)
    (root / "fleet.yaml").write_text("fleet:\n  name: bench\n  topology: per-presentation\n")
    for i in range(hubs):
        users = ", ".join(f"s{i:02d}{j:02d}" for j in range(20))
        (root / "courses" / f"C{i:03d}.yaml").write_text(
            f"code: C{i:03d}\ntitle: Course {i}\npresentations:\n"
            f"  - {{id: 2026J, start: 2026-10-03, end: 2027-06-10, enrolment: [{{users: [{users}]}}]}}\n"
        )
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(fn, runs: int = 20) -> tuple[float, float]:  # noqa: ANN001
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def login_to_ready(port: int, hub: str, user: str, password: str) -> float:
    """Sign in at the portal (the fleet's OIDC provider), take the hub's OAuth hop, spawn, poll until ready.
    Portal and hub each on a host of their own (``portal.localhost``, ``<hub>.localhost``), as a browser sees them."""
    browser = browser_client(f"http://portal.localhost:{port}", timeout=120)
    hub_url = f"http://{hub}.localhost:{port}/"
    t0 = time.perf_counter()
    # The form first: it sets the portal's CSRF cookie and carries the token the POST must send back.
    form = browser.get("/portal/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token, form.text[:300]
    resp = browser.post("/portal/login", data={"username": user, "password": password, "csrf_token": token.group(1)})
    assert resp.status_code == 303, resp.text[:300]
    home = browser.get(f"{hub_url}hub/oauth_login", params={"next": "/hub/home"}, follow_redirects=True)
    assert home.status_code == 200, home.text[:300]
    browser.get(f"{hub_url}hub/spawn")
    # What the spawn-pending page polls: the user's own server model.
    while True:
        xsrf = browser.cookies.get("_xsrf", domain=f"{hub}.localhost", path="/hub/") or ""
        progress = browser.get(f"{hub_url}hub/api/users/{user}", headers={"X-XSRFToken": xsrf})
        if progress.status_code == 200 and (progress.json().get("servers", {}).get("") or {}).get("ready"):
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > 180:
            raise RuntimeError(f"{user} server not ready after 180 s")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hubs", type=int, nargs="+", default=[10, 20])
    args = parser.parse_args()
    os.environ["HUBFLEET_DEMO_MODE"] = "1"
    console = Console()
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="hubfleet-bench-") as tmp:
        root = Path(tmp)
        state = root / "state"
        port = free_port()
        try:
            for n in args.hubs:
                catalog = write_catalog(root / "catalog", n)
                backend = LocalBackend(state, state / "storage", load_catalog(catalog), port=port)
                spec = plan(backend.loaded.catalog, AT)
                t0 = time.perf_counter()
                report = backend.apply(diff(spec, backend.observe()), spec)
                started = time.perf_counter() - t0
                if not report.ok:
                    sys.exit(f"apply failed: {[r.message for r in report.failures]}")
                rows.append((f"apply: start {len(report.results)} new hub(s) (up to {backend.parallel} in parallel)", f"{started:.1f} s", ""))

                def noop() -> None:
                    assert not diff(plan(backend.loaded.catalog, AT), backend.observe())

                best, median = timed(noop)
                verdict = "ok" if n < 20 or best < TARGET_SECONDS else f"OVER target {TARGET_SECONDS:g} s"
                rows.append((f"no-op reconcile, {n} hubs (observe+plan+diff)", f"{best * 1000:.0f} ms best / {median * 1000:.0f} ms median", verdict))
                loop = Reconciler(catalog, backend, at=AT)
                best, median = timed(lambda: loop.step(), runs=10)
                rows.append((f"up loop step, {n} hubs (+members, fleet.json, routes)", f"{best * 1000:.0f} ms best / {median * 1000:.0f} ms median", ""))

            time.sleep(5)  # let the hubs settle to idle before measuring memory
            hub_rss, proxy_rss = [], []
            for name in backend.paths.hub_names():
                hp = backend.paths.hub(name)
                hub_rss.append(process.read_alive(hp.hub_pidfile).rss_bytes(children=True) / MIB)
                proxy_rss.append(process.read_alive(hp.proxy_pidfile).rss_bytes(children=True) / MIB)
            hub_mib, proxy_mib = statistics.mean(hub_rss), statistics.mean(proxy_rss)
            rows.append(("RSS per idle hub: JupyterHub (+ idle culler)", f"{hub_mib:.0f} MiB", f"baseline {BASELINE_HUB_MIB} MiB"))
            rows.append(("RSS per idle hub: its node proxy", f"{proxy_mib:.0f} MiB", f"baseline {BASELINE_PROXY_MIB} MiB"))
            rows.append(("RSS per idle hub: total", f"{hub_mib + proxy_mib:.0f} MiB", f"baseline {BASELINE_HUB_MIB + BASELINE_PROXY_MIB} MiB"))

            password = (state / "demo-password").read_text().strip()
            ready = [login_to_ready(port, "c000-2026j", f"s00{j:02d}", password) for j in range(3)]
            rows.append(("login -> server ready (through the front door)", f"{statistics.median(ready):.1f} s median", f"of {len(ready)}: " + ", ".join(f"{t:.1f}" for t in ready)))
        finally:
            t0 = time.perf_counter()
            stopped = stop_fleet(state)
            rows.append((f"down: stop {len(stopped)} hubs, their servers, front door", f"{time.perf_counter() - t0:.1f} s", ""))
    table = Table("measure", "value", "note", title="hubfleet local fleet")
    for row in rows:
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    main()
