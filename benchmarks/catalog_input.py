"""How long `validate` takes on hostile or huge input (issue 16, item 7): the target is under a second per MB.

Builds, in a temporary directory, catalogs whose one course file is (a) a 1 MiB file of the densest valid YAML
(one short scalar per line), (b) the same with every value refused, (c) a "billion laughs" alias bomb, (d) 1 MiB
just over the limit, and a roster of (e) 200,000 rows (~5 MB). Prints the best of 3 runs of `load_catalog` (CPU seconds, and seconds per MB).

    .venv/bin/python benchmarks/catalog_input.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from hubfleet.catalog import CatalogError, load_catalog
from hubfleet.catalog.source import MAX_YAML_BYTES

FLEET = "fleet:\n  name: bench\n"
COURSE = "code: X1\ntitle: x\npresentations:\n  - id: p1\n    start: 2026-10-01\n    end: 2027-01-01\n"


def dense(limit: int) -> str:
    """A valid course file of about ``limit`` bytes: a long static users list, one short name per line."""
    lines = [COURSE + "    enrolment:\n      - users:\n"]
    size, i = len(lines[0]), 0
    while size < limit - 40:
        line = f"        - u{i}\n"
        lines.append(line)
        size += len(line)
        i += 1
    return "".join(lines)


def bad_names(limit: int) -> str:
    """About ``limit`` bytes of names validate refuses, one per line: the most errors a file can hold."""
    return dense(limit).replace("- u", "- -u")


def laughs() -> str:
    rows = ["x0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    rows += [f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return COURSE + "\n".join(rows) + "\n"


def roster(rows: int) -> str:
    return "username,role\n" + "".join(f"student{i:06d}.name,student\n" for i in range(rows))


def run(name: str, course: str, csv: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "courses").mkdir()
        (root / "fleet.yaml").write_text(FLEET)
        if csv is not None:
            (root / "r.csv").write_text(csv)
            course += "    enrolment: [{csv: ../r.csv}]\n"
        (root / "courses" / "X1.yaml").write_text(course)
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6
        best, outcome = float("inf"), ""
        for _ in range(3):
            start = time.process_time()
            try:
                load_catalog(root)
                outcome = "valid"
            except CatalogError as exc:
                outcome = f"refused: {str(exc.problems[0])[:70]}"
            best = min(best, time.process_time() - start)
        print(f"{name:<28} {size:7.2f} MB {best:7.3f} s CPU  {best / max(size, 0.001):6.2f} s/MB  {outcome}")


def main() -> None:
    run("dense YAML at the limit", dense(MAX_YAML_BYTES))
    run("1 MiB of refused names", bad_names(MAX_YAML_BYTES * 9 // 10))  # each line gets one more byte
    run("billion laughs", laughs())
    run("YAML over the limit", dense(MAX_YAML_BYTES + 4096))
    run("roster of 200,000 rows", COURSE, roster(200_000))


if __name__ == "__main__":
    main()
