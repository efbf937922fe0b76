"""Hibernation on the local backend, with real processes: a hub idle for its `hibernate_after` stops (hub, proxy,
culler gone), the first request for it wakes it through the portal's waker and lands on the page asked for, a POST
sent while it sleeps is refused rather than replayed, and a hub with a running server never sleeps.

One small fleet (one hub, `hibernate_after: 2` seconds) shared by the tests, in file order. Demo mode, so no system
users are created.
"""

from __future__ import annotations

import datetime as dt
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import browser_client, free_port, portal_sign_in, running_in, wait_until

from hubfleet.backends.local import process
from hubfleet.backends.local.backend import LocalBackend, stop_fleet
from hubfleet.backends.local.reconciler import Reconciler
from hubfleet.catalog import load_catalog
from hubfleet.plan import diff, plan

AT = dt.date(2026, 11, 1)
QUIET = dt.datetime(2026, 11, 2, 3, 0)  # a Monday night
# Wednesday 10:00 is M269's weekly session; warming starts node_ready_time + wake_time (5 + 1 min) before it and
# lasts until the arrival window (10 min) after it.
WARM = dt.datetime(2026, 11, 4, 9, 55)
HUB = "m269-2026j"
pytestmark = pytest.mark.slow


@dataclass
class Fleet:
    catalog: Path
    state: Path
    port: int
    backend: LocalBackend
    loop: Reconciler

    @property
    def hub_dir(self) -> Path:
        return self.state / "hubs" / HUB

    def url(self, path: str = "") -> str:
        return f"http://{HUB}.localhost:{self.port}/{path}"

    def asleep(self) -> bool:
        return (self.hub_dir / "hibernated.json").exists()

    def hub_processes(self) -> list[psutil.Process]:
        """The hub's own processes: JupyterHub, its proxy and its services (the idle culler), by their cwd."""
        return [p for p in running_in(self.state) if p.cwd() == str(self.hub_dir)]

    def token(self) -> str:
        return (self.hub_dir / "service_token").read_text().strip()

    def api(self) -> httpx.Client:
        """The hub's API through the front door, as hubfleet's service."""
        return browser_client(self.url("hub/api/"), headers={"Authorization": f"token {self.token()}"}, timeout=30)

    def step_until_asleep(self) -> None:
        wait_until(lambda: self.loop.step().errors == [] and self.asleep(), what="the hub to hibernate", every=0.3)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("hibernation")
    catalog = root / "catalog"
    (catalog / "courses").mkdir(parents=True)
    (catalog / "fleet.yaml").write_text(textwrap.dedent("""\
        fleet:
          name: sleepy-university
          defaults: {hibernate_after: 2}
        """))
    (catalog / "courses" / "M269.yaml").write_text(textwrap.dedent("""\
        code: M269
        title: Algorithms, data structures and computability
        presentations:
          - id: 2026J
            start: 2026-10-10
            end: 2027-06-01
            enrolment: [{users: [carol, alice]}]
            timetable: {weekly: [{weekday: wed, start: "10:00", duration: 1h}]}
        """))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUBFLEET_DEMO_MODE", "1")
        state = root / "state"
        backend = LocalBackend(state, state / "storage", load_catalog(catalog), port=free_port())
        backend.wall_clock = lambda: QUIET  # no session near: the timetable keeps nothing awake
        f = Fleet(catalog, state, backend.port, backend, Reconciler(catalog, backend, AT))
        try:
            spec = plan(backend.loaded.catalog, AT)
            report = backend.apply(diff(spec, backend.observe()), spec)
            assert report.ok, [r.message for r in report.failures]
            yield f
        finally:
            seen = running_in(state)
            stop_fleet(state)
            _, alive = psutil.wait_procs(seen, timeout=30)
            assert alive == [], f"left running after down: {alive}"


