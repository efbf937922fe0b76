"""The local fleet end to end, with real processes: two JupyterHubs with their proxies, the front-door proxy and
the portal, a student logging in and spawning through the front door, down/apply, a crash, a bad catalog.

The tests share one fleet (hubs take seconds to boot) and run in file order; each states what it leaves behind.
Demo mode (HUBFLEET_DEMO_MODE=1) so no system users are created; the in-hub detail (system users, seeding,
read-only) is covered by the hub side's own tests.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import browser_client, free_port, portal_sign_in, running_in as _running_in, wait_until, write_two_course_catalog

from hubfleet.backends.local import process
from hubfleet.backends.local.backend import LocalBackend, stop_fleet
from hubfleet.backends.local.members import hub_members
from hubfleet.backends.local.reconciler import Reconciler
from hubfleet.catalog import load_catalog
from hubfleet.plan import diff, plan
from hubfleet.plan.diff import Kind

AT = dt.date(2026, 11, 1)
HUBS = ("m269-2026j", "tm351-2026j")
pytestmark = pytest.mark.slow


@dataclass
class Fleet:
    catalog: Path
    state: Path
    port: int
    backend: LocalBackend

    @property
    def url(self) -> str:
        """The portal, on its own host."""
        return f"http://portal.localhost:{self.port}"

    def hub_url(self, hub: str) -> str:
        return f"http://{hub}.localhost:{self.port}/"

    def spec(self):  # noqa: ANN201
        return plan(self.backend.loaded.catalog, AT)

    def apply(self):  # noqa: ANN201
        spec = self.spec()
        return self.backend.apply(diff(spec, self.backend.observe()), spec)

    def pids(self) -> dict[str, int]:
        """Every tracked process of the fleet, by pidfile."""
        out = {}
        for pidfile in sorted(self.state.rglob("*.pid.json")):
            record = process.read_alive(pidfile)
            if record:
                out[str(pidfile.relative_to(self.state))] = record.pid
        return out

    def process_tree(self) -> list[psutil.Process]:
        procs = []
        for pid in self.pids().values():
            try:
                proc = psutil.Process(pid)
                procs += [proc, *proc.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        return procs

    def cli(self, *args: str, catalog: Path | None = None) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "hubfleet.cli.main", *args, str(catalog or self.catalog), "--state-dir", str(self.state)]
        if args[0] in ("up", "apply", "status"):
            argv += ["--port", str(self.port), "--at", AT.isoformat()]
        return subprocess.run(argv, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUBFLEET_DEMO_MODE", "1")  # the CLI subprocesses inherit it
        catalog = write_two_course_catalog(root / "catalog")
        state = root / "state"
        port = free_port()
        backend = LocalBackend(state, state / "storage", load_catalog(catalog), port=port)
        f = Fleet(catalog, state, port, backend)
        seen: list[psutil.Process] = []
        try:
            yield f
        finally:
            seen = f.process_tree() + _running_in(state)
            stop_fleet(state)
            _, alive = psutil.wait_procs(seen, timeout=30)
            assert alive == [], f"left running after down: {alive}"
            assert f.pids() == {}
            assert _running_in(state) == []


def _login(fleet: Fleet, hub: str, user: str) -> httpx.Client:
    """Sign in like a browser: once at the portal (the fleet's OpenID Connect provider), then the hub's OAuth hop."""
    browser = browser_client(fleet.hub_url(hub), timeout=60)
    password = (fleet.state / "demo-password").read_text().strip()
    signed_in = portal_sign_in(browser, user, password, portal=f"{fleet.url}/portal")
    assert signed_in.status_code == 303, signed_in.text[:500]
    home = browser.get("hub/oauth_login", params={"next": "/hub/home"}, follow_redirects=True)
    assert home.status_code == 200 and str(home.url) == fleet.hub_url(hub) + "hub/home", home.text[:500]
    return browser


def _hub_api(fleet: Fleet, hub: str) -> httpx.Client:
    token = (fleet.state / "hubs" / hub / "service_token").read_text().strip()
    return browser_client(f"{fleet.hub_url(hub)}hub/api/", headers={"Authorization": f"token {token}"}, timeout=30)


def _logs_on_failure(fleet: Fleet, hub: str, answer: httpx.Response) -> str:
    """What a failed request through the front door needs for a diagnosis: the answer and both proxies' logs."""
    tails = []
    for log in (fleet.state / "frontdoor" / "proxy.log", fleet.state / "hubs" / hub / "logs" / "proxy.log",
                fleet.state / "hubs" / hub / "logs" / "hub.log"):
        text = log.read_text(errors="replace").splitlines()[-15:] if log.is_file() else ["(missing)"]
        tails.append(f"--- {log}\n" + "\n".join(text))
    return f"{answer.status_code} {answer.text[:300]}\n" + "\n".join(tails)


def test_members_come_from_rosters_users_lists_and_team(two_course_catalog: Path) -> None:
    spec = plan(load_catalog(two_course_catalog).catalog, AT)
    loaded = load_catalog(two_course_catalog)
    assert hub_members(spec.hub("tm351-2026j"), loaded) == {
        "alice": {"TM351-2026J": "student"}, "bob": {"TM351-2026J": "student"}, "tina": {"TM351-2026J": "tutor"},
    }  # fmt: skip
    assert hub_members(spec.hub("m269-2026j"), loaded) == {"alice": {"M269-2026J": "student"}, "carol": {"M269-2026J": "student"}}


def test_apply_brings_both_hubs_up_behind_the_front_door(fleet: Fleet) -> None:
    # Through the CLI, so the hubs outlive the command that started them, as they do for an operator.
    run = fleet.cli("apply", "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    for hub in HUBS:
        assert f"+ create   {hub}" in run.stdout and f"ok create {hub}: started" in run.stdout
    assert "DEMO MODE" in run.stdout and (fleet.state / "demo-password").read_text().strip() in run.stdout
    for hub in HUBS:
        with _hub_api(fleet, hub) as api:
            assert api.get("").json()["version"].startswith("6.")
            assert api.get("user").json()["name"] == "hubfleet"  # the service token is accepted
        assert (fleet.state / "hubs" / hub / "applied.json").is_file()
        for secret in ("cookie_secret", "proxy_token", "service_token"):
            assert (fleet.state / "hubs" / hub / secret).stat().st_mode & 0o077 == 0


def test_portal_lists_both_hubs_with_branding(fleet: Fleet) -> None:
    with browser_client(fleet.url) as browser:
        page = browser.get("/")
        assert page.status_code == 200
        assert "Test University Notebooks" in page.text and "#224466" in page.text and "Demo mode" in page.text
        for hub, key in zip(HUBS, ("M269-2026J", "TM351-2026J")):
            assert f'href="{fleet.hub_url(hub)}"' in page.text and key in page.text  # each hub on its own host
        listed = browser.get("/api/fleet").json()
    assert [(h["name"], h["up"], h["presentations"][0]["phase"]) for h in listed["hubs"]] == [(h, True, "open") for h in HUBS]


def test_every_party_has_a_host_of_its_own(fleet: Fleet) -> None:
    with browser_client(timeout=30) as browser:
        # The bare name, and any host the front door does not know, lead to the portal's own host.
        bare = browser.get(f"http://localhost:{fleet.port}/portal/login?next=/portal/")
        assert bare.status_code == 307 and bare.headers["location"] == f"{fleet.url}/portal/login?next=/portal/"
        assert browser.get(f"http://nosuchhub.localhost:{fleet.port}/").headers["location"] == f"{fleet.url}/"
        # The old shared-origin paths lead nowhere near a hub.
        old = browser.get(f"{fleet.url}/hubs/tm351-2026j/hub/api/", follow_redirects=True)
        assert old.status_code == 404
        # A hub answers on its own host only, and the portal's pages are not served there.
        assert browser.get(fleet.hub_url("tm351-2026j") + "hub/api/").json()["version"].startswith("6.")
        not_portal = browser.get(fleet.hub_url("tm351-2026j") + "portal/login", follow_redirects=True)
        assert not_portal.status_code == 404 and not_portal.url.host == "tm351-2026j.localhost"
        # Clients that cannot resolve *.localhost connect to 127.0.0.1 and name the host (README, "Hosts").
        by_header = browser.get(f"http://127.0.0.1:{fleet.port}/", headers={"Host": f"portal.localhost:{fleet.port}"})
        assert by_header.status_code == 200 and "Test University Notebooks" in by_header.text


def test_student_logs_in_and_spawns_through_the_front_door(fleet: Fleet) -> None:
    browser = _login(fleet, "tm351-2026j", "alice")
    spawn = browser.get("hub/spawn", follow_redirects=True)
    assert spawn.status_code == 200
    with _hub_api(fleet, "tm351-2026j") as api:
        wait_until(lambda: (api.get("users/alice").json()["servers"].get("") or {}).get("ready"))
        server = api.get("users/alice").json()["servers"][""]
    # Her server is on a host of its own, below the hub's (JupyterHub's user subdomains).
    mine = f"http://alice.tm351-2026j.localhost:{fleet.port}/user/alice/"
    assert server["full_url"] == mine
    lab = browser.get(mine + "lab", follow_redirects=True)
    assert lab.status_code == 200 and "JupyterLab" in lab.text and str(lab.url).startswith(mine)
    # Save a file as the student would (contents API; the server's _xsrf cookie guards cookie-authenticated writes).
    xsrf = browser.cookies.get("_xsrf", domain="alice.tm351-2026j.localhost", path="/user/alice/")
    saved = browser.put(
        mine + "api/contents/TM351-2026J/my-notes.txt",
        json={"type": "file", "format": "text", "content": "week 1: normal forms"},
        headers={"X-XSRFToken": xsrf},
    )
    assert saved.status_code == 201, saved.text
    assert (fleet.state / "storage" / "home" / "alice" / "TM351-2026J" / "README.md").is_file()  # seeded
    # An unenrolled user has the right password but is turned away by this hub.
    with pytest.raises(AssertionError):
        _login(fleet, "tm351-2026j", "carol")


def test_down_then_apply_keeps_student_files_and_secrets(fleet: Fleet) -> None:
    secrets = {p: p.read_bytes() for hub in HUBS for p in (fleet.state / "hubs" / hub).iterdir()
               if p.name in ("cookie_secret", "proxy_token", "service_token")}  # fmt: skip
    secrets[fleet.state / "demo-password"] = (fleet.state / "demo-password").read_bytes()
    before = fleet.process_tree() + _running_in(fleet.state)
    assert any("singleuser" in " ".join(p.cmdline()) for p in before)  # alice's server is among them
    assert fleet.cli("down").returncode == 0
    _, alive = psutil.wait_procs(before, timeout=30)
    assert alive == [] and fleet.pids() == {}
    assert [a.kind for a in diff(fleet.spec(), fleet.backend.observe()).actions] == [Kind.start, Kind.start]

    report = fleet.apply()
    assert report.ok, [r.message for r in report.failures]
    assert {p: p.read_bytes() for p in secrets} == secrets
    notes = fleet.state / "storage" / "home" / "alice" / "TM351-2026J" / "my-notes.txt"
    assert notes.read_text() == "week 1: normal forms"
    browser = _login(fleet, "tm351-2026j", "alice")  # same cookie secret, same demo password
    assert browser.get("hub/home").status_code == 200


def test_killed_hub_is_restarted_by_a_reconcile_step(fleet: Fleet) -> None:
    hub_pidfile = fleet.state / "hubs" / "tm351-2026j" / "hub.pid.json"
    old = process.read_alive(hub_pidfile)
    orphans = [p for p in psutil.Process(old.pid).children(recursive=True) if "idle_culler" in " ".join(p.cmdline())]
    os.kill(old.pid, signal.SIGKILL)
    psutil.wait_procs([psutil.Process(old.pid)], timeout=10)
    loop = Reconciler(fleet.catalog, fleet.backend, at=AT)
    report = loop.step()
    # What the dead hub left in its process group (its idle culler) is cleaned up, not leaked.
    assert orphans and not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in orphans)
    assert [(r.action.kind, r.action.hub, r.ok) for r in report.results] == [(Kind.start, "tm351-2026j", True)]
    new = process.read_alive(hub_pidfile)
    assert new is not None and new.pid != old.pid
    with _hub_api(fleet, "tm351-2026j") as api:
        # Through the front door. Once in CI (not reproduced in 110 kill-and-restart rounds under load) the first
        # request here got a 503 from a proxy; a short bounded wait, and the proxies' logs if it never answers.
        deadline = time.monotonic() + 15
        while (answer := api.get("user")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert answer.status_code == 200, _logs_on_failure(fleet, "tm351-2026j", answer)
    assert loop.step().results == []  # and then nothing more to do


def test_second_apply_is_a_no_op(fleet: Fleet) -> None:
    pids = fleet.pids()
    applied = {h: (fleet.state / "hubs" / h / "applied.json").stat().st_mtime_ns for h in HUBS}
    assert not diff(fleet.spec(), fleet.backend.observe())
    run = fleet.cli("apply", "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "No changes" in run.stdout
    assert fleet.pids() == pids
    assert {h: (fleet.state / "hubs" / h / "applied.json").stat().st_mtime_ns for h in HUBS} == applied


def test_bad_catalog_given_to_up_exits_2_and_leaves_the_fleet_alone(fleet: Fleet, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(fleet.catalog, bad)
    text = (bad / "courses" / "M269.yaml").read_text().replace("end: 2027-06-01", "end: 2026-01-01\n    colour: red")
    (bad / "courses" / "M269.yaml").write_text(text)
    pids = fleet.pids()
    run = fleet.cli("up", catalog=bad)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "M269.yaml" in run.stderr and "nothing was changed" in run.stderr
    assert fleet.pids() == pids


def test_apply_refuses_without_yes_when_not_interactive(fleet: Fleet) -> None:
    (fleet.catalog / "courses" / "M269.yaml").write_text(
        (fleet.catalog / "courses" / "M269.yaml").read_text().replace("Algorithms,", "Algorithms (new title),")
    )
    pids = fleet.pids()
    run = fleet.cli("apply")
    assert run.returncode == 1 and "Pass --yes" in run.stderr
    assert "~ update   m269-2026j" in run.stdout
    assert fleet.pids() == pids

