"""The front door is up only when its public port answers for this fleet (issue 15 item 7).

Seen before the fix: the front-door proxy logged ``listen EADDRINUSE 127.0.0.1:8200`` (another fleet held it), the
readiness check looked only at the proxy's API port, ``apply`` exited 0 and printed a portal URL that served the
other fleet. Now a taken port is refused before anything starts, with exit 2, naming the port and its holder.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import browser_client, free_port, running_in, write_two_course_catalog

from hubfleet.backends.local.backend import stop_fleet
from hubfleet.backends.local.fleetstate import FleetPaths
from hubfleet.backends.local.frontdoor import FrontDoor
from hubfleet.backends.local.proxy import find_chp

pytestmark = pytest.mark.slow


@pytest.fixture
def catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("HUBFLEET_DEMO_MODE", "1")
    root = write_two_course_catalog(tmp_path / "catalog")
    try:
        yield root
    finally:
        stop_fleet(tmp_path / "state")  # in case an apply started anything


def apply(catalog: Path, state: Path, port: int) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "hubfleet.cli.main", "apply", str(catalog), "--yes", "--state-dir", str(state),
            "--port", str(port), "--at", "2026-11-01"]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_a_port_held_by_another_program_is_refused_before_anything_starts(catalog: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        run = apply(catalog, state, port)
    message = " ".join(run.stderr.split())
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"port {port}" in message and f"pid {os.getpid()}" in message and "Nothing was changed" in message
    assert running_in(state) == [] and not (state / "hubs").exists()


def test_a_port_held_by_another_fleets_front_door_names_that_fleet(catalog: Path, tmp_path: Path) -> None:
    other_state = tmp_path / "other-fleet"
    other = FrontDoor(FleetPaths(other_state), free_port(), find_chp())
    try:
        other.ensure_running()
        run = apply(catalog, tmp_path / "state", other.port)
        message = " ".join(run.stderr.split())
        assert run.returncode == 2, run.stdout + run.stderr
        assert f"port {other.port}" in message and f"the front door of the fleet in {other_state}" in message
        # The other fleet is untouched and still answers as itself.
        assert httpx.get(f"http://127.0.0.1:{other.port}/healthz").json()["fleet"] == other.fleet_id()
    finally:
        other.stop()


def test_the_public_port_answers_with_this_fleets_identity(tmp_path: Path) -> None:
    doors = [FrontDoor(FleetPaths(tmp_path / name), free_port(), find_chp()) for name in ("a", "b")]
    try:
        for door in doors:
            door.ensure_running()
        answers = [browser_client().get(f"{door.url}/healthz").json()["fleet"] for door in doors]
        assert answers == [door.fleet_id() for door in doors] and answers[0] != answers[1]
        before = [r.pid for r in doors[0].records()]
        doors[0].ensure_running()  # running already: ready again, same processes (its own port is no obstacle)
        assert [r.pid for r in doors[0].records()] == before
    finally:
        for door in doors:
            door.stop()


def test_a_deep_state_dir_gets_its_own_private_socket_folder_and_changes_no_other(tmp_path: Path) -> None:
    """A state dir too deep for a socket path puts the portal's socket in a private temporary folder. Seen before the
    fix: with no folder on record it used "/nonexistent", whose parent "/" is root's, and as root chmod-ed "/" to
    0700 (every other account on the machine then failed to load a library); a recorded path was trusted as is."""
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "state"
    door = FrontDoor(FleetPaths(deep), free_port(), find_chp())
    fresh = door._portal_socket({})
    assert fresh.parent.parent == Path(tempfile.gettempdir()) and fresh.parent.name.startswith("hubfleet-portal-")
    assert fresh.parent.stat().st_mode & 0o777 == 0o700
    assert door._portal_socket({"portal_socket": str(fresh)}) == fresh  # its own folder is kept across restarts
    victim = tmp_path / "shared"
    victim.mkdir(mode=0o755)
    victim.chmod(0o755)
    elsewhere = door._portal_socket({"portal_socket": str(victim / "portal.sock")})
    assert elsewhere.parent != victim and victim.stat().st_mode & 0o777 == 0o755  # not taken over, not chmod-ed
    for folder in (fresh.parent, elsewhere.parent):
        shutil.rmtree(folder)
