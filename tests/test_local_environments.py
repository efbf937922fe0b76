"""Per-profile environments on the local backend (issue 14, item 4), with real processes and real pip installs.

One fleet (as root: real student accounts and the bubblewrap sandbox; otherwise demo mode), one presentation with two profiles: `tabulate` (a requirements list) and `toolz` (a
requirements file in the catalog). Alice starts each profile in turn; the kernel her server starts runs on the
profile's environment, which has its own package and not the other profile's. Then the `tabulate` profile's spec changes
while her server runs: the apply builds a new environment beside the old one and her running kernel keeps working.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from conftest import browser_client, free_port, portal_sign_in, running_in, wait_until

from hubfleet.backends.local.backend import LocalBackend, stop_fleet
from hubfleet.catalog import load_catalog, naming
from hubfleet.plan import plan

AT = dt.date(2026, 11, 1)
ROOT = os.geteuid() == 0
HUB = "m269-2026j"
pytestmark = pytest.mark.slow

COURSE = """\
code: M269
title: Algorithms
presentations:
  - id: 2026J
    start: 2026-10-10
    end: 2027-06-01
    enrolment: [{users: [alice]}]
    images:
      - name: tabulate
        image: example/tabulate:1
        local_environment: {requirements: [TABULATE]}
      - name: toolz
        image: example/toolz:1
        local_environment: {requirements_file: ../reqs/toolz.txt}
      - name: plain
        image: example/plain:1
"""
BROKEN = """\
code: TM112
title: Introduction to computing
presentations:
  - id: 2026J
    start: 2026-10-10
    end: 2027-06-01
    enrolment: [{users: [alice]}]
    images:
      - name: broken
        image: example/broken:1
        local_environment: {requirements: [hubfleet-no-such-package-zz==9.9]}
