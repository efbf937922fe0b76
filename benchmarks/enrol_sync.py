"""Enrolment sync of 5,000 students into one real local hub: the bulk endpoint, the REST bulk path, the naive baseline.

Each path against a fresh real JupyterHub 6 (so one run cannot warm the next), tuned as the local backend tunes it:
  1. enrol sync through the hub's bulk enrolment endpoint (hubfleet.enrol.endpoint: one request, one transaction);
  2. enrol sync through the REST API (a hub without the endpoint: POST /users in chunks, one call per group);
  3. the naive baseline: one POST /users/{name} plus one POST /groups/{g}/users per student;
  then, on hub 1, a 1 % change (50 leave, 50 join) and a sync with no change.
Targets (issue 14): (1) at least 20x faster than (3) and under 5 s; the 1 % change under 0.5 s.

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
from hubfleet.enrol.endpoint import HUBFLEET_ENROL_SCOPE  # noqa: E402
from hubfleet.enrol.sync import BULK, REST, run_sync  # noqa: E402
from hubfleet.hubapi.client import AsyncHubClient  # noqa: E402

GROUP = "bench-2026j"


def members(names: list[str]) -> HubMembers:
    return HubMembers(hub="bench", groups={GROUP: set(names)}, roles={n: {"BENCH-2026J": "student"} for n in names})


def bulk(hub: RealHub, names: list[str], via: str = BULK) -> tuple[float, int]:
    t0 = time.perf_counter()
    result = run_sync({"bench": (hub.public_url, hub.api_token)}, {"bench": members(names)}, {"bench": {GROUP}})[0]
    assert result.error is None, result.error
    assert result.method == via, (result.method, via)
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


def fresh_hub(root: Path, name: str, endpoint: bool = False) -> RealHub:
    hub = RealHub.create(root, name=name)
    with hub.config_path.open("a") as cfg:
        # The local backend's hub config does the same (hubfleet.backends.local.dbtuning): SQLite WAL, no SQLite
        # ping, cached default-role lookups. Every hub gets it, so the comparison is fair.
        cfg.write("\nfrom hubfleet.backends.local.dbtuning import tune_hub\ntune_hub()\n")
        if endpoint:  # as backends/local/hubconfig.py does
            cfg.write("from hubfleet.enrol.endpoint import register\nregister(c)\n"
                      f"c.JupyterHub.load_roles[0]['scopes'].append({HUBFLEET_ENROL_SCOPE!r})\n")
    hub.start()
    return hub


def note(label: str, count: int, seconds: float, writes: int) -> tuple[str, int, float, int]:
    print(f"  measured: {label}: {count} students, {seconds:.3f} s, {writes} API writes", flush=True)
    return label, count, seconds, writes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=5000)
    parser.add_argument("--endpoint-only", action="store_true", help="skip the REST and naive baselines (minutes)")
    args = parser.parse_args()
    names = [f"s{i:05d}" for i in range(args.students)]
    root = Path(tempfile.mkdtemp(prefix="hubfleet-bench-enrol-"))
    rows = []
    hub = fresh_hub(root, "endpoint", endpoint=True)
    try:
        seconds, writes = bulk(hub, names)
        rows.append(note("enrol sync via the bulk endpoint", args.students, seconds, writes))
        n = max(1, args.students // 100)
        changed = names[n // 2 :] + [f"n{i:05d}" for i in range(n - n // 2)]  # 1 %: some leave, some join
        seconds, writes = bulk(hub, changed)
        rows.append(note("1 % change after first sync (endpoint)", n, seconds, writes))
        seconds, writes = bulk(hub, changed)
        rows.append(note("no change (second sync)", 0, seconds, writes))
    finally:
        hub.stop()
    if args.endpoint_only:
        return
    hub = fresh_hub(root, "rest")
    try:
        seconds, writes = bulk(hub, names, via=REST)
        rows.append(note("enrol sync via the REST API (bulk requests)", args.students, seconds, writes))
    finally:
        hub.stop()
    hub = fresh_hub(root, "naive")
    try:
        seconds, writes = naive(hub, names)
        rows.append(note("naive: POST /users/{name} + group call each", args.students, seconds, writes))
    finally:
        hub.stop()
    print(f"{'case':45} {'students':>8} {'seconds':>9} {'API writes':>11}")
    for label, count, seconds, writes in rows:
        print(f"{label:45} {count:>8} {seconds:>9.3f} {writes:>11}")
    endpoint, change, rest, naive_s = rows[0][2], rows[1][2], rows[3][2], rows[4][2]
    print(f"bulk endpoint: {endpoint:.2f} s for {args.students} students (target < 5 s); "
          f"{naive_s / endpoint:.1f}x faster than one request per student (target >= 20x); "
          f"REST bulk path {naive_s / rest:.1f}x")
    print(f"1 % change: {change:.3f} s (target < 0.5 s)")


if __name__ == "__main__":
    main()
