"""Nothing of a local fleet's state, storage or archives is readable by a student account (root mode).

A real fleet, run by the real CLI through two dates (``--at``): one presentation open with a real server spawned
for a student, then archived (its archive written to a store outside the state dir, its hub retired), the other
open. Then every file and directory under the state dir, the storage root (here the default, inside the state dir)
and the archive store is tried *as the student's own account* in a child process: open for reading, list a
directory. Each must be refused with EACCES, except the student's own files.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from hub_fixture import world_traversable_dir

from hubfleet.backends.local import workspace
from hubfleet.backends.local.backend import stop_fleet
from hubfleet.catalog import naming

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="student accounts need root")]
OPEN, ARCHIVED = dt.date(2026, 8, 15), dt.date(2026, 10, 15)
FLEET = "perm-test"
PREFIX = naming.account_prefix(FLEET)
USERS = ("sid", "pat")

CATALOG = """\
fleet:
  name: perm-test
  topology: per-presentation
  platform_team: [root-admin]
  lifecycle: {provision_days_before_start: 14, read_only_days_after_end: 5, retention_days: 365}
courses:
  - code: PERM
    title: Permissions
    seed: [{source: material, target: ".", overwrite: if-unchanged}]
    presentations:
      - {id: 2026A, start: 2026-02-01, end: 2026-09-01, expected_students: 5, enrolment: [{csv: a.csv}]}
      - {id: 2026J, start: 2026-08-20, end: 2027-06-01, expected_students: 5, enrolment: [{csv: j.csv}]}
"""

# Run as the student: try every path, report what the kernel said.
PROBE = textwrap.dedent("""
    import json, os, sys
    out = {}
    for path, is_dir in json.load(sys.stdin):
        try:
            if is_dir:
                os.listdir(path)
            else:
                os.close(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK))
            out[path] = "READ"
        except OSError as exc:
            out[path] = exc.errno
    print(json.dumps(out))
""")


class Fleet:
    def __init__(self, root: Path) -> None:
        self.root, self.catalog, self.state = root, root / "catalog", root / "state"
        self.storage, self.store, self.port = self.state / "storage", root / "archive-store", free_port()

    def run(self, at: dt.date) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "hubfleet.cli.main", "lifecycle", "run", str(self.catalog), "--state-dir",
                str(self.state), "--port", str(self.port), "--archive-store", str(self.store), "--at", at.isoformat()]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    f = Fleet(world_traversable_dir("hf-perm-"))
    (f.catalog / "material").mkdir(parents=True)
    (f.catalog / "material" / "README.md").write_text("# Welcome\n")
    (f.catalog / "fleet.yaml").write_text(CATALOG)
    (f.catalog / "a.csv").write_text("username,role\nsid,student\npat,student\n")
    (f.catalog / "j.csv").write_text("username,role\nsid,student\n")
    try:
        yield f
    finally:
        stop_fleet(f.state)
        for user in USERS:
            subprocess.run(["userdel", naming.unix_account(PREFIX, user)], capture_output=True)
        shutil.rmtree(f.root, ignore_errors=True)


def _spawn(fleet: Fleet, hub: str, user: str) -> None:
    """A real spawn, asked for by hubfleet's own service token (the hub's spawner does all the work)."""
    ports = json.loads((fleet.state / "ports.json").read_text())
    port = next(v for k, v in _flat(ports) if hub in k and "proxy" in k and "api" not in k)
    token = (fleet.state / "hubs" / hub / "service_token").read_text().strip()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}/hub/api/", headers={"Authorization": f"token {token}"}, timeout=60) as api:
        assert api.post(f"users/{user}/server").status_code in (201, 202)
        deadline = time.monotonic() + 120
        while not (api.get(f"users/{user}").json()["servers"].get("") or {}).get("ready"):
            assert time.monotonic() < deadline, (fleet.state / "hubs" / hub / "logs" / "hub.log").read_text()[-3000:]
            time.sleep(0.3)


def _flat(doc: object, prefix: str = "") -> list[tuple[str, int]]:
    if isinstance(doc, dict):
        return [kv for k, v in doc.items() for kv in _flat(v, f"{prefix}/{k}")]
    return [(prefix, doc)] if isinstance(doc, int) else []


def _everything(*tops: Path) -> list[tuple[str, bool]]:
    found = []
    for top in tops:
        for root, dirs, files in os.walk(top):
            found.append((root, True))
            found += [(os.path.join(root, n), False) for n in files if not os.path.islink(os.path.join(root, n))]
    return found


def test_a_student_can_read_nothing_of_the_state_storage_or_archives_but_their_own(fleet: Fleet) -> None:
    run = fleet.run(OPEN)
    assert run.returncode == 0, run.stdout + run.stderr
    for user in USERS:
        _spawn(fleet, "perm-2026a", user)
    run = fleet.run(ARCHIVED)  # stops the 2026A hub, archives both students, retires the hub; 2026J stays up
    assert run.returncode == 0, run.stdout + run.stderr
    archives = sorted(p.name for p in fleet.store.rglob("*.tar.gz"))
    assert len(archives) == 2, archives
    assert (fleet.state / "retired").is_dir() and (fleet.state / "lab").is_dir()
    assert any(p.name.endswith("-wal") or p.name == "jupyterhub.sqlite" for p in fleet.state.rglob("*"))

    sid = workspace.existing_owner("sid", PREFIX)
    mine = fleet.storage / "home" / naming.storage_name("sid")
    paths = _everything(fleet.state, fleet.store)
    assert len(paths) > 40, paths  # dbs, logs, secrets, rosters, lab config, archives, homes
    probe = subprocess.run(["/usr/bin/python3", "-c", PROBE], input=json.dumps(paths), capture_output=True, text=True,
                           user=sid.uid, group=sid.gid, extra_groups=[], timeout=120)  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    readable = sorted(p for p, what in seen.items() if what == "READ" and not Path(p).is_relative_to(mine))
    assert readable == [], readable
    other = sorted((p, what) for p, what in seen.items() if what not in ("READ", errno.EACCES))
    assert other == [], other