"""


@dataclass
class Fleet:
    catalog: Path
    state: Path
    backend: LocalBackend
    first: object = None  # the first apply's report

    def apply(self):  # noqa: ANN201
        """Apply the catalog; the TM112 hub, whose one profile cannot be built, is the only failure."""
        self.backend.loaded = load_catalog(self.catalog)
        spec = plan(self.backend.loaded.catalog, AT)
        report = self.backend.apply(self.backend.plan(spec, self.backend.observe()), spec)  # as `hubfleet apply`
        assert {r.action.hub for r in report.failures} == {"tm112-2026j"}, [r.message for r in report.failures]
        return report

    def url(self, path: str = "") -> str:
        return f"http://{HUB}.localhost:{self.backend.port}/{path}"


def _write_course(catalog: Path, tabulate: str) -> None:
    (catalog / "courses" / "M269.yaml").write_text(COURSE.replace("TABULATE", tabulate))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("envs")
    catalog = root / "catalog"
    (catalog / "courses").mkdir(parents=True)
    (catalog / "reqs").mkdir()
    (catalog / "reqs" / "toolz.txt").write_text("# the toolz profile\ntoolz==1.0.0  # pinned\n")
    (catalog / "fleet.yaml").write_text("fleet:\n  name: env-university\n")
    _write_course(catalog, "tabulate==0.9.0")
    (catalog / "courses" / "TM112.yaml").write_text(BROKEN)
    with pytest.MonkeyPatch.context() as mp:
        if not ROOT:
            mp.setenv("HUBFLEET_DEMO_MODE", "1")
        state = root / "state"
        f = Fleet(catalog, state, LocalBackend(state, state / "storage", load_catalog(catalog), port=free_port(),
                                               demo_mode=not ROOT))  # fmt: skip
        try:
            f.first = f.apply()
            yield f
        finally:
            seen = running_in(state)
            stop_fleet(state)
            _, alive = psutil.wait_procs(seen, timeout=30)
            if ROOT:
                subprocess.run(["userdel", naming.unix_account(naming.account_prefix("env-university"), "alice")],
                               capture_output=True)  # fmt: skip
            assert alive == [], f"left running after down: {alive}"


def _start(fleet: Fleet, browser, profile: str) -> psutil.Process:
    """Start alice's server with ``profile`` (the spawn form's POST) and a kernel in it; return the kernel process."""
    token = (fleet.state / "hubs" / HUB / "service_token").read_text().strip()
    with browser_client(fleet.url("hub/api/"), headers={"Authorization": f"token {token}"}, timeout=30) as api:
        xsrf = browser.cookies.get("_xsrf", path="/hub/")
        started = browser.post("hub/spawn", data={"profile": profile, "_xsrf": xsrf})
        assert started.status_code == 302, started.text[:500]
        wait_until(lambda: (api.get("users/alice").json()["servers"].get("") or {}).get("ready"), what="spawn")
        mine = api.get("users/alice").json()["servers"][""]["full_url"]
    assert browser.get(mine + "lab", follow_redirects=True).status_code == 200
    xsrf = browser.cookies.get("_xsrf", domain=f"alice.{HUB}.localhost", path="/user/alice/")
    opened = browser.post(mine + "api/kernels", json={"name": "python3"}, headers={"X-XSRFToken": xsrf})
    assert opened.status_code == 201, opened.text
    kid = opened.json()["id"]

    def kernel() -> psutil.Process | None:
        return next((p for p in psutil.process_iter(["cmdline"]) if any(kid in a for a in p.info["cmdline"] or [])), None)

    wait_until(kernel, what="the kernel process")
    return kernel()


def _stop(fleet: Fleet) -> None:
    token = (fleet.state / "hubs" / HUB / "service_token").read_text().strip()
    with browser_client(fleet.url("hub/api/"), headers={"Authorization": f"token {token}"}, timeout=30) as api:
        assert api.delete("users/alice/server").status_code in (202, 204)
        wait_until(lambda: api.get("users/alice").json()["servers"] == {}, what="server stopped")


def _imports(python: str, module: str) -> bool:
    return subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def browser(fleet: Fleet) -> Iterator:
    with browser_client(fleet.url(), timeout=60) as b:
        if ROOT:
            lines = (fleet.state / "passwords.txt").read_text().splitlines()
            password = next(line.split(" ", 1)[1].strip() for line in lines if line.startswith("alice "))
        else:
            password = (fleet.state / "demo-password").read_text().strip()
        signed_in = portal_sign_in(b, "alice", password, portal=f"http://portal.localhost:{fleet.backend.port}/portal")
        assert signed_in.status_code == 303
        assert b.get("hub/home", follow_redirects=True).status_code == 200
        yield b


def test_each_profile_runs_on_its_own_environment(fleet: Fleet, browser) -> None:
    envs = fleet.state / "envs"
    for profile, mine, other in (("tabulate", "tabulate", "toolz"), ("toolz", "toolz", "tabulate")):
        kernel = _start(fleet, browser, profile)
        python = kernel.cmdline()[0]
        assert Path(python).parent.parent.parent == envs, python  # the kernel's interpreter is a built environment
        assert _imports(python, mine) and not _imports(python, other), (profile, python)
        assert _imports(python, "jupyterlab")  # the server's software comes from hubfleet's own venv
        if ROOT:
            # Inside the student's sandbox the environment is there, read-only (a mount of its own).
            mounts = {line.split()[4]: line.split()[5] for line in Path(f"/proc/{kernel.pid}/mountinfo").read_text().splitlines()}
            env_dir = str(Path(python).parent.parent)
            assert env_dir in mounts and "ro" in mounts[env_dir].split(","), mounts.get(env_dir)
            assert kernel.uids().real != 0
        _stop(fleet)
    # The default interpreter has neither: each package came with its profile.
    assert not _imports(sys.executable, "tabulate") and not _imports(sys.executable, "toolz")


def test_a_changed_spec_builds_a_new_environment_and_running_servers_keep_theirs(fleet: Fleet, browser) -> None:
    kernel = _start(fleet, browser, "tabulate")
    old_python = kernel.cmdline()[0]
    _write_course(fleet.catalog, "tabulate==0.8.10")
    fleet.apply()
    assert kernel.is_running() and Path(old_python).exists()  # not rebuilt in place under the running kernel
    assert _imports(old_python, "tabulate")
    out = subprocess.run([old_python, "-c", "import tabulate; print(tabulate.__version__)"], capture_output=True, text=True)
    assert out.stdout.strip() == "0.9.0"
    _stop(fleet)
    new_kernel = _start(fleet, browser, "tabulate")
    new_python = new_kernel.cmdline()[0]
    assert new_python != old_python
    out = subprocess.run([new_python, "-c", "import tabulate; print(tabulate.__version__)"], capture_output=True, text=True)
    assert out.stdout.strip() == "0.8.10"
    _stop(fleet)
    # The old environment stayed while a kernel ran from it (the apply above); now no hub records it and nothing
    # runs from it, so the next apply removes it (disk: every edit of a spec would otherwise leave a venv behind).
    fleet.apply()
    assert not Path(old_python).parent.parent.exists() and Path(new_python).exists()



def test_an_edited_requirements_file_is_planned_and_built(fleet: Fleet) -> None:
    # Only the file changes (the course file is the same): the backend's plan still sees it.
    (fleet.catalog / "reqs" / "toolz.txt").write_text("toolz==0.12.1\n")
    fleet.backend.loaded = load_catalog(fleet.catalog)
    spec = plan(fleet.backend.loaded.catalog, AT)
    update = [a for a in fleet.backend.plan(spec, fleet.backend.observe()).actions if a.hub == HUB]
    assert [a.kind.value for a in update] == ["update"], update
    assert [c.field for c in update[0].changes] == ["profiles[toolz].environment (reqs/toolz.txt)"]
    fleet.apply()
    hub_json = json.loads((fleet.state / "hubs" / HUB / "hub.json").read_text())
    out = subprocess.run([hub_json["environments"]["toolz"], "-c", "import toolz; print(toolz.__version__)"],
                         capture_output=True, text=True)  # fmt: skip
    assert out.stdout.strip() == "0.12.1"
    again = fleet.backend.plan(spec, fleet.backend.observe()).actions
    assert [a for a in again if a.hub == HUB] == []  # built: nothing more to do


def test_a_failed_build_fails_its_hub_only_and_says_why(fleet: Fleet) -> None:
    failure = next(r for r in fleet.first.failures if r.action.hub == "tm112-2026j")
    assert "profile broken: building its environment failed" in failure.message
    assert "hubfleet-no-such-package-zz" in failure.message  # pip's own words, from the log's tail
    assert not (fleet.state / "hubs" / "tm112-2026j" / "applied.json").exists()  # planned again next time
    assert (fleet.state / "hubs" / HUB / "applied.json").exists()  # the other hub came up


def test_plan_and_portal_say_which_profiles_run_on_the_default_environment(fleet: Fleet, browser) -> None:
    out = subprocess.run([str(Path(sys.executable).parent / "hubfleet"), "plan", str(fleet.catalog), "--at",
                          AT.isoformat(), "--state-dir", str(fleet.state)], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "300"})  # fmt: skip
    rows = {line.split("│")[2].strip(): line for line in out.stdout.splitlines() if line.count("│") >= 4}
    assert "the default environment" in rows["plain"] and "example/plain:1 is not used" in rows["plain"]
    assert "its own environment: 1 Python package(s)" in rows["tabulate"]
    assert "the default environment" not in rows["toolz"]
    page = browser.get(f"http://portal.localhost:{fleet.backend.port}/portal/").text
    assert 'data-profile="Algorithms (plain)">Algorithms (plain) runs on the default environment' in page.replace("\n", ""), page


def test_a_requirements_file_cannot_smuggle_in_pip_options(tmp_path: Path) -> None:
    # A requirements file is read by hubfleet, not handed to pip: `-r /etc/...` or another index never reach pip.
    from hubfleet.backends.local.environments import BuildFailed, resolve
    from hubfleet.plan.spec import EnvironmentSpec

    (tmp_path / "reqs.txt").write_text("# course packages\ntoolz==1.0.0\n-r /etc/shadow\n")
    with pytest.raises(BuildFailed, match=r"reqs.txt:3:1: .*pip options such as -r"):
        resolve(EnvironmentSpec(requirements_file="reqs.txt"), lambda rel: tmp_path / rel)
    (tmp_path / "reqs.txt").write_text("toolz==1.0.0  # pinned\n\n")
    assert resolve(EnvironmentSpec(requirements=("tabulate",), requirements_file="reqs.txt"),
                   lambda rel: tmp_path / rel).requirements == ("tabulate", "toolz==1.0.0")