def scrape(fleet: Fleet) -> dict[tuple, float]:
    """The portal's /metrics, parsed with Prometheus' own text parser: {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    from hubfleet.web.metrics import metrics_token

    with browser_client(timeout=30) as client:
        url = f"http://portal.localhost:{fleet.port}/metrics"
        assert client.get(url).status_code == 401  # the fleet's shape is not public
        resp = client.get(url, headers={"Authorization": f"Bearer {metrics_token(fleet.state)}"})
    assert resp.status_code == 200, resp.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def hubs(metrics: dict, state: str) -> float:
    return metrics[("hubfleet_hubs", (("phase", "open"), ("state", state)))]


def wakes(metrics: dict, reason: str) -> float:
    return metrics[("hubfleet_wakes_total", (("outcome", "ok"), ("reason", reason)))]


def _waker_page(resp: httpx.Response) -> bool:
    return 'id="waker-heading"' in resp.text


def test_an_idle_hub_hibernates_and_its_processes_are_gone(fleet: Fleet) -> None:
    before = fleet.hub_processes()
    names = {" ".join(p.cmdline()) for p in before}
    assert any("jupyterhub" in n and "-f" in n for n in names) and any("configurable-http-proxy" in n for n in names)
    assert any("jupyterhub_idle_culler" in n for n in names), names  # the culler is one of the hub's processes
    awake = scrape(fleet)
    assert (hubs(awake, "running"), hubs(awake, "hibernated")) == (1, 0)
    fleet.step_until_asleep()
    asleep = scrape(fleet)
    assert (hubs(asleep, "running"), hubs(asleep, "hibernated")) == (0, 1)
    assert asleep[("hubfleet_hibernations_total", ())] == awake[("hubfleet_hibernations_total", ())] + 1
    _, alive = psutil.wait_procs(before, timeout=30)
    assert alive == [] and fleet.hub_processes() == []
    assert process.read_alive(fleet.hub_dir / "hub.pid.json") is None
    spec = plan(fleet.backend.loaded.catalog, AT)
    # Not down: nothing plans a start, further steps leave it asleep, status says hibernated.
    assert diff(spec, fleet.backend.observe()).actions == ()
    assert fleet.loop.step().results == [] and fleet.asleep() and fleet.hub_processes() == []
    [row] = fleet.backend.status(spec)
    assert (row.up, row.hibernated) == (False, True)


def test_a_request_wakes_it_and_lands_on_the_page_asked_for(fleet: Fleet) -> None:
    asked = fleet.url("hub/login?next=%2Fhub%2Fhome")
    seen = []
    before = scrape(fleet)
    with browser_client(timeout=30) as browser:
        first = browser.get(asked)
        assert first.status_code == 200 and _waker_page(first)
        assert "Starting Algorithms, data structures and computability" in first.text
        assert '<meta http-equiv="refresh" content="1">' in first.text  # follows readiness without JavaScript
        # With JavaScript it looks sooner: a HEAD of the same URL, answered with x-hubfleet-waking while it starts.
        assert first.headers["x-hubfleet-waking"] == "1" and 'method: "HEAD"' in first.text

        def reload() -> bool:  # what the page's meta refresh does: the same URL again
            resp = browser.get(asked)
            seen.append(resp.status_code)
            return not _waker_page(resp)

        wait_until(reload, what="the hub to wake", every=0.5)
        landed = browser.get(asked)
    assert all(code == 200 for code in seen[:-1]), seen  # no error while waking
    # JupyterHub itself answered the very URL asked, query included: its login hands on to the sign-in with `next`.
    assert landed.headers.get("x-jupyterhub-version") and str(landed.url) == asked
    assert (landed.status_code, landed.headers["location"]) == (302, "/hub/oauth_login?next=%2Fhub%2Fhome")
    assert "x-hubfleet-waking" not in landed.headers  # what makes the page's script reload
    assert not fleet.asleep() and len(fleet.hub_processes()) >= 3
    after = scrape(fleet)
    assert wakes(after, "request") == wakes(before, "request") + 1 and wakes(after, "timetable") == 0
    count = ("hubfleet_wake_duration_seconds_count", ())
    assert after[count] == before[count] + 1 and after[("hubfleet_wake_duration_seconds_sum", ())] > 0


def test_in_a_real_browser_the_waking_page_lands_on_the_hub(fleet: Fleet) -> None:
    """Chromium, JavaScript on: the page's script (or, failing it, its meta refresh) takes the person on to the
    very URL they asked for once the hub answers, with no click."""
    from playwright.sync_api import sync_playwright

    fleet.step_until_asleep()
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"]  # fmt: skip
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        try:
            page = browser.new_page()
            page.goto(fleet.url("hub/api/?asked=1"))  # *.localhost is loopback to Chromium
            assert page.inner_text("#waker-heading").startswith("Starting ")
            # JupyterHub's own answer to that URL: its API's version document, shown as text.
            page.wait_for_function("() => document.body.innerText.includes('\"version\"')", timeout=120_000)
            assert page.url == fleet.url("hub/api/?asked=1") and page.locator("#waker-heading").count() == 0
        finally:
            browser.close()
    assert not fleet.asleep()


def test_a_post_while_it_sleeps_is_refused_not_replayed(fleet: Fleet) -> None:
    fleet.step_until_asleep()
    with fleet.api() as api:
        sent = api.post("users", json={"usernames": ["posted-while-asleep"]})
        assert sent.status_code == 503 and "NOT received" in sent.text and sent.headers["retry-after"]
        wait_until(lambda: not _waker_page(api.get("users/carol")), what="the hub to wake after the POST", every=0.5)
        assert api.get("users/posted-while-asleep").status_code == 404  # the POST was never replayed
        assert api.get("users/carol").json()["name"] == "carol"


def test_a_websocket_never_goes_through_the_waker(fleet: Fleet) -> None:
    fleet.step_until_asleep()
    with browser_client(timeout=30) as browser:
        upgrade = browser.get(fleet.url("user/alice/api/kernels/x/channels"), headers={
            "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})  # fmt: skip
    assert upgrade.status_code == 403 and not _waker_page(upgrade)
    assert fleet.asleep() and fleet.hub_processes() == []  # and it woke nothing


def test_a_hub_with_a_running_server_and_open_kernel_never_hibernates(fleet: Fleet) -> None:
    with browser_client(fleet.url(), timeout=60) as browser:
        wait_until(lambda: not _waker_page(browser.get("hub/api/")), what="wake", every=0.5)
        # Alice signs in (portal, then the hub's OAuth hop) and starts her server, as in a browser.
        password = (fleet.state / "demo-password").read_text().strip()
        signed_in = portal_sign_in(browser, "alice", password, portal=f"http://portal.localhost:{fleet.port}/portal")
        assert signed_in.status_code == 303
        assert browser.get("hub/spawn", follow_redirects=True).status_code == 200
        with fleet.api() as api:
            wait_until(lambda: (api.get("users/alice").json()["servers"].get("") or {}).get("ready"), what="spawn")
            mine = api.get("users/alice").json()["servers"][""]["full_url"]
        assert browser.get(mine + "lab", follow_redirects=True).status_code == 200
        xsrf = browser.cookies.get("_xsrf", domain=f"alice.{HUB}.localhost", path="/user/alice/")
        opened = browser.post(mine + "api/kernels", json={"name": "python3"}, headers={"X-XSRFToken": xsrf})
        assert opened.status_code == 201, opened.text  # an open kernel, idle from here on
    # Step as `up` does, for at least four times its hibernate_after and at least 6 steps (each one asks the hub).
    steps, deadline = 0, time.monotonic() + 8
    while steps < 6 or time.monotonic() < deadline:
        assert fleet.loop.step().errors == []
        steps += 1
        time.sleep(0.3)
    assert not fleet.asleep()
    labels = (("course", "M269"), ("hub", HUB), ("presentation", "M269-2026J"))
    during = scrape(fleet)  # from the hub's own /hub/metrics
    assert during[("hubfleet_hub_running_servers", labels)] == 1
    assert during[("hubfleet_hub_active_users", labels)] >= 1
    with fleet.api() as api:
        assert api.get("users/alice").json()["servers"][""]["ready"]  # her server and kernel are still there
        assert api.delete("users/alice/server").status_code in (202, 204)
        wait_until(lambda: api.get("users/alice").json()["servers"] == {}, what="server stopped")
    fleet.step_until_asleep()  # once her server is stopped, the hub does sleep
    assert scrape(fleet)[("hubfleet_hub_running_servers", labels)] == 0


def test_the_timetable_wakes_the_hub_before_a_session_and_keeps_it_awake_through_the_arrivals(fleet: Fleet) -> None:
    from hubfleet.backends.local.hibernation import journal

    fleet.step_until_asleep()
    before = wakes(scrape(fleet), "timetable")
    fleet.backend.wall_clock = lambda: WARM
    try:
        report = fleet.loop.step()
        assert report.errors == [] and not fleet.asleep() and len(fleet.hub_processes()) >= 3
        assert any("woken for wed 10:00 at 10:00 (timetable)" in n for n in report.notes), report.notes
        assert journal(fleet.backend.paths)[-1] | {"at": None, "seconds": None} == {
            "at": None, "event": "wake", "hub": HUB, "ok": True, "reason": "timetable", "seconds": None}
        assert wakes(scrape(fleet), "timetable") == before + 1
        # Idle, no server, far past its 2 s: still awake while students arrive.
        steps, deadline = 0, time.monotonic() + 6
        while steps < 6 or time.monotonic() < deadline:
            steps += 1
            assert fleet.loop.step().errors == []
            time.sleep(0.3)
        assert not fleet.asleep()
        fleet.backend.wall_clock = lambda: WARM + dt.timedelta(minutes=16)  # 10:11, the arrival window is over
        fleet.step_until_asleep()
    finally:
        fleet.backend.wall_clock = lambda: QUIET
