"""How long `hubfleet simulate` takes: the example year, a synthetic 1,000-presentation / 300,000-student year,
and the growth with presentations (300 students each, 20 scenarios each).

Targets (issue 12): the example year under 5 s; 1,000 presentations / 300,000 students under 60 s.
Times are the simulation (catalog -> results for every scenario); the report (plots, HTML) is timed apart.

    .venv/bin/python benchmarks/simulate.py [--sizes 10,100,300,1000] [--profile N]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import pstats
import resource
import time
from pathlib import Path

from hubfleet.catalog import load_catalog
from hubfleet.catalog.model import Catalog
from hubfleet.simulate import Window, simulate_catalog
from hubfleet.simulate import report

ROOT = Path(__file__).resolve().parent.parent
WINDOW = Window(dt.date(2026, 9, 1), dt.date(2027, 9, 1))
STUDENTS = 300
SIZES = (10, 100, 300, 1_000)
EXAMPLE_TARGET, SCALE, SCALE_TARGET = 5.0, 1_000, 60.0
PROFILES = [{"cpu": "1", "memory": "2G"}, {"cpu": "0.5", "memory": "1Gi"}, {"cpu": "1", "memory": "3G"}]


def synthetic(presentations: int) -> Catalog:
    """Courses of two presentations each (October and February starts), 300 students each, in ten units."""
    courses = []
    for c in range((presentations + 1) // 2):
        pres = []
        for i, (pid, start) in enumerate((("2026J", dt.date(2026, 10, 3)), ("2027B", dt.date(2027, 2, 6)))):
            if 2 * c + i >= presentations:
                break
            pres.append({"id": pid, "start": start, "end": start + dt.timedelta(days=250),
                         "expected_students": STUDENTS})
        courses.append({"code": f"C{c:04d}", "title": f"Course {c}", "unit": f"u{c % 10}",
                        "resources": PROFILES[c % len(PROFILES)], "presentations": pres})
    return Catalog.model_validate({
        "fleet": {"name": "bench", "units": [{"id": f"u{u}", "name": f"Unit {u}"} for u in range(10)]},
        "courses": courses,
    })


def timed(catalog: Catalog) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds, results). The machine is shared: CPU time says what the work costs."""
    t0, c0 = time.perf_counter(), time.process_time()
    results = simulate_catalog(catalog, WINDOW, seed=0)
    return time.perf_counter() - t0, time.process_time() - c0, results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--profile", type=int, help="profile one synthetic size instead")
    args = ap.parse_args()
    if args.profile:
        catalog = synthetic(args.profile)
        cProfile.runctx("timed(catalog)", globals(), {"catalog": catalog, "timed": timed}, "/tmp/simulate.prof")
        pstats.Stats("/tmp/simulate.prof").sort_stats("cumulative").print_stats(25)
        return

    example = load_catalog(ROOT / "examples" / "university").catalog
    seconds, cpu, results = timed(example)
    t0 = time.perf_counter()
    report.html(results)
    html_s = time.perf_counter() - t0
    ok = "ok" if seconds < EXAMPLE_TARGET else "OVER TARGET"
    print(f"example year: {len(results.presentations)} presentations, "
          f"{sum(p['students'] for p in results.presentations):,} students, {len(results.scenarios)} scenarios: "
          f"{seconds:.2f} s wall, {cpu:.2f} s CPU (target < {EXAMPLE_TARGET:.0f} s: {ok}); report with plots "
          f"{html_s:.2f} s")
    print()
    print("| presentations | students | student-hours | servers started | wall (s) | CPU (s) | CPU per presentation "
          "(ms) | peak RSS (MiB) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in (int(s) for s in args.sizes.split(",")):
        seconds, cpu, results = timed(synthetic(n))
        base = results.baseline()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"| {n:,} | {n * STUDENTS:,} | {base.student_hours:,.0f} | {results.sessions:,} | {seconds:.2f} | "
              f"{cpu:.2f} | {1000 * cpu / n:.1f} | {rss:,.0f} |", flush=True)
        if n == SCALE:
            verdict = "ok" if seconds < SCALE_TARGET else "OVER TARGET"
            print(f"  ({SCALE:,} presentations / {SCALE * STUDENTS:,} students: {seconds:.1f} s, target < "
                  f"{SCALE_TARGET:.0f} s: {verdict})")


if __name__ == "__main__":
    main()
