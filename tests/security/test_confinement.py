"""What a student's server can see and use on a local hub (root mode): only this hub's course folder, its own /tmp,
its own memory limit; and a frozen course folder that holds (issues 15.6 and 16.2, 16.9).

One real hub (per-course topology, so one hub holds an open and a read-only presentation of M269), real system
users, real servers reached over HTTP with real tokens. The date stands in for ``--at``: the planner is given it,
exactly as ``hubfleet apply --at`` does.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hub_fixture import world_traversable_dir
from test_local_hub_fixture import (
    LocalHub, account, login, make_hub_dir, run_in_kernel, student_python, user_token, wait_ready,
)

from hubfleet.backends.local import workspace
from hubfleet.catalog import load_catalog
from hubfleet.plan import plan

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="confinement needs root")]
TODAY = dt.date(2026, 10, 20)  # M269-2025J read-only (ended 2026-10-10), M269-2026J open
ESSAY = "My TM351 essay: normal forms, and why I disagree with my tutor.\n"
MEMORY_LIMIT = 700 * 2**20  # page-aligned, so the kernel keeps it exactly

FLEET = f"""\
fleet:
  name: confine-test
  topology: per-course
  platform_team: [root-admin]
  defaults:
    resources: {{cpu: "0.5", memory: 256M, cpu_limit: "1", memory_limit: "{MEMORY_LIMIT >> 20}Mi"}}
courses:
  - code: M269
    title: Algorithms
    seed: [{{source: material/M269, target: ".", overwrite: if-unchanged}}]
    team: {{tutors: [tina]}}
    presentations:
      - {{id: 2025J, start: 2025-10-04, end: 2026-10-10, expected_students: 10, enrolment: [{{csv: m269-2025j.csv}}]}}
      - {{id: 2026J, start: 2026-10-03, end: 2027-06-10, expected_students: 10, enrolment: [{{csv: m269-2026j.csv}}]}}
  - code: TM351
    title: Data management
    presentations:
      - {{id: 2026J, start: 2026-10-03, end: 2027-06-10, expected_students: 10, enrolment: [{{csv: tm351.csv}}]}}
"""
MEMBERS = {
    "sam": {"M269-2026J": "student", "TM351-2026J": "student"},
    "alice.smith": {"M269-2026J": "student"},
    "rob": {"M269-2025J": "student"},
    "tina": {"M269-2026J": "tutor", "M269-2025J": "tutor"},
}


@pytest.fixture(scope="module")
def hub() -> Iterator[LocalHub]:
    root = world_traversable_dir("hf-confine-")
    cat = root / "catalog"
    (cat / "material" / "M269").mkdir(parents=True)
    (cat / "material" / "M269" / "unit1.md").write_text("# Unit 1\nSorting.\n")
    (cat / "fleet.yaml").write_text(FLEET)
    (cat / "m269-2025j.csv").write_text("username,role\nrob,student\n")
    (cat / "m269-2026j.csv").write_text("username,role\nsam,student\nalice.smith,student\n")
    (cat / "tm351.csv").write_text("username,role\nsam,student\n")
    pw = {u: f"pw-{u}" for u in MEMBERS}
    h = make_hub_dir(root, cat, "m269", today=TODAY, members=MEMBERS, demo=False, passwords=pw,
                     singleuser_python=student_python(root))
    h.start()
    try:
        yield h
    finally:
        h.stop()
        left = h.leftovers()
        for proc in left:
            proc.kill()
        for user in MEMBERS:
            subprocess.run(["userdel", account(h, user)], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"left running after stop: {left}"


def _spawned(hub: LocalHub, user: str) -> str:
    """Sign in as ``user``, start their server (one course each: no form), return their API token."""
    b, resp = login(hub, user, f"pw-{user}")
    assert resp.status_code == 302, resp.text[:300]
    assert b.get(f"{hub.base}hub/spawn").status_code == 302, hub.log_tail()
    wait_ready(hub, user)
    return user_token(b, hub, user)


@pytest.fixture(scope="module")
def sam(hub: LocalHub) -> str:
    """sam is on M269 (this hub) and TM351 (another hub): his TM351 folder, with an essay, is in his home."""
    token = _spawned(hub, "sam")
    tm351 = next(p for p in plan(load_catalog(hub.catalog_root).catalog, TODAY).all_presentations() if p.key == "TM351-2026J")
    ws = workspace.workspace_for(hub.storage_root, "tm351-2026j", "sam", tm351)
    owner = workspace.existing_owner("sam", hub.raw["account_prefix"])
    workspace.prepare(ws, hub.storage_root, owner)
    (ws.course_dir / "essay.md").write_text(ESSAY)
    os.chown(ws.course_dir / "essay.md", owner.uid, owner.gid)
    return token


@pytest.fixture(scope="module")
def alice(hub: LocalHub) -> str:
    return _spawned(hub, "alice.smith")


def _server(hub: LocalHub, user: str) -> str:
    return f"{hub.origin}{hub.base}user/{user}/"


def _open_as_staff(hub: LocalHub, staff: str, student: str) -> httpx.Client:
    """Open a student's server as a member of staff, as a browser does: the hub asks "Authorize access"
    (JupyterHub's OAuth page for someone else's server), staff click Authorize, the server sets its cookie.
    A plain API token would not do: the server cannot resolve the group filter of a tutor's access:servers."""
    b, resp = login(hub, staff, f"pw-{staff}")
    assert resp.status_code == 302
    resp = b.get(f"{hub.base}user/{student}/lab")
    for _ in range(10):
        if resp.status_code == 200 and 'name="scopes"' in resp.text:  # the Authorize access page
            form = dict(re.findall(r'name="(_xsrf|scopes)" value="([^"]*)"', resp.text))
            resp = b.post(str(resp.request.url), data=form)
        elif resp.status_code in (301, 302, 303):
            resp = b.get(resp.headers["location"])
        else:
            break
    assert any(c.name.startswith("jupyterhub-user-") for c in b.cookies.jar), (resp.status_code, resp.text[:300])
    return b


