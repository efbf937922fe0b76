"""How long a person waits for the commands they type most: `hubfleet --help`, `validate`, `plan`, `schema`.

Whole-process timing (wall clock and CPU of the child, best and median of N runs) against `python -c pass`, plus the
slowest imports of `validate` from `python -X importtime`. Target (issue 14): `--help` and `validate` of the example
within 0.25 s of `python -c pass`. The machine is shared, so the CPU column (user+sys of the child) is the steadier
figure; the wall column is what a person sees.

    .venv/bin/python benchmarks/cli_startup.py [--runs 7] [--before f8852b4] [--instructions]

``--before REV`` also times the source tree of a git revision (exported to a temporary folder and put first on
PYTHONPATH), side by side. ``--instructions`` also counts the instructions each command executes, under valgrind
(cachegrind, when installed): slow (~10 s a command), but the same figure however busy the machine is, so a change's
effect shows even when other work makes the clock useless. On this machine ~2.2 G instructions took a second.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "university"
HUBFLEET = [sys.executable, "-c", "from hubfleet.cli.main import app; app()"]  # what the console script runs
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "hubfleet --help": [*HUBFLEET, "--help"],
    "hubfleet validate": [*HUBFLEET, "validate", str(EXAMPLE)],
    "hubfleet plan": [*HUBFLEET, "plan", str(EXAMPLE), "--at", "2026-10-03", "--state-dir", "/nonexistent/state"],
    "hubfleet schema": [*HUBFLEET, "schema"],
}
TARGET = 0.25


def once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user+sys) seconds of one run of ``argv`` as a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(trees: dict[str, dict[str, str]], runs: int) -> dict[str, dict[str, tuple[float, float, float]]]:
    """tree -> name -> (best wall, median wall, median cpu); commands and trees interleaved so load spikes (this
    machine is shared) hit them alike."""
    samples = {label: {name: [] for name in COMMANDS} for label in trees}
    for _ in range(runs):
        for name, argv in COMMANDS.items():
            for label, env in trees.items():
                samples[label][name].append(once(argv, env))
    return {
        label: {name: (min(w for w, _ in s), statistics.median(w for w, _ in s), statistics.median(c for _, c in s))
                for name, s in by_name.items()}
        for label, by_name in samples.items()
    }


def slowest_imports(env: dict[str, str], n: int = 12) -> list[tuple[int, str]]:
    out = subprocess.run([*COMMANDS["hubfleet validate"][:1], "-X", "importtime", *COMMANDS["hubfleet validate"][1:]],
                         env=env, capture_output=True, text=True, check=True)  # fmt: skip
    rows = []
    for line in out.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    return sorted(rows, reverse=True)[:n]


def bytecode_status(src: Path = ROOT / "src" / "hubfleet") -> str:
    """How many of hubfleet's modules have a current .pyc. With PYTHONDONTWRITEBYTECODE=1 (this machine, CI) and an
    editable install, Python compiles every module without one from source on every command (`make install` runs
    compileall). Current = the header Python checks (magic, source mtime and size) matches the source."""
    sources = sorted(src.rglob("*.py"))
    current = 0
    for py in sources:
        try:
            header = Path(importlib.util.cache_from_source(str(py))).read_bytes()[:16]
        except OSError:
            continue
        st = py.stat()
        if (header[:4] == importlib.util.MAGIC_NUMBER and int.from_bytes(header[4:8], "little") == 0
                and int.from_bytes(header[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
                and int.from_bytes(header[12:16], "little") == st.st_size & 0xFFFFFFFF):  # fmt: skip
            current += 1
    note = "" if current == len(sources) else " (run `make bytecode`: the others are compiled on every run)"
    dont = " PYTHONDONTWRITEBYTECODE=1;" if os.environ.get("PYTHONDONTWRITEBYTECODE") else ""
    return f"src byte-compiled:{dont} {current}/{len(sources)} hubfleet modules have a current .pyc{note}"


def instructions(argv: list[str], env: dict[str, str]) -> int | None:
    """Instructions one run of ``argv`` executes (valgrind's "I refs"), or None without valgrind."""
    if not shutil.which("valgrind"):
        return None
    out = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", *argv],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)  # fmt: skip
    found = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    return int(found.group(1).replace(",", "")) if found else None


def export(rev: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into)  # our own repository's tree
    compileall.compile_dir(into / "src", quiet=1)  # as `make install` does for src/, so both trees compare alike
    return into / "src"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--before", help="a git revision to time side by side (e.g. the commit before lazy imports)")
    parser.add_argument("--instructions", action="store_true", help="also count instructions under valgrind")
    args = parser.parse_args()
    env = dict(os.environ)
    trees = {"now": env}
    with tempfile.TemporaryDirectory() as tmp:
        if args.before:
            trees = {args.before: {**env, "PYTHONPATH": str(export(args.before, Path(tmp)))}, "now": env}
        results = measure(trees, args.runs)
        counts = {label: {name: instructions(argv, e) for name, argv in COMMANDS.items()} for label, e in trees.items()
                  } if args.instructions else {}  # fmt: skip
    base = {label: r["python -c pass"] for label, r in results.items()}
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {args.runs} runs each; seconds")
    print(bytecode_status())
    header = "".join(f"{label + ': best/median wall, cpu':>34}" for label in results)
    print(f"{'command':20}{header}")
    for name in COMMANDS:
        cells = "".join(f"{r[name][0]:>14.3f}{r[name][1]:>10.3f}{r[name][2]:>10.3f}" for r in results.values())
        print(f"{name:20}{cells}")
    if counts:
        print(f"\ninstructions (millions; valgrind, independent of load):\n{'command':20}"
              + "".join(f"{label:>14}" for label in counts))
        for name in COMMANDS:
            print(f"{name:20}" + "".join(f"{(c[name] or 0) / 1e6:>14.0f}" for c in counts.values()))
    now = results["now"]
    for name in ("hubfleet --help", "hubfleet validate"):
        over = now[name][0] - base["now"][0]
        over_cpu = now[name][2] - base["now"][2]
        verdict = "ok" if over <= TARGET else "OVER"
        print(f"{name}: {over:.3f} s wall ({over_cpu:.3f} s cpu) over `python -c pass` (target {TARGET} s): {verdict}")
    print("\nslowest imports of `hubfleet validate` now (cumulative, python -X importtime, microseconds):")
    for us, module in slowest_imports(env):
        print(f"{us:>10} {module}")


if __name__ == "__main__":
    main()
