"""Login to JupyterLab: the z2jh tier's hub (chart 4.4.0 under the hub image's pins, KubeSpawner, process kubelet)
side by side with the local backend, in the same run on the same machine.

For each backend: N sequential students (each: sign in, press Start, wait until the server is ready, load
/user/<name>/lab through the proxy; the server is stopped afterwards, untimed), then M students at once;
p50/p95 of the per-student seconds. The z2jh hub is A233-2026J of the example university (seeded material,
so each spawn also runs the seeding init container); the local hub is a one-course catalog in demo mode.
The z2jh numbers include the fake API server and kubelet (in this process) but no image pulls or scheduling,
so they are a floor for a real cluster, useful to compare hubfleet changes, not clusters.

    .venv/bin/python benchmarks/z2jh_spawn.py [--sequential 20] [--concurrent 10] [--only z2jh|local]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "z2jh"))  # the tier's ChartHub/Student (sign-in as the tests do)
sys.path.insert(0, str(HERE.parent / "tests"))  # conftest's clients, as local_fleet uses them

from conftest import browser_client, portal_sign_in  # noqa: E402
from local_fleet import free_port, write_catalog  # noqa: E402
from z2jh_hubs import ChartHub, Student  # noqa: E402

from hubfleet.backends.local.backend import LocalBackend, stop_fleet  # noqa: E402
from hubfleet.catalog import load_catalog  # noqa: E402
from hubfleet.plan import diff, plan  # noqa: E402

AT = dt.date(2026, 11, 1)
Z2JH_HUB = "a233-2026j"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def z2jh_login_to_lab(hub: ChartHub, name: str) -> float:
    student = Student(hub, name)
    try:
        t0 = time.perf_counter()
        student.sign_in()
        student.start()
        lab = student.open_lab(timeout=600)
        elapsed = time.perf_counter() - t0
        assert lab.status_code == 200 and "JupyterLab" in lab.text, student.pod_logs()
        return elapsed
    finally:
        student.close()


def run_z2jh(work: Path, sequential: int, concurrent: int) -> tuple[list[float], list[float]]:
    hub = ChartHub(work / "z2jh", Z2JH_HUB, at=AT)
    try:
        users = sorted(hub.api("GET", f"groups/{Z2JH_HUB}").json()["users"])
        seq = []
        for name in users[:sequential]:
            seq.append(z2jh_login_to_lab(hub, name))
            hub.stop_server(name)
        batch = users[sequential:sequential + concurrent]
        with ThreadPoolExecutor(max_workers=len(batch)) as pool:
            conc = list(pool.map(lambda n: z2jh_login_to_lab(hub, n), batch))
        for name in batch:
            hub.stop_server(name, timeout=120)
        return seq, conc
    finally:
        hub.stop()


def local_login_to_lab(port: int, hub: str, user: str, password: str, seen: Counter | None = None) -> float:
    """local_fleet's portal sign-in, OAuth hop and spawn (each host its own *.localhost origin), then the lab.

    A hibernated hub answers its first requests with the waker's page; this reloads it as that page does (every
    0.25 s) until the hub itself answers. ``seen`` counts the status code of every response (redirects too)."""
    hooks = {"response": [lambda r: seen.update([r.status_code])]} if seen is not None else {}
    browser = browser_client(f"http://portal.localhost:{port}", timeout=120, follow_redirects=True, event_hooks=hooks)
    hub_url = f"http://{hub}.localhost:{port}/"
    try:
        t0 = time.perf_counter()
        signed = portal_sign_in(browser, user, password, follow_redirects=False)
        if signed.status_code != 303:
            raise RuntimeError(f"{user}: portal sign-in answered {signed.status_code}: {signed.text[:200]}")
        hop = browser.get(f"{hub_url}hub/oauth_login", params={"next": "/hub/home"})
        while 'id="waker-heading"' in hop.text:
            time.sleep(0.25)
            hop = browser.get(f"{hub_url}hub/oauth_login", params={"next": "/hub/home"})
        if hop.status_code != 200:
            raise RuntimeError(f"{user}: OAuth hop to the hub ended in {hop.status_code} at {hop.url.path}")
        spawn = browser.get(f"{hub_url}hub/spawn")
        if spawn.status_code >= 400:
            raise RuntimeError(f"{user}: spawn page answered {spawn.status_code}: {spawn.text[:200]}")
        while True:
            xsrf = browser.cookies.get("_xsrf", domain=f"{hub}.localhost", path="/hub/") or ""
            model = browser.get(f"{hub_url}hub/api/users/{user}", headers={"X-XSRFToken": xsrf}).json()
            if (model.get("servers", {}).get("") or {}).get("ready"):
                break
            if time.perf_counter() - t0 > 600:
                raise RuntimeError(f"{user}'s server not ready after 600 s")
            time.sleep(0.1)
        lab = browser.get(f"{hub_url}user/{user}/lab")
        elapsed = time.perf_counter() - t0
        assert lab.status_code == 200 and "JupyterLab" in lab.text, lab.text[:300]
        return elapsed
    finally:
        browser.close()


def run_local(work: Path, sequential: int, concurrent: int) -> tuple[list[float], list[float]]:
    os.environ["HUBFLEET_DEMO_MODE"] = "1"
    state = work / "local" / "state"
    catalog = write_catalog(work / "local" / "catalog", 1)  # one hub, 20 students (s0000..s0019)
    port = free_port()
    backend = LocalBackend(state, state / "storage", load_catalog(catalog), port=port)
    spec = plan(backend.loaded.catalog, AT)
    try:
        report = backend.apply(diff(spec, backend.observe()), spec)
        if not report.ok:
            sys.exit(f"local apply failed: {[r.message for r in report.failures]}")
        password = (state / "demo-password").read_text().strip()
        hub = "c000-2026j"
        names = [f"s00{j:02d}" for j in range(20)]
        endpoint = backend.endpoint(hub)

        def stop(user: str) -> None:
            headers = {"Authorization": f"token {endpoint.token}"}
            httpx.delete(f"{endpoint.api_url}/users/{user}/server", headers=headers, timeout=120)
            while httpx.get(f"{endpoint.api_url}/users/{user}", headers=headers, timeout=60).json().get("servers"):
                time.sleep(0.2)

        seq = []
        for i in range(sequential):
            user = names[i % len(names)]
            seq.append(local_login_to_lab(port, hub, user, password))
            stop(user)
        batch = names[:concurrent]
        with ThreadPoolExecutor(max_workers=len(batch)) as pool:
            conc = list(pool.map(lambda u: local_login_to_lab(port, hub, u, password), batch))
        for user in batch:
            stop(user)
        return seq, conc
    finally:
        stop_fleet(state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=20)
    parser.add_argument("--concurrent", type=int, default=10)
    parser.add_argument("--only", choices=["z2jh", "local"])
    args = parser.parse_args()
    results: dict[str, tuple[list[float], list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="hubfleet-z2jh-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        if args.only in (None, "local"):
            try:
                results["local"] = run_local(work, args.sequential, args.concurrent)
            except Exception:
                for log in sorted((work / "local" / "state").glob("**/*.log")):  # why, before the dir goes
                    lines = log.read_text(errors="replace").splitlines()
                    hits = [i for i, line in enumerate(lines)
                            if line.startswith(("[E", "[W")) or " 500 " in line or "error" in line.lower()]
                    shown = sorted({j for i in hits for j in range(i, min(i + 25, len(lines)))})
                    print(f"--- {log}", *(lines[j] for j in shown), sep="\n", file=sys.stderr)
                raise
        if args.only in (None, "z2jh"):
            results["z2jh"] = run_z2jh(work, args.sequential, args.concurrent)
    table = Table(title="login -> JupyterLab ready (seconds per student)")
    for col in ("backend", "mode", "n", "p50", "p95", "max"):
        table.add_column(col)
    for backend, (seq, conc) in results.items():
        for mode, values in (("sequential", seq), (f"{len(conc)} at once", conc)):
            if values:
                table.add_row(backend, mode, str(len(values)), f"{statistics.median(values):.1f}",
                              f"{pct(values, 0.95):.1f}", f"{max(values):.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
