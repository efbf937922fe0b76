"""Enrolment sync of 5,000 students into one real local hub: bulk incremental vs the naive baseline.

Three measurements, each against a fresh real JupyterHub 6 (so one run cannot warm the next):
  1. bulk incremental sync (hubfleet.enrol.sync) of 5,000 students into an empty hub;
  2. the naive baseline: one POST /users/{name} plus one POST /groups/{g}/users per student;
  3. a 1 % change (50 leave, 50 join) after the first sync.
Targets: (1) at least 20x faster than (2); (3) under 0.5 s.

Run: .venv/bin/python benchmarks/enrol_sync.py [--students 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hub_fixture import RealHub  # noqa: E402

from hubfleet.enrol.membership import HubMembers  # noqa: E402
from hubfleet.enrol.sync import run_sync  # noqa: E402
from hubfleet.hubapi.client import AsyncHubClient  # noqa: E402

GROUP = "bench-2026j"


def members(names: list[str]) -> HubMembers:
    return HubMembers(hub="bench", groups={GROUP: set(names)}, roles={n: {"BENCH-2026J": "student"} for n in names})


def bulk(hub: RealHub, names: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    result = run_sync({"bench": (hub.public_url, hub.api_token)}, {"bench": members(names)}, {"bench": {GROUP}})[0]
    assert result.error is None, result.error
    return time.perf_counter() - t0, result.writes


async def _naive(hub: RealHub, names: list[str]) -> int:
    async with AsyncHubClient(hub.public_url, hub.api_token) as client:
        await client.create_group(GROUP)
        for name in names:
            # What a hand-written script does: one user, then one group call, per student.
            await client._run(_post(f"users/{name}"))
            await client.add_group_members(GROUP, [name])
        return client.writes


def _post(path: str):
    from hubfleet.hubapi.client import _one

    return _one("POST", path, {})


def naive(hub: RealHub, names: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    writes = asyncio.run(_naive(hub, names))
    return time.perf_counter() - t0, writes


def fresh_hub(root: Path, name: str) -> RealHub:
    hub = RealHub.create(root, name=name)
    with hub.config_path.open("a") as cfg:
        # The local backend's hub config does the same (hubfleet.backends.local.dbtuning): SQLite WAL, no SQLite
        # ping, cached default-role lookups. Both the bulk and the naive hub get it, so the comparison is fair.
        cfg.write("\nfrom hubfleet.backends.local.dbtuning import tune_hub\ntune_hub()\n")
    hub.start()
    return hub


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=5000)
    args = parser.parse_args()
    names = [f"s{i:05d}" for i in range(args.students)]
    root = Path(tempfile.mkdtemp(prefix="hubfleet-bench-enrol-"))
    rows = []
    hub = fresh_hub(root, "bulk")
    try:
        seconds, writes = bulk(hub, names)
        rows.append(("bulk incremental sync", args.students, seconds, writes))
        n = max(1, args.students // 100)
        changed = names[n // 2 :] + [f"n{i:05d}" for i in range(n - n // 2)]  # 1 %: some leave, some join
        seconds, writes = bulk(hub, changed)
        rows.append(("1 % change after first sync", n, seconds, writes))
        seconds, writes = bulk(hub, changed)
        rows.append(("no change (second sync)", 0, seconds, writes))
    finally:
        hub.stop()
    hub = fresh_hub(root, "naive")
    try:
        seconds, writes = naive(hub, names)
        rows.append(("naive: POST /users/{name} + group call each", args.students, seconds, writes))
    finally:
        hub.stop()
    print(f"{'case':45} {'students':>8} {'seconds':>9} {'API writes':>11}")
    for label, count, seconds, writes in rows:
        print(f"{label:45} {count:>8} {seconds:>9.3f} {writes:>11}")
    print(f"bulk speed-up over naive: {rows[3][2] / rows[0][2]:.1f}x (target >= 20x)")
    print(f"1 % change: {rows[1][2]:.3f} s (target < 0.5 s)")


if __name__ == "__main__":
    main()
