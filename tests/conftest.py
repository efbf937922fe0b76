"""Shared test setup: tests import their fixtures from the modules beside them (hub_fixture, ldap_server).

Also: free ports, a small two-course catalog on disk for the real-process fleet tests, ``portal_sign_in``, the
one way tests sign in at the portal's form, and ``browser_client``, an httpx client that reaches the fleet's
``*.localhost`` hosts (portal, hubs, students' servers) the way a browser does.
"""

from __future__ import annotations

import re
import socket
import sys
import textwrap
from pathlib import Path
from collections import Counter
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LoopbackTransport(httpx.HTTPTransport):
    """Connect to 127.0.0.1 for any ``localhost`` or ``*.localhost`` URL, keeping the URL (so the Host header, cookie
    domains and redirects are the browser's). Browsers resolve ``*.localhost`` to the loopback themselves (RFC 6761
    §6.3); glibc without systemd's nss-myhostname does not, so Python clients need this, as ``curl --resolve`` does.
    Its TLS context is the process's one (hubfleet.hubapi.tls): tests make many of these, some per poll."""

    def __init__(self, **kw: Any) -> None:
        from hubfleet.hubapi.tls import tls_context

        super().__init__(**{"verify": tls_context(), **kw})

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host == "localhost" or host.endswith(".localhost"):
            request = httpx.Request(request.method, request.url.copy_with(host="127.0.0.1"), headers=request.headers,
                                    stream=request.stream, extensions=request.extensions)  # fmt: skip
        return super().handle_request(request)


def browser_client(base_url: str = "", **kw: Any) -> httpx.Client:
    """An httpx client for the fleet's hosts (``http://portal.localhost:PORT``, ``http://HUB.localhost:PORT``...);
    the Host header it sends is the URL's, so the front door routes it as it would a browser's request."""
    return httpx.Client(base_url=base_url, transport=LoopbackTransport(), **kw)


_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def portal_sign_in(client: httpx.Client, username: str, password: str, *, portal: str = "/portal",
                   next: str | None = None, **kw: Any) -> httpx.Response:  # noqa: A002 - the form field's name
    """Sign in at the portal like a browser: GET the form (which sets the CSRF cookie and carries the token), then
    POST it with the token. ``portal`` is the portal's URL or path; ``kw`` goes to the POST (e.g.
    ``follow_redirects``). Returns the POST's response: 303 on success (or the page it leads to when followed)."""
    page = client.get(f"{portal}/login", params={"next": next} if next else None)
    found = _CSRF_INPUT.search(page.text)
    assert found, f"no csrf_token on the portal's sign-in page ({page.status_code}): {page.text[:300]}"
    data = {"username": username, "password": password, "csrf_token": found.group(1)} | ({"next": next} if next else {})
    return client.post(f"{portal}/login", data=data, **kw)


def write_m269(root: Path) -> None:
    """M269: a static users list (carol, alice), open on 2026-11-01; shared by the fleet catalogs of the tests."""
    (root / "courses" / "M269.yaml").write_text(textwrap.dedent("""\
        code: M269
        title: Algorithms, data structures and computability
        presentations:
          - id: 2026J
            start: 2026-10-10
            end: 2027-06-01
            enrolment: [{users: [carol, alice]}]
        """))


def write_two_course_catalog(root: Path) -> Path:
    """TM351 (CSV roster, seeded with material) and M269 (a static users list); both open on 2026-11-01."""
    (root / "courses").mkdir(parents=True)
    (root / "material" / "TM351").mkdir(parents=True)
    (root / "material" / "TM351" / "README.md").write_text("# Welcome to TM351\n")
    (root / "enrolments").mkdir()
    (root / "enrolments" / "TM351-2026J.csv").write_text("username,role\nalice,student\nbob,student\n")
    (root / "fleet.yaml").write_text(textwrap.dedent("""\
        fleet:
          name: test-university
          topology: per-presentation
          platform_team: [opsadmin]
          branding: {name: Test University Notebooks, primary_color: "#224466", login_message: Use your test login.}
        """))
    (root / "courses" / "TM351.yaml").write_text(textwrap.dedent("""\
        code: TM351
        title: Data management and analysis
        seed: [{source: ../material/TM351}]
        team: {tutors: [tina]}
        presentations:
          - id: 2026J
            start: 2026-10-03
            end: 2027-06-10
            enrolment: [{csv: ../enrolments/TM351-2026J.csv}]
        """))
    write_m269(root)
    return root


@pytest.fixture
def two_course_catalog(tmp_path: Path) -> Path:
    return write_two_course_catalog(tmp_path / "catalog")


def running_in(state: Path) -> list:
    """Any live process working inside a fleet's state dir: hubs, proxies, cullers, students' servers (cwd in
    their course folder under <state>/storage), orphans of a crashed hub. Other suites' hubs are not counted."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if proc.cwd().startswith(str(state)) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            pass
    return found


def front_door_only(state: Path):  # noqa: ANN201 - a generator of FrontDoor (imported lazily)
    """A running front door (proxy + portal, no hubs) on ``state``, stopped afterwards: for a module fixture."""
    from hubfleet.backends.local.fleetstate import FleetPaths
    from hubfleet.backends.local.frontdoor import FrontDoor
    from hubfleet.backends.local.proxy import find_chp

    front = FrontDoor(FleetPaths(state), free_port(), find_chp())
    try:
        front.ensure_running()
        yield front
    finally:
        front.stop()


def wait_until(check, timeout: float = 120.0, what: str = "condition", every: float = 0.1) -> None:  # noqa: ANN001
    """Wait for a condition; a bound on waiting (generous: CI machines are loaded), not an assertion on speed."""
    import time

    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:g}s")
        time.sleep(every)


# -- running files in parallel (pytest-xdist, `make test` uses --dist loadfile) ----------------------------------
# Each file stays on one worker, so its module-scoped fixtures (real hubs, fleets) are built once. Files that make
# and delete real system accounts (root mode) run in parallel too: each names a fleet (or account prefix) of its
# own, so one file's teardown `userdel` never pulls an account from under another, and useradd itself is
# serialised machine-wide by the backend's lock (`workspace.ACCOUNT_LOCK_FILE`).


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Hand out the longest files first. ``--dist loadfile`` gives workers whole files in collection order, and
    alphabetically the chart tier (``tests/z2jh``, minutes per file) came last: the suite then ended with one or two
    workers still on it while the rest sat idle. First the chart tier, then files that start real hubs (``slow``),
    then the rest, and within each the files with more tests first; a file's own tests keep their order (module
    fixtures and calendar walks rely on it)."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    count = Counter(item.path for item in items)

    def rank(item: pytest.Item) -> tuple[int, int]:
        tier = 0 if item.path.parent.name == "z2jh" else 1 if item.path in slow_files else 2
        return tier, -count[item.path]

    items.sort(key=rank)  # stable: a file's tests stay together and in their order