def test_tutor_who_opens_a_students_server_sees_only_this_courses_folder(hub: LocalHub, sam: str) -> None:
    tutor = _open_as_staff(hub, "tina", "sam")
    contents = f"{hub.base}user/sam/api/contents/"
    # The tutor is in the student's server and can work in the M269 folder...
    listing = tutor.get(contents)
    assert listing.status_code == 200, listing.text
    names = {c["name"] for c in listing.json()["content"]}
    assert "M269-2026J" in names
    unit = tutor.get(contents + "M269-2026J/unit1.md")
    assert unit.status_code == 200 and "Sorting" in unit.json()["content"]
    # ...but the student's TM351 folder is not there: not in the file browser, not by path.
    assert "TM351-2026J" not in names
    assert tutor.get(contents + "TM351-2026J/essay.md").status_code == 404
    # Nor for any code running in that server (a tutor's notebook runs as the student, in the same sandbox).
    home = hub.storage_root / "home" / "sam"
    code = textwrap.dedent(f"""
        import os
        for p in [{str(home / 'TM351-2026J' / 'essay.md')!r}, {str(home / 'TM351-2026J')!r}]:
            try:
                print('READ', open(p).read() if p.endswith('.md') else os.listdir(p))
            except OSError as exc:
                print('NO', type(exc).__name__)
        print(sorted(os.listdir({str(home)!r})))
    """)
    out = run_in_kernel(hub, "sam", sam, code)
    assert "READ" not in out and out.count("NO FileNotFoundError") == 2, out
    assert "TM351" not in out.splitlines()[-1], out
    assert (home / "TM351-2026J" / "essay.md").read_text() == ESSAY  # still there, for the TM351 hub


