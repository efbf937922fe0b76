"""How long the first `make demo` keeps a newcomer waiting: `hubfleet up examples/university` from its start until the
portal and every hub answer through the front door, first start (empty state dir) and second start (same state dir).

Runs the real command (as `make demo` does, but on a free port and a temporary state dir, so a running demo is left
alone), polls the portal's /healthz and each hub's /hub/api through the front door every 0.2 s, prints when each one
first answered, then stops the fleet with SIGINT (Ctrl-C, as a person would) and starts it again. Target (issue 14):
under 60 s on this 2-core machine. As root, students' system accounts are made only at their first server start,
which this does not do; any account of the fleet that appears during the run is removed at the end anyway.

    .venv/bin/python benchmarks/demo_start.py [--at 2026-12-03] [--keep-output]
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ROOT / "examples" / "university"
HUBFLEET = str(Path(sys.prefix) / "bin" / "hubfleet")
TARGET = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(port: int, host: str, path: str) -> bool:
    try:
        r = httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Host": f"{host}:{port}"}, timeout=2)
    except httpx.TransportError:
        return False
    return r.status_code == 200


def fleet_accounts(fleet: str) -> set[str]:
    return {p.pw_name for p in pwd.getpwall() if p.pw_gecos.startswith(f"hubfleet {fleet} ")}


def one_start(state: Path, port: int, at: list[str], hubs: list[str], log: Path, limit: float = 900) -> dict:
    """Start `hubfleet up`, time the portal and each hub answering, then Ctrl-C it and wait for it to stop."""
    t0 = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen([HUBFLEET, "up", str(CATALOG), "--state-dir", str(state), "--port", str(port), *at],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "100"})  # fmt: skip
    seen: dict[str, float] = {}
    try:
        while len(seen) < len(hubs) + 1:
            if proc.poll() is not None:
                raise RuntimeError(f"hubfleet up exited {proc.returncode}; see {log}:\n{log.read_text()[-3000:]}")
            if time.monotonic() - t0 > limit:
                raise RuntimeError(f"not all up after {limit:g}s: {sorted(seen)}; see {log}")
            if "portal" not in seen and answers(port, "portal.localhost", "/healthz"):
                seen["portal"] = time.monotonic() - t0
            for hub in hubs:
                if hub not in seen and answers(port, f"{hub}.localhost", "/hub/api/"):
                    seen[hub] = time.monotonic() - t0
            time.sleep(0.2)
        # The enrolment table comes after the hubs answer: wait for it too, so the second start finds a synced fleet.
        while "Enrolment" not in log.read_text() and proc.poll() is None and time.monotonic() - t0 < limit:
            time.sleep(0.5)
        seen["enrolment table printed"] = time.monotonic() - t0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--at", help="the date to plan for (default: today, as `make demo`)")
    parser.add_argument("--keep-output", action="store_true", help="print both runs' console output")
    args = parser.parse_args()
    at = ["--at", args.at] if args.at else []
    plan = json.loads(subprocess.run([HUBFLEET, "plan", str(CATALOG), "--json", "--state-dir", "/nonexistent", *at],
                                     capture_output=True, text=True, check=True).stdout)  # fmt: skip
    hubs = [h["name"] for h in plan["hubs"]]
    fleet = "example-university"
    accounts_before = fleet_accounts(fleet)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="hubfleet-demo-") as tmp:
        state = Path(tmp) / "state"
        runs = {}
        try:
            for label in ("first start", "second start"):
                runs[label] = one_start(state, port, at, hubs, Path(tmp) / f"{label}.log")
                if args.keep_output:
                    print(f"--- {label} output ---\n{(Path(tmp) / f'{label}.log').read_text()}")
        finally:
            subprocess.run([HUBFLEET, "down", str(CATALOG), "--state-dir", str(state)], capture_output=True)
            for name in fleet_accounts(fleet) - accounts_before:
                subprocess.run(["userdel", name], capture_output=True)
    print(f"hubfleet up {CATALOG.relative_to(ROOT)}: {len(hubs)} hubs, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}, {'root' if os.geteuid() == 0 else 'demo mode'}; seconds from start")
    names = ["portal", *hubs, "enrolment table printed"]
    print(f"{'':26}" + "".join(f"{label:>14}" for label in runs))
    for name in names:
        print(f"{name:26}" + "".join(f"{r.get(name, float('nan')):>14.1f}" for r in runs.values()))
    for label, r in runs.items():
        last = max(v for k, v in r.items() if k != "enrolment table printed")
        print(f"{label}: portal and all {len(hubs)} hubs answering at {last:.1f} s (target {TARGET:g} s): "
              f"{'ok' if last < TARGET else 'OVER'}")


if __name__ == "__main__":
    main()
