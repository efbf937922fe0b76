"""The hub side of the local backend, end to end: a real JupyterHub 6 + node CHP per hub, configured by
``hubconfig.configure`` from a hub.json built from a real plan; logins over HTTP, real servers and kernels, and
(as root) real system users.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pwd
import re
import shutil
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hub_fixture import world_traversable_dir
from test_local_hub_fixture import (
    LocalHub, account, hub_api_as, login, make_hub_dir, run_in_kernel, student_python, user_token, wait_ready,
)

from hubfleet.backends.local import process
from hubfleet.backends.local.fleetstate import HubPaths
from hubfleet.backends.local.members import hash_password, verify_password
from hubfleet.backends.local.shutdown import reap_leftovers

pytestmark = pytest.mark.slow
ROOT = os.geteuid() == 0
TODAY = dt.date(2026, 11, 1)
DISABLED = "@jupyterlab/extensionmanager-extension"

FLEET_ONE = """\
fleet:
  name: testuni
  topology: per-presentation
  platform_team: [root-admin]
  branding: {name: Test University Notebooks, primary_color: "#123456", login_message: Use your test account., logo: logo.svg}
courses:
  - code: TM351
    title: Data management
    seed: [{source: material/TM351, target: ".", overwrite: if-unchanged}]
    extensions:
      disabled: ["@jupyterlab/extensionmanager-extension"]
      settings: {"@jupyterlab/apputils-extension:themes": {theme: JupyterLab Dark}}
    storage:
      extra_mounts: [{name: postgres, path: "{course_dir}/.postgres/data"}]
    team: {tutors: [tess]}
    presentations:
      - {id: 2026J, start: 2026-10-03, end: 2027-06-10, expected_students: 10, enrolment: [{csv: tm351.csv}]}
"""

FLEET_TWO = """\
fleet:
  name: testuni
  topology: per-course
  platform_team: [root-admin]
courses:
  - code: A233
    title: Digital humanities
    seed: [{source: material/A233, target: corpus, overwrite: never}]
    storage: {layout: per-presentation}
    presentations:
      - {id: 2026B, start: 2026-02-07, end: 2026-10-15, expected_students: 10, enrolment: [{csv: b.csv}]}
      - {id: 2026J, start: 2026-10-03, end: 2027-06-10, expected_students: 10, enrolment: [{csv: j.csv}]}