def test_students_do_not_share_tmp_and_see_no_fleet_files(hub: LocalHub, sam: str, alice: str) -> None:
    secret = "sam's /tmp note"
    run_in_kernel(hub, "sam", sam, f"open('/tmp/sam-note.txt', 'w').write({secret!r}); open('/dev/shm/sam-shm', 'w').write('x')")
    assert "sam-note" in run_in_kernel(hub, "sam", sam, "import os; print(os.listdir('/tmp'))")
    code = textwrap.dedent(f"""
        import json, os
        def ls(p):
            try:
                return sorted(os.listdir(p))
            except OSError as exc:
                return type(exc).__name__
        procs = [p for p in os.listdir('/proc') if p.isdigit()]
        owners = {{os.stat(f'/proc/{{p}}').st_uid for p in procs if os.path.exists(f'/proc/{{p}}')}}
        print(json.dumps({{
            "tmp": ls('/tmp'), "shm": ls('/dev/shm'), "state": ls({str(hub.state)!r}),
            "hubs": ls({str(hub.state / 'hubs')!r}), "storage": ls({str(hub.storage_root)!r}),
            "homes": ls({str(hub.storage_root / 'home')!r}), "sam": ls({str(hub.storage_root / 'home' / 'sam')!r}),
            "owners": sorted(owners), "me": os.getuid(),
        }}))
    """)
    seen = json.loads(run_in_kernel(hub, "alice.smith", alice, code))
    # Her /tmp is her own (this test's fleet lives under the host's /tmp, so the way down to it is there, empty).
    assert "sam-note.txt" not in seen["tmp"] and seen["shm"] == [], seen
    assert seen["tmp"] in ([], [hub.state.parent.name]), seen
    # The fleet's state dir (databases, rosters, logs, tokens) and other students' homes are simply not there.
    assert seen["state"] in ("PermissionError", [], ["lab"]) and seen["hubs"] == "FileNotFoundError", seen
    assert seen["storage"] in ("PermissionError", ["home"]) and seen["homes"] in ("PermissionError", ["alice-2esmith"]), seen
    assert seen["sam"] == "FileNotFoundError", seen
    # Her own pid namespace: her processes and the sandbox's init (root), nobody else's.
    assert set(seen["owners"]) <= {0, seen["me"]}, seen["owners"]


def _limit_of(hub: LocalHub, user: str) -> int:
    """The memory limit of the cgroup the user's server runs in, read from the host."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if "memory" in names.split(","):
            base = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            break
    else:
        pytest.skip("no cgroup v1 memory controller on this machine")
    group = base / "hubfleet" / hub.name / account(hub, user)
    return int((group / "memory.limit_in_bytes").read_text())


def test_a_runaway_allocation_is_killed_and_other_servers_live_on(hub: LocalHub, sam: str, alice: str) -> None:
    # Twice the limit, written (not just reserved), in a child of the kernel: the kernel's own group's OOM killer
    # ends the biggest process in that group, the child.
    code = textwrap.dedent(f"""
        import subprocess, sys
        run = subprocess.run([sys.executable, '-c', 'x = b"1" * {2 * MEMORY_LIMIT}; print(len(x))'], capture_output=True)
        print('RC', run.returncode)
    """)
    out = run_in_kernel(hub, "sam", sam, code)
    assert "RC -9" in out, out
    # Sam's server and kernel are still there, and so is alice's server.
    assert "RC 0" in run_in_kernel(hub, "sam", sam, "import subprocess, sys; print('RC', subprocess.run([sys.executable, '-c', 'x = b\"1\" * 10**7']).returncode)")
    assert run_in_kernel(hub, "alice.smith", alice, "print(6 * 7)").strip() == "42"
    assert _limit_of(hub, "sam") == MEMORY_LIMIT


def test_a_frozen_course_folder_cannot_be_renamed_away_or_shadowed(hub: LocalHub) -> None:
    token = _spawned(hub, "rob")
    home = hub.storage_root / "home" / "rob"
    frozen = home / "M269-2025J"
    assert workspace.is_read_only(frozen) and (frozen / "unit1.md").is_file()
    headers = {"Authorization": f"token {token}"}
    # Through the student's own server API (what JupyterLab's file browser does on "Rename").
    renamed = httpx.patch(_server(hub, "rob") + "api/contents/M269-2025J", json={"path": "gone"}, headers=headers, timeout=60)
    assert renamed.status_code >= 400, renamed.text
    code = textwrap.dedent(f"""
        import errno, os
        for step in ('rename', 'shadow'):
            try:
                if step == 'rename':
                    os.rename({str(frozen)!r}, {str(home / 'gone')!r})
                else:
                    os.mkdir({str(frozen) + '.new'!r}); os.rename({str(frozen) + '.new'!r}, {str(frozen)!r})
                print(step, 'DONE')
            except OSError as exc:
                print(step, errno.errorcode[exc.errno])
    """)
    out = run_in_kernel(hub, "rob", token, code)
    assert "DONE" not in out, out
    # On the host: the folder is where it was, frozen, with its material.
    assert frozen.is_dir() and not frozen.is_symlink() and workspace.is_read_only(frozen)
    assert (frozen / "unit1.md").read_text().startswith("# Unit 1")
    assert not (home / "gone").exists()
