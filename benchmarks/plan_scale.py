"""How long `hubfleet plan` takes as a catalog grows: load + validate (YAML, schema, rosters) + plan.

Generates folder catalogs (fleet.yaml, courses/*.yaml with 4 presentations each, one CSV roster of
100 students per presentation) of 100, 1,000 and 5,000 presentations in a temporary directory and
prints the best of 3 runs at each size. Target: 1,000 presentations / 100,000 enrolments under 1 s.

    .venv/bin/python benchmarks/plan_scale.py [--profile 1000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

from hubfleet.catalog import load_catalog
from hubfleet.plan import FleetState, diff, plan

SIZES = (100, 1_000, 5_000)
STUDENTS = 100
PER_COURSE = 4
TODAY = dt.date(2026, 11, 29)
TARGET_SIZE, TARGET_SECONDS = 1_000, 1.0


def generate(root: Path, presentations: int) -> None:
    (root / "courses").mkdir(parents=True)
    (root / "enrolments").mkdir()
    (root / "fleet.yaml").write_text(
        "fleet:\n  name: bench\n  topology: per-presentation\n"
        "  units:\n    - {id: stem, name: STEM}\n    - {id: arts, name: Arts}\n"
    )
    ids = ["2025J", "2026B", "2026J", "2027B"]
    starts = [dt.date(2025, 10, 4), dt.date(2026, 2, 7), dt.date(2026, 10, 3), dt.date(2027, 2, 6)]
    user = 0
    for c in range(presentations // PER_COURSE):
        code = f"C{c:05d}"
        lines = [f"code: {code}", f"title: Course {c}", f"unit: {'stem' if c % 2 else 'arts'}",
                 "team: {instructors: [in0001], tutors: [tu0001, tu0002]}", "presentations:"]
        for pid, start in zip(ids, starts):
            csv = f"{code}-{pid}.csv"
            rows = ["username,role"] + [f"s{(user + i) % 250_000:06d},student" for i in range(STUDENTS)]
            user += STUDENTS // 2  # half of each roster is also on another presentation
            (root / "enrolments" / csv).write_text("\n".join(rows) + "\n")
            lines += [
                f"  - id: {pid}",
                f"    start: {start}",
                f"    end: {start + dt.timedelta(days=250)}",
                f"    expected_students: {STUDENTS}",
                f"    enrolment: [{{csv: ../enrolments/{csv}}}]",
            ]
        (root / "courses" / f"{code}.yaml").write_text("\n".join(lines) + "\n")


def run_once(root: Path) -> float:
    t0 = time.perf_counter()
    loaded = load_catalog(root)
    spec = plan(loaded.catalog, TODAY)
    diff(spec, FleetState())
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=int, metavar="N", help="profile one run at N presentations (cProfile)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hubfleet-bench-") as tmp:
        if args.profile:
            import cProfile
            import pstats

            root = Path(tmp) / str(args.profile)
            generate(root, args.profile)
            prof = cProfile.Profile()
            prof.runcall(run_once, root)
            pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
            return
        print(f"{'presentations':>13} {'enrolments':>10} {'best of 3':>10} {'per presentation':>17}")
        results = {}
        for n in SIZES:
            root = Path(tmp) / str(n)
            generate(root, n)
            best = min(run_once(root) for _ in range(3))
            results[n] = best
            print(f"{n:>13,} {n * STUDENTS:>10,} {best:>9.3f}s {best / n * 1000:>14.3f} ms")
        small, large = SIZES[0], SIZES[-1]
        growth = (results[large] / large) / (results[small] / small)
        print(f"per-presentation cost at {large:,} is {growth:.2f}x that at {small:,} (1.0 = linear)")
        verdict = "meets" if results[TARGET_SIZE] < TARGET_SECONDS else "MISSES"
        print(f"{TARGET_SIZE:,} presentations: {results[TARGET_SIZE]:.3f}s, {verdict} the {TARGET_SECONDS:.0f} s target")


if __name__ == "__main__":
    main()