"""


def _catalog(root: Path, fleet: str, rosters: dict[str, str]) -> Path:
    cat = root / "catalog"
    (cat / "material" / "TM351").mkdir(parents=True)
    (cat / "material" / "TM351" / "README.md").write_text("# TM351\nWelcome.\n")
    (cat / "material" / "TM351" / "week1.txt").write_text("week 1, version 1\n")
    (cat / "material" / "A233").mkdir(parents=True)
    (cat / "material" / "A233" / "persuasion.txt").write_text("Sir Walter Elliot...\n")
    (cat / "logo.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" id="test-logo"/>')
    (cat / "fleet.yaml").write_text(fleet)
    for name, text in rosters.items():
        (cat / name).write_text(text)
    return cat


def _started(hub: LocalHub) -> Iterator[LocalHub]:
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()
        left = hub.leftovers()
        for proc in left:  # only ours: matched by this hub's dir, ports or storage root
            proc.kill()
        assert not left, f"left running after stop: {[p.info for p in left]}"


# -- hub A: one presentation, students isolated as system users ----------------------------------------------

PASSWORDS = {u: f"pw-{u}" for u in ("alice", "bob", "tess", "mallory", "root-admin")}


@pytest.fixture(scope="module")
def hub_a() -> Iterator[LocalHub]:
    if not ROOT:
        pytest.skip("system-user isolation needs root")
    root = world_traversable_dir("hf-hub-a-")
    cat = _catalog(root, FLEET_ONE, {"tm351.csv": "username,role\nalice,student\nbob,student\n"})
    members = {"alice": {"TM351-2026J": "student"}, "bob": {"TM351-2026J": "student"}}
    hub = make_hub_dir(root, cat, "tm351-2026j", today=TODAY, members=members, demo=False, passwords=PASSWORDS,
                       singleuser_python=student_python(root))
    yield from _started(hub)
    for user in ("alice", "bob", "tess"):
        subprocess.run(["userdel", account(hub, user)], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def alice(hub_a: LocalHub) -> tuple[httpx.Client, str]:
    """alice logged in, her server started from /hub/spawn (no form: one course), and an API token."""
    b, resp = login(hub_a, "alice", "pw-alice")
    assert resp.status_code == 302
    spawn = b.get(f"{hub_a.base}hub/spawn")
    assert spawn.status_code == 302, hub_a.log_tail()
    wait_ready(hub_a, "alice")
    return b, user_token(b, hub_a, "alice")


def test_password_hashes_round_trip() -> None:
    stored = hash_password("s3cret")
    assert stored.startswith("scrypt$") and verify_password("s3cret", stored)
    assert not verify_password("S3cret", stored) and not verify_password("s3cret", "garbage")


def test_login_goes_straight_to_the_portal_and_pages_are_branded(hub_a: LocalHub) -> None:
    # auto_login: the hub has no password form of its own; the portal (OpenID Connect provider) signs people in.
    page = httpx.get(f"{hub_a.origin}{hub_a.base}hub/login")
    assert page.status_code == 302 and "oauth_login" in page.headers["location"]
    _, forbidden = login(hub_a, "mallory", "pw-mallory")
    assert "Test University Notebooks" in forbidden.text
    assert "TM351-2026J: Data management" in forbidden.text
    assert "#123456" in forbidden.text
    assert "hubfleet-demo-banner" not in forbidden.text
    logo = httpx.get(f"{hub_a.origin}{hub_a.base}hub/logo")
    assert logo.status_code == 200 and "test-logo" in logo.text


def test_wrong_password_is_an_ordinary_failed_login(hub_a: LocalHub) -> None:
    _, resp = login(hub_a, "mallory", "not-her-password")
    assert "Invalid username or password" in resp.text
    assert "hubfleet-forbidden" not in resp.text


def test_right_password_but_not_enrolled_gets_the_403_page(hub_a: LocalHub) -> None:
    _, resp = login(hub_a, "mallory", "pw-mallory")
    assert resp.status_code == 403
    assert "hubfleet-forbidden" in resp.text
    assert "not enrolled on TM351-2026J" in resp.text
    assert f'href="{hub_a.origin}/portal/"' in resp.text  # the portal, where her own courses are listed


def test_tutor_and_admin_may_log_in(hub_a: LocalHub) -> None:
    for user in ("tess", "root-admin"):
        _, resp = login(hub_a, user, f"pw-{user}")
        assert resp.status_code == 302, resp.text[:300]


def test_tutor_sees_only_their_presentations_students(hub_a: LocalHub) -> None:
    """The planner's roles are loaded, and the groups they filter on are seeded from members.json."""
    b, _ = login(hub_a, "tess", "pw-tess")
    users = hub_api_as(b, hub_a, "GET", "users")
    assert users.status_code == 200, users.text
    assert {u["name"] for u in users.json()} == {"alice", "bob"}


def test_kernel_runs_in_course_folder_with_seeded_material(hub_a: LocalHub, alice) -> None:
    _, token = alice
    home = hub_a.storage_root / "home" / "alice"
    code = "import os, json; print(json.dumps([os.getcwd(), sorted(os.listdir('.')), os.getuid(), os.environ['COURSE_CODE'], os.environ['PRESENTATION'], os.environ['HUBFLEET_HUB']]))"
    # ref: DESIGN.md "Known traps": a kernel started over REST with no path must still run in the course folder.
    cwd, files, uid, course, pres, hub = json.loads(run_in_kernel(hub_a, "alice", token, code))
    assert cwd == str(home / "TM351-2026J")
    assert {"README.md", "week1.txt", ".postgres"} <= set(files)
    assert uid == pwd.getpwnam(account(hub_a, "alice")).pw_uid
    assert (course, pres, hub) == ("TM351", "2026J", "tm351-2026j")
    assert (home / "TM351-2026J" / ".postgres" / "data").is_dir()


