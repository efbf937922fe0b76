"""What hibernation buys and costs on the local backend: idle memory with and without it, and wake latency.

Brings up ``--hubs`` real hubs (demo mode, ``hibernate_after: 1``) behind a front door in a temp dir and measures:

* idle memory: RSS of every hub's processes (JupyterHub + culler + its node proxy) awake, then hibernated (target:
  0 MiB per hibernated hub; the front door and portal, shared by all hubs, are shown apart);
* cold ``apply``: one hub stopped (processes gone, files kept) and started by ``backend.apply`` as ``hubfleet
  apply`` would, until its API answers;
* wake: ``--wakes`` times, the hub is put to sleep by the ``up`` loop, then a client asks for a hub page through the
  front door and does what the waker's page makes a browser with JavaScript do (a HEAD of the same URL every
  ``POLL_MS``, then the reload) until the hub itself answers: p50 / p95 / max of first request -> hub's page, and
  every status code seen on the way (target: p50 and p95 < 5 s, no error). Without JavaScript the page's meta
  refresh reloads every second: add up to 1 s.

    .venv/bin/python benchmarks/hibernation.py [--hubs 3] [--wakes 20]
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
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hubfleet.backends.local import process
from hubfleet.backends.local.backend import LocalBackend, stop_fleet
from hubfleet.backends.local.shutdown import stop_hub
from hubfleet.backends.local.reconciler import Reconciler
from hubfleet.catalog import load_catalog
from hubfleet.plan import diff, plan
from hubfleet.web.waker import POLL_MS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import browser_client, free_port  # noqa: E402 - the tests' client for *.localhost hosts

AT = dt.date(2026, 11, 1)
MIB = 1 << 20
TARGET = 5.0


def write_catalog(root: Path, hubs: int) -> Path:
    (root / "courses").mkdir(parents=True, exist_ok=True)
    (root / "fleet.yaml").write_text("fleet:\n  name: bench-sleep\n  defaults: {hibernate_after: 1}\n")
    for i in range(hubs):
        (root / "courses" / f"C{i:03d}.yaml").write_text(
            f"code: C{i:03d}\ntitle: Course {i}\npresentations:\n"
            f"  - {{id: 2026J, start: 2026-10-03, end: 2027-06-10, enrolment: [{{users: [s{i:03d}]}}]}}\n")
    return root


def hub_rss(backend: LocalBackend) -> list[float]:
    out = []
    for name in backend.paths.hub_names():
        hp = backend.paths.hub(name)
        total = 0
        for pidfile in (hp.hub_pidfile, hp.proxy_pidfile):
            record = process.read_alive(pidfile)
            total += record.rss_bytes(children=True) if record else 0
        out.append(total / MIB)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def refresh_after(page: str) -> float:
    """Seconds until the waker's page reloads itself (``<meta http-equiv="refresh" content="N">``)."""
    found = re.search(r'http-equiv="refresh" content="(\d+(?:\.\d+)?)', page)
    assert found, "the waker's page must reload itself"
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hubs", type=int, default=3)
    parser.add_argument("--wakes", type=int, default=20)
    args = parser.parse_args()
    os.environ["HUBFLEET_DEMO_MODE"] = "1"
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="hubfleet-bench-sleep-") as tmp:
        root = Path(tmp)
        state = root / "state"
        catalog = write_catalog(root / "catalog", args.hubs)
        backend = LocalBackend(state, state / "storage", load_catalog(catalog), port=free_port())
        loop = Reconciler(catalog, backend, at=AT)
        spec = plan(backend.loaded.catalog, AT)
        hub = spec.hubs[0].name
        url = f"http://{hub}.localhost:{backend.port}/hub/api/?probe=1"
        try:
            report = backend.apply(diff(spec, backend.observe()), spec)
            if not report.ok:
                sys.exit(f"apply failed: {[r.message for r in report.failures]}")
            time.sleep(3)  # settle to idle
            awake = hub_rss(backend)
            door = sum(r.rss_bytes(children=True) for r in backend.frontdoor.records()) / MIB
            rows.append((f"idle RSS, {args.hubs} hubs awake", f"{sum(awake):.0f} MiB",
                         f"{statistics.mean(awake):.0f} MiB per hub"))
            while not all((backend.paths.hub(h.name).hibernated).exists() for h in spec.hubs):
                loop.step()
                time.sleep(0.3)
            asleep = hub_rss(backend)
            rows.append((f"idle RSS, {args.hubs} hubs hibernated", f"{sum(asleep):.0f} MiB",
                         f"{statistics.mean(asleep):.0f} MiB per hub (target 0)"))
            rows.append(("front door + portal (shared by all hubs)", f"{door:.0f} MiB", ""))

            # Cold apply of the same hub: stopped (not hibernated), started again by apply.
            backend.paths.hub(hub).hibernated.unlink()
            stop_hub(backend.paths.hub(hub))
            t0 = time.perf_counter()
            report = backend.apply(diff(spec, backend.observe()), spec)
            cold = time.perf_counter() - t0
            assert report.ok and len(report.results) == 1, report.results
            rows.append((f"cold apply of {hub} (hub + proxy start, API answers)", f"{cold:.2f} s", ""))

            took: list[float] = []
            codes: Counter[int] = Counter()
            with browser_client(timeout=60) as client:
                for _ in range(args.wakes):
                    while not backend.paths.hub(hub).hibernated.exists():
                        loop.step()
                        time.sleep(0.2)
                    t0 = time.perf_counter()
                    resp = client.get(url)
                    codes[resp.status_code] += 1
                    if 'id="waker-heading"' in resp.text:
                        # As the page's script does in a browser: a HEAD of the same URL every POLL_MS until the
                        # waker no longer answers it, then the reload that lands on the hub.
                        refresh_after(resp.text)  # (the no-JavaScript fallback is there too)
                        while True:
                            time.sleep(POLL_MS / 1000)
                            head = client.head(url)
                            if not head.headers.get("x-hubfleet-waking"):
                                break  # the hub's own answer to a HEAD (JupyterHub's API says 405): go on
                            codes[head.status_code] += 1
                        resp = client.get(url)
                        codes[resp.status_code] += 1
                    assert resp.headers.get("x-jupyterhub-version"), resp.text[:200]
                    took.append(time.perf_counter() - t0)
            p50, p95 = statistics.median(took), pct(took, 0.95)
            verdict = "ok" if p50 < TARGET and p95 < TARGET else f"OVER target {TARGET:g} s"
            rows.append((f"wake: first request -> hub's page, {len(took)} wakes", f"p50 {p50:.2f} s / p95 {p95:.2f} s"
                         f" / max {max(took):.2f} s", verdict))
            errors = sum(n for code, n in codes.items() if code >= 400)
            rows.append(("responses while waking", ", ".join(f"{n}x {c}" for c, n in sorted(codes.items())),
                         "no error" if not errors else f"{errors} ERRORS"))
        finally:
            stop_fleet(state)
    table = Table("measure", "value", "note", title="hubfleet hibernation (local)")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


if __name__ == "__main__":
    main()
