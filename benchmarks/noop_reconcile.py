"""What one step of the `hubfleet up` loop costs when nothing changed, and how it grows with the fleet, on both backends.

The step measured is the real one: ``Backend.runner(...)`` gives the same loop `hubfleet up` runs, and its
``step()`` reloads the catalog if changed, plans, observes, diffs (empty), and does the backend's per-step work.

* kubernetes: the controller's step through the fake API server over HTTPS (hubfleet.testing.kubeapi, with the
  kubernetes client, as in a pod): renew the Lease, apply the fleet-level objects (no write when unchanged),
  observe (list hub namespaces, applied-spec records, archive markers, student claims), a ``helm status`` per hub
  (``ClusterHelm``: one GET of the release record, as real helm reads its release Secret), the material check.
  The API server is in this process on the same 2 cores, so its own work is in the figure too.
* local: real hubs (JupyterHub + its node proxy, demo mode) already running; the step observes them (pid
  records, liveness), then refreshes members.json, fleet.json and the front door's routes.

The fleet grows in one world (the hubs of the smaller size stay), each size's new hubs made by that runner's first
step (untimed but shown). Every timed step must apply nothing, report no error, and write nothing but the Lease.
No threshold is asserted.

    .venv/bin/python benchmarks/noop_reconcile.py [--k8s-hubs 25 50 100 200] [--local-hubs 10 25 50] [--steps 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import socket
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hubfleet.catalog import load_catalog

AT = dt.date(2026, 11, 1)


def write_catalog(root: Path, hubs: int, backend: str) -> Path:
    """``hubs`` one-presentation courses, 20 students each; kubernetes alternates per-presentation and ephemeral."""
    (root / "courses").mkdir(parents=True, exist_ok=True)
    extra = "  domain: hubs.bench.example\n" if backend == "kubernetes" else ""
    (root / "fleet.yaml").write_text(f"fleet:\n  name: bench\n  backend: {backend}\n  topology: per-presentation\n{extra}")
    for i in range(hubs):
        layout = ("per-presentation", "ephemeral")[i % 2] if backend == "kubernetes" else "personal-subfolder"
        users = ", ".join(f"s{i:03d}{j:02d}" for j in range(20))
        (root / "courses" / f"C{i:03d}.yaml").write_text(textwrap.dedent(f"""\
            code: C{i:03d}
            title: Course {i}
            storage: {{layout: {layout}}}
            presentations:
              - {{id: 2026J, start: 2026-10-03, end: 2027-06-10, enrolment: [{{users: [{users}]}}]}}
            """))
    return root


def measure(backend, catalog: Path, steps: int, requests=None) -> dict:  # noqa: ANN001
    """The first step (creates this size's new hubs), then ``steps`` timed no-op steps of the same loop."""
    loaded = load_catalog(catalog)
    runner = backend.runner(catalog, loaded, AT)
    runner.lock.acquire()
    try:
        t0 = time.perf_counter()
        first = runner.loop.step()
        created = time.perf_counter() - t0
        failed = [r for r in first.results if not r.ok]
        if failed or first.errors:
            sys.exit(f"first step failed: {[r.message for r in failed][:3]} {first.errors[:3]}")
        runner.loop.step()  # settles what the first step's own writes changed (nothing expected)
        times, gets, writes = [], [], []
        for _ in range(steps):
            before = dict(requests) if requests is not None else {}
            t0 = time.perf_counter()
            report = runner.loop.step()
            times.append(time.perf_counter() - t0)
            if report.results or report.errors:
                sys.exit(f"a no-op step did something: {[r.message for r in report.results][:3]} {report.errors[:3]}")
            if requests is not None:
                delta = {k: n - before.get(k, 0) for k, n in requests.items() if n != before.get(k, 0)}
                gets.append(sum(n for (verb, _), n in delta.items() if verb == "GET"))
                writes.append(sum(n for (verb, kind), n in delta.items() if verb != "GET" and kind != "Lease"))
    finally:
        runner.lock.release()
    return {"new": len(first.results), "created": created, "best": min(times), "median": statistics.median(times),
            "gets": statistics.median(gets) if gets else None, "writes": max(writes) if writes else None}


def kubernetes(sizes: list[int], steps: int, work: Path) -> list[tuple[int, dict]]:
    from hubfleet.backends.kubernetes.backend import KubernetesBackend
    from hubfleet.backends.kubernetes.cluster import KindInfo, KubernetesCluster
    from hubfleet.testing.kubeapi import KubeApiServer, ServedCluster
    from hubfleet.testing.releases import ClusterHelm

    store = ServedCluster(validate=False)  # kubernetes-validate on every write only slows the untimed setup
    store.register_kind(KindInfo("v1", "PersistentVolume", "persistentvolumes", False))
    api = KubeApiServer(store, work / "ca").start()
    rows = []
    try:
        client = KubernetesCluster(kubeconfig=str(api.kubeconfig(work / "kubeconfig")))
        for n in sizes:
            catalog = write_catalog(work / f"k8s-{n}", n, "kubernetes")
            backend = KubernetesBackend(client, ClusterHelm(client), fleet="bench", catalog_root=catalog,
                                        hub_url=lambda hub: "http://127.0.0.1:9/")  # no hub answers: sync skips
            rows.append((n, measure(backend, catalog, steps, api.requests)))
    finally:
        api.stop()
    return rows


def local(sizes: list[int], steps: int, work: Path) -> list[tuple[int, dict]]:
    from hubfleet.backends.local.backend import LocalBackend, stop_fleet

    os.environ["HUBFLEET_DEMO_MODE"] = "1"
    state = work / "state"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rows = []
    try:
        for n in sizes:
            catalog = write_catalog(work / "local", n, "local")
            backend = LocalBackend(state, state / "storage", load_catalog(catalog), port=port)
            rows.append((n, measure(backend, catalog, steps)))
    finally:
        stop_fleet(state)
    return rows


def table(title: str, rows: list[tuple[int, dict]], api: bool) -> Table:
    columns = ["hubs", "no-op step best", "median", "median per hub", "growth vs previous size"]
    columns += ["GET/LIST per step", "writes per step (not the Lease)"] if api else []
    out = Table(*columns, "first step: new hubs", title=title)
    previous = None
    for n, m in rows:
        growth = "" if previous is None else f"x{m['median'] / previous[1]['median']:.2f} time, x{n / previous[0]:.1f} hubs"
        cells = [str(n), f"{m['best'] * 1000:.0f} ms", f"{m['median'] * 1000:.0f} ms", f"{m['median'] / n * 1000:.1f} ms",
                 growth]
        cells += [f"{m['gets']:.0f}", str(m["writes"])] if api else []
        out.add_row(*cells, f"{m['new']} in {m['created']:.1f} s")
        previous = (n, m)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k8s-hubs", type=int, nargs="*", default=[25, 50, 100, 200])
    parser.add_argument("--local-hubs", type=int, nargs="*", default=[10, 25, 50])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("tornado.access").setLevel(logging.ERROR)  # the fake API server's 404s are expected
    console = Console(width=160)
    with tempfile.TemporaryDirectory(prefix="hubfleet-noop-") as tmp:
        work = Path(tmp)
        if args.k8s_hubs:
            rows = kubernetes(sorted(args.k8s_hubs), args.steps, work)
            console.print(table("kubernetes: controller loop step, no-op, through the fake API server (HTTPS)", rows, True))
        if args.local_hubs:
            rows = local(sorted(args.local_hubs), args.steps, work)
            console.print(table("local: `up` loop step, no-op, real hubs running", rows, False))


if __name__ == "__main__":
    main()