def test_students_cannot_read_each_other(hub_a: LocalHub, alice) -> None:
    _, token = alice
    b, resp = login(hub_a, "bob", "pw-bob")
    assert b.get(f"{hub_a.base}hub/spawn").status_code == 302
    wait_ready(hub_a, "bob")
    bob_home = hub_a.storage_root / "home" / "bob"
    assert (bob_home / "TM351-2026J" / "README.md").is_file()
    code = textwrap.dedent(f"""
        import os
        for p in [{str(bob_home / 'TM351-2026J' / 'README.md')!r}, {str(bob_home)!r}, {str(bob_home.parent)!r}]:
            try:
                open(p).read() if p.endswith('.md') else os.listdir(p)
                print('OPENED', p)
            except OSError:  # EACCES on the host; inside the sandbox the paths are not there at all
                print('DENIED', p)
    """)
    out = run_in_kernel(hub_a, "alice", token, code)
    assert "OPENED" not in out and out.count("DENIED") == 3, out
    assert oct(bob_home.stat().st_mode & 0o777) == "0o700"


def test_if_unchanged_seeding_keeps_an_edit_and_updates_the_rest(hub_a: LocalHub, alice) -> None:
    b, token = alice
    run_in_kernel(hub_a, "alice", token, "open('README.md', 'w').write('my notes\\n')")
    (hub_a.catalog_root / "material" / "TM351" / "week1.txt").write_text("week 1, version 2\n")
    with hub_a.api() as api:
        assert api.delete("users/alice/server").status_code in (202, 204)
    _wait_stopped(hub_a, "alice")
    assert b.get(f"{hub_a.base}hub/spawn").status_code == 302
    wait_ready(hub_a, "alice")
    course = hub_a.storage_root / "home" / "alice" / "TM351-2026J"
    assert (course / "README.md").read_text() == "my notes\n"
    assert (course / "week1.txt").read_text() == "week 1, version 2\n"


