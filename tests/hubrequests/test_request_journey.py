"""The whole loop in a real Chromium, on a real local fleet: a course-team member requests a hub for a new
presentation, gets the schema's error on a bad date and fixes it, submits; the unit admin asks for a change; the
requester makes it; the platform team approves; the catalog repository has one new commit with the course file;
the next reconcile (``hubfleet apply``) provisions the hub; a student on the uploaded roster signs in and opens it.

Screenshots of each page are saved under ``docs/screenshots/requests/`` when ``HUBFLEET_SCREENSHOTS=1`` (how the
committed ones were made), otherwise in the test's own temporary folder, so a test run leaves the checkout as it was.

Who is who: ivan (TM351's instructor, stem), uadmin (stem's unit admin, until 2030), opsadmin (platform team),
newstudent (only on the roster uploaded with the request).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest


from hubfleet.backends.local.backend import stop_fleet
from request_support import free_port, git, running_in

pytestmark = pytest.mark.slow
DOCS_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "requests"
TODAY = dt.date.today()  # the portal plans with the real date, so the catalog's dates are relative to it
START, END = TODAY - dt.timedelta(days=5), TODAY + dt.timedelta(days=200)


def write_catalog(root: Path) -> Path:
    (root / "courses").mkdir(parents=True)
    (root / "enrolments").mkdir()
    (root / "enrolments" / "TM351-A.csv").write_text("username,role\nalice,student\n")
    (root / "users.csv").write_text("username,password,groups\nuadmin,uadmin-password,\n")
    (root / "fleet.yaml").write_text(textwrap.dedent("""\
        fleet:
          name: journey-university
          platform_team: [opsadmin]
          auth: {type: embedded, users_file: users.csv}
          branding: {name: Journey University Notebooks, primary_color: "#0b4f8a"}
          units:
            - id: stem
              name: Faculty of STEM
              admins: [{username: uadmin, until: 2030-07-31}]
          requests: {commit_to: main, main_branch: main}
        """))
    (root / "courses" / "TM351.yaml").write_text(textwrap.dedent(f"""\
        # TM351: the module team owns this file.
        code: TM351
        title: Data management and analysis
        unit: stem
        team: {{instructors: [ivan]}}
        presentations:
          - id: A
            start: {START}
            end: {END}
            enrolment: [{{csv: ../enrolments/TM351-A.csv}}]
        """))
    git(root, "init", "-q", "-b", "main")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "catalog")
    return root


@dataclass
class Fleet:
    catalog: Path
    state: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://portal.localhost:{self.port}"

    @property
    def password(self) -> str:
        return (self.state / "demo-password").read_text().strip()

    def apply(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hubfleet.cli.main", "apply", str(self.catalog), "--state-dir",
                               str(self.state), "--port", str(self.port), "--yes"], capture_output=True, text=True,
                              timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("journey")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUBFLEET_DEMO_MODE", "1")  # one account: the loop is about requests, not system users
        f = Fleet(write_catalog(root / "catalog"), root / "state", free_port())
        (f.state / "portal").mkdir(parents=True, mode=0o700)
        (f.state / "portal" / "requests.json").write_text(json.dumps({"catalog": str(f.catalog)}))
        try:
            run = f.apply()
            assert run.returncode == 0, run.stdout + run.stderr
            yield f
        finally:
            seen = running_in(f.state)
            stop_fleet(f.state)
            _, alive = psutil.wait_procs(seen, timeout=30)
            assert alive == [], f"left running after down: {alive}"


def test_request_review_approve_commit_provision_open(fleet: Fleet, tmp_path: Path) -> None:
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    shots = DOCS_SHOTS if os.environ.get("HUBFLEET_SCREENSHOTS") == "1" else tmp_path / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    roster = tmp_path / "roster.csv"
    roster.write_text("username,role\nnewstudent,student\n")
    commits_before = int(git(fleet.catalog, "rev-list", "--count", "main"))
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"]  # fmt: skip
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=args)
        try:

            def person(user: str, password: str):  # noqa: ANN202
                page = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
                page.goto(f"{fleet.url}/portal/login")
                page.fill("#username", user)
                page.fill("#password", password)
                page.click("#sign-in")
                page.wait_for_selector("#portal-user")
                return page

            def shot(page, name: str) -> None:  # noqa: ANN001
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

            # 1. The course team asks for a new presentation, with a roster; the end date is before the start.
            ivan = person("ivan", fleet.password)
            ivan.click("#portal-requests")
            ivan.click("#new-request")
            ivan.fill("#f-course", "TM351")
            ivan.select_option("#f-unit", "stem")
            ivan.fill("#f-presentation", "B")
            ivan.fill("#f-start", START.isoformat())
            ivan.fill("#f-end", (START - dt.timedelta(days=1)).isoformat())
            ivan.fill("#f-expected_students", "40")
            ivan.set_input_files("#f-roster", str(roster))
            ivan.fill("#f-instructors", "ivan")
            shot(ivan, "01-request-form")
            ivan.click("#submit")
            error = ivan.wait_for_selector("#end-error")
            assert "presentations[B].end: end" in error.inner_text() and "fix one of the dates" in error.inner_text()
            assert ivan.get_attribute("#f-end", "aria-describedby") == "end-error"
            shot(ivan, "02-schema-error-beside-the-date")
            ivan.fill("#f-end", END.isoformat())
            ivan.click("#submit")
            ivan.wait_for_selector("#request-state")
            assert ivan.inner_text("#request-state") == "Submitted, awaiting review"
            rid = int(re.search(r"/requests/(\d+)$", ivan.url).group(1))
            shot(ivan, "03-submitted")

            # 2. The unit admin sees it and asks for a change.
            admin = person("uadmin", "uadmin-password")
            admin.goto(f"{fleet.url}/portal/requests/")
            admin.click(f"text=#{rid}")
            admin.fill("#reason", "Please plan for 60 students: the second tutor group joins.")
            shot(admin, "04-unit-admin-review")
            admin.click("#do-request-changes")
            admin.wait_for_selector("#request-state")
            assert admin.inner_text("#request-state") == "Changes requested"

            # 3. The requester makes the change and submits again.
            ivan.goto(f"{fleet.url}/portal/requests/{rid}")
            assert "Please plan for 60 students" in ivan.inner_text("#reviews")
            shot(ivan, "05-changes-requested")
            ivan.click("#edit-request")
            ivan.fill("#f-expected_students", "60")
            ivan.click("#submit")
            ivan.wait_for_selector("#request-state")
            assert ivan.inner_text("#request-state") == "Submitted, awaiting review"

            # 4. The platform team approves: one commit on main with the course file.
            ops = person("opsadmin", fleet.password)
            ops.goto(f"{fleet.url}/portal/requests/{rid}")
            ops.fill("#reason", "Approved for the spring intake.")
            ops.click("#do-approve")
            ops.wait_for_selector("#request-commit")
            assert ops.locator(".error").count() == 0  # the approved request is not checked against itself
            shot(ops, "06-approved-with-commit")
            assert int(git(fleet.catalog, "rev-list", "--count", "main")) == commits_before + 1
            assert f"Hub request #{rid}" in git(fleet.catalog, "log", "-1", "--format=%s", "main")
            assert set(git(fleet.catalog, "show", "--name-only", "--format=", "main").split()) == {
                "courses/TM351.yaml", "enrolments/TM351-B.csv"}
            assert ops.inner_text("#request-commit") == git(fleet.catalog, "rev-parse", "main")[:12]
            ops.goto(f"{fleet.url}/portal/dashboard/")
            shot(ops, "07-dashboard-before-reconcile")

            # 5. The next reconcile provisions the hub.
            run = fleet.apply()
            assert run.returncode == 0, run.stdout + run.stderr
            ops.goto(f"{fleet.url}/portal/dashboard/")
            row = ops.inner_text("#hub-tm351-b")
            assert "running" in row and "TM351-B" in row
            shot(ops, "08-dashboard-after-reconcile")
            ops.goto(f"{fleet.url}/portal/requests/{rid}")
            assert ops.inner_text("#request-state") == "Open"

            # 6. A student on the uploaded roster signs in and opens it.
            student = person("newstudent", fleet.password)
            student.wait_for_selector("#course-TM351-B")
            shot(student, "09-student-your-courses")
            student.click("#course-TM351-B a.open")
            student.wait_for_url(re.compile(r"//(tm351-b\.localhost:\d+/hub/spawn-pending/newstudent|"
                                            r"newstudent\.tm351-b\.localhost:\d+/user/newstudent/lab)"),
                                 timeout=120_000)  # fmt: skip
            # Landed in the new hub with no second sign-in (as test_sso's browser test); the screenshot waits a
            # little for JupyterLab itself, which a loaded machine may take longer to start.
            try:
                student.wait_for_selector(".jp-LabShell", timeout=60_000)
            except Exception:  # noqa: BLE001 - the spawn page is a fine picture too
                pass
            shot(student, "10-student-opens-the-hub")
        finally:
            browser.close()