def test_page_config_disables_the_course_extension(hub_a: LocalHub, alice) -> None:
    _, token = alice
    server = f"{hub_a.origin}{hub_a.base}user/alice/"
    lab = httpx.get(server + "lab", headers={"Authorization": f"token {token}"}, timeout=60)
    assert lab.status_code == 200
    config = json.loads(re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', lab.text, re.S).group(1))
    assert DISABLED in config["disabledExtensions"]
    # The Extension Manager lists what is installed but offers no installs: a course's extensions come from the
    # catalog, and a pip install from a student's server would go into the shared environment (or be refused).
    assert config["extensionManager"]["name"] == "read-only" and config["extensionManager"]["can_install"] is False
    assert config["preferredPath"].strip("/") == "TM351-2026J"
    themes = httpx.get(server + "lab/api/settings/@jupyterlab/apputils-extension:themes",
                       headers={"Authorization": f"token {token}"}, timeout=60)  # fmt: skip
    assert themes.json()["schema"]["properties"]["theme"]["default"] == "JupyterLab Dark"


def test_hubfleet_service_role_is_minimal(hub_a: LocalHub) -> None:
    with hub_a.api() as api:
        me = api.get("user").json()
        assert me["kind"] == "service" and me["name"] == "hubfleet"
        assert api.get("info").status_code == 200
        assert api.post("users/alice/tokens", json={}).status_code == 403  # never acts as a student
        assert api.get("groups/tm351-2026j").json()["users"] == ["alice", "bob"]


def _wait_stopped(hub: LocalHub, user: str) -> None:
    with hub.api() as api:
        for _ in range(600):
            if not api.get(f"users/{user}").json().get("servers"):
                return
            time.sleep(0.2)
    raise AssertionError(f"{user}'s server did not stop")


def test_idle_culler_and_proxy_run_under_the_hub(hub_a: LocalHub) -> None:
    """jupyterhub-idle-culler is a hub-managed service, and this hub (start_proxy default) runs its own node CHP.
    Their memory is measured in benchmarks/local_fleet.py, not here."""
    proc = process.read_alive(hub_a.pidfile).process()
    commands = [" ".join(p.cmdline()) for p in proc.children(recursive=True)]
    assert any("configurable-http-proxy" in c for c in commands), commands
    culler = [c for c in commands if "jupyterhub_idle_culler" in c or "idle_culler" in c]
    assert culler and "--timeout=" in culler[0], commands


# -- hub B: two presentations (one read-only), per-presentation storage ---------------------------------------


@pytest.fixture(scope="module")
def hub_b() -> Iterator[LocalHub]:
    if not ROOT:
        pytest.skip("system-user isolation needs root")
    root = world_traversable_dir("hf-hub-b-")
    cat = _catalog(root, FLEET_TWO, {"b.csv": "username,role\ndave,student\n", "j.csv": "username,role\nerin,student\n"})
    members = {"dave": {"A233-2026B": "student"}, "erin": {"A233-2026J": "student"},
               "frank": {"A233-2026B": "student", "A233-2026J": "student"}}  # fmt: skip
    pw = {u: f"pw-{u}" for u in members}
    hub = make_hub_dir(root, cat, "a233", today=TODAY, members=members, demo=False, passwords=pw,
                       singleuser_python=student_python(root))
    yield from _started(hub)
    for user in members:
        subprocess.run(["userdel", account(hub, user)], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def test_profile_of_another_presentation_is_403(hub_b: LocalHub) -> None:
    b, resp = login(hub_b, "erin", "pw-erin")
    assert resp.status_code == 302
    assert b.get(f"{hub_b.base}hub/spawn").status_code == 302  # one course for erin: no form
    wait_ready(hub_b, "erin")
    with hub_b.api() as api:
        api.delete("users/erin/server")
    _wait_stopped(hub_b, "erin")
    forbidden = hub_api_as(b, hub_b, "POST", "users/erin/server", json={"profile": "a233-2026b-default"})
    assert forbidden.status_code == 403, forbidden.text
    assert "not one of your courses" in forbidden.text
    xsrf = next(c.value for c in b.cookies.jar if c.name == "_xsrf")
    posted = b.post(f"{hub_b.base}hub/spawn", data={"profile": "a233-2026b-default", "_xsrf": xsrf})
    assert posted.status_code == 403 and "not one of your courses" in posted.text, posted.text[:300]


def test_options_form_lists_only_the_users_presentations(hub_b: LocalHub) -> None:
    b, _ = login(hub_b, "frank", "pw-frank")
    form = b.get(f"{hub_b.base}hub/spawn")
    assert form.status_code == 200
    assert set(re.findall(r'name="profile"[^>]*value="([^"]+)"', form.text)) == {"a233-2026b-default", "a233-2026j-default"}
    b2, _ = login(hub_b, "dave", "pw-dave")
    assert b2.get(f"{hub_b.base}hub/spawn").status_code == 302  # only 2026B: straight to spawn


def test_read_only_presentation_is_frozen_and_announced(hub_b: LocalHub) -> None:
    b, _ = login(hub_b, "dave", "pw-dave")
    assert b.get(f"{hub_b.base}hub/spawn").status_code == 302
    wait_ready(hub_b, "dave")
    token = user_token(b, hub_b, "dave")
    course = hub_b.storage_root / "presentations" / "A233-2026B" / "dave"
    out = run_in_kernel(hub_b, "dave", token, textwrap.dedent("""
        import os
        print(os.path.exists('corpus/persuasion.txt'))
        for p in ['new.txt', 'corpus/persuasion.txt']:
            try:
                open(p, 'a').write('x'); print('WROTE')
            except OSError:  # EACCES (frozen modes) or EROFS (the sandbox binds a frozen folder read-only)
                print('DENIED')
    """))
    assert out.split() == ["True", "DENIED", "DENIED"], out
    assert (hub_b.storage_root / "home" / "dave" / "A233-2026B").resolve() == course
    home = b.get(f"{hub_b.base}hub/home")
    assert "hubfleet-read-only-banner" in home.text and "A233-2026B has ended" in home.text
    archive_on = dt.date.fromisoformat(next(p["archive_on"] for p in hub_b.raw["spec"]["presentations"] if p["key"] == "A233-2026B"))
    assert f"until\n      {archive_on.day} {archive_on:%b %Y}" in home.text, "the banner says when the hub is archived"


# -- hub C: demo mode (one OS account) ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub_c() -> Iterator[LocalHub]:
    root = world_traversable_dir("hf-hub-c-")
    cat = _catalog(root, FLEET_ONE, {"tm351.csv": "username,role\nalice,student\n"})
    hub = make_hub_dir(root, cat, "tm351-2026j", today=TODAY, members={"alice": {"TM351-2026J": "student"}}, demo=True)
    yield from _started(hub)
    shutil.rmtree(root, ignore_errors=True)


def test_demo_mode_one_password_and_a_loud_banner(hub_c: LocalHub) -> None:
    _, denied = login(hub_c, "zed", "demo-pass")  # nobody in this fleet: the portal does not know him
    assert denied.status_code == 401 and "Invalid username or password" in denied.text
    b, ok = login(hub_c, "alice", "demo-pass")
    assert ok.status_code == 302
    assert "hubfleet-demo-banner" in b.get(f"{hub_c.base}hub/home").text
    assert b.get(f"{hub_c.base}hub/spawn").status_code == 302
    wait_ready(hub_c, "alice")
    token = user_token(b, hub_c, "alice")
    cwd, uid = json.loads(run_in_kernel(hub_c, "alice", token, "import os, json; print(json.dumps([os.getcwd(), os.getuid()]))"))
    assert cwd == str(hub_c.storage_root / "home" / "alice" / "TM351-2026J")
    assert uid == os.geteuid()  # demo mode: the hub's own account
    # A kernel started for a notebook in another folder still runs next to that notebook.
    (hub_c.storage_root / "home" / "alice" / "scratch").mkdir()
    cwd2 = run_in_kernel(hub_c, "alice", token, "import os; print(os.getcwd())", path="scratch/x.ipynb").strip()
    assert cwd2 == str(hub_c.storage_root / "home" / "alice" / "scratch")


def test_hub_restart_keeps_students_servers(hub_c: LocalHub) -> None:
    """cleanup_servers=False: a config change restarts the hub, not the students' kernels."""
    b, ok = login(hub_c, "alice", "demo-pass")
    assert ok.status_code == 302
    assert b.get(f"{hub_c.base}hub/spawn").status_code == 302  # running already, or started now
    wait_ready(hub_c, "alice")
    token = user_token(b, hub_c, "alice")
    pid_before = run_in_kernel(hub_c, "alice", token, "import os; print(os.getppid())").strip()
    # A restart as the backend does one (convergence.py): descendants=False leaves the servers JupyterHub started
    # in their own sessions alone; a hub that had to be killed (slow to stop on a loaded machine) leaves its
    # services (the idle culler) behind, which reap_leftovers ends before the new hub starts its own.
    process.stop(hub_c.pidfile, timeout=30, descendants=False)
    reap_leftovers(HubPaths(hub_c.hub_dir))
    hub_c.start()
    wait_ready(hub_c, "alice")
    pid_after = run_in_kernel(hub_c, "alice", token, "import os; print(os.getppid())").strip()
    assert pid_after == pid_before  # the same jupyter server process: kernels were never interrupted
