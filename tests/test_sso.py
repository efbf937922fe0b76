"""Single sign-on and server-side enforcement with real processes: a per-course fleet of two JupyterHubs behind the
front door, the portal as the embedded OpenID Connect provider, real OAuth code flows (httpx following redirects
with a cookie jar, and one real Chromium).

One module-scoped fleet (hubs take seconds to boot); tests run in file order and say what they leave behind.
Hub ``tm351`` hosts two presentations (TM351-2026J, TM351-2026K), hub ``m269`` one. Who is who:

  alice  TM351-2026J student (CSV) and M269-2026J student (static list)   -> both hubs, one sign-in
  bob    TM351-2026J student (CSV)                                         -> removed from the roster later
  carol  M269-2026J student only                                           -> 403 at tm351
  dan    TM351-2026K student (static list)                                 -> forbidden profile; ivan cannot stop him
  ivan   TM351-2026J instructor                                            -> stops alice, not dan; 403 at m269
  zoe    users_file account whose groups claim carries tm351-affinity      -> enrolled in TM351-2026K at login
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import browser_client, free_port, portal_sign_in, running_in as _running_in, wait_until, write_m269

from hubfleet.backends.local import process
from hubfleet.backends.local.backend import stop_fleet

AT = dt.date(2026, 11, 1)
pytestmark = pytest.mark.slow


def write_catalog(root: Path) -> Path:
    (root / "courses").mkdir(parents=True)
    (root / "enrolments").mkdir()
    (root / "enrolments" / "TM351-2026J.csv").write_text("username,role\nalice,student\nbob,student\n")
    (root / "users.csv").write_text("username,password,groups\nzoe,zoe-own-password,tm351-affinity staff-news\n")
    (root / "fleet.yaml").write_text(textwrap.dedent("""\
        fleet:
          name: sso-university
          topology: per-course
          platform_team: [opsadmin]
          auth: {type: embedded, users_file: users.csv}
          branding: {name: SSO University Notebooks, primary_color: "#7a1f5c", login_message: Sign in with your university account.}
        """))
    (root / "courses" / "TM351.yaml").write_text(textwrap.dedent("""\
        code: TM351
        title: Data management and analysis
        presentations:
          - id: 2026J
            start: 2026-10-03
            end: 2027-06-10
            team: {instructors: [ivan]}
            enrolment: [{csv: ../enrolments/TM351-2026J.csv}]
          - id: 2026K
            title: Data management (autumn intake)
            start: 2026-10-20
            end: 2027-07-01
            enrolment: [{users: [dan]}, {idp_group: tm351-affinity}]
        """))
    write_m269(root)
    return root


@dataclass
class Fleet:
    catalog: Path
    state: Path
    port: int
    apply_output: str = ""

    @property
    def url(self) -> str:
        """The portal, on its own host."""
        return f"http://portal.localhost:{self.port}"

    @property
    def password(self) -> str:
        return (self.state / "demo-password").read_text().strip()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "hubfleet.cli.main", *args, str(self.catalog), "--state-dir", str(self.state),
                "--at", AT.isoformat()]  # fmt: skip
        if args[0] in ("up", "apply"):
            argv += ["--port", str(self.port)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)

    def service_api(self, hub: str) -> httpx.Client:
        token = (self.state / "hubs" / hub / "service_token").read_text().strip()
        return browser_client(f"{_hub(self.port, hub)}hub/api/", headers={"Authorization": f"token {token}"}, timeout=30)

    def browser(self) -> httpx.Client:
        return browser_client(self.url, timeout=60, follow_redirects=True)

    def sign_in(self, user: str, password: str | None = None) -> httpx.Client:
        """Sign in once at the portal, as a person would."""
        b = self.browser()
        page = portal_sign_in(b, user, password or self.password, next="/portal/")
        assert page.status_code == 200 and page.url.path == "/portal/", page.text[:400]
        return b


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("sso")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUBFLEET_DEMO_MODE", "1")  # one account: no system users needed for the identity flow
        f = Fleet(write_catalog(root / "catalog"), root / "state", free_port())
        try:
            run = f.cli("apply", "--yes")
            f.apply_output = run.stdout + run.stderr
            assert run.returncode == 0, f.apply_output
            yield f
        finally:
            seen = _running_in(f.state)
            stop_fleet(f.state)
            _, alive = psutil.wait_procs(seen, timeout=30)
            assert alive == [], f"left running after down: {alive}"


def _hub(port: int | None, hub: str) -> str:
    """A hub's own host (students' servers are on hosts below it: ``http://{user}.{hub}.localhost:PORT/``)."""
    return f"http://{hub}.localhost:{port}/"


def open_hub(b: httpx.Client, hub: str) -> httpx.Response:
    """Open a hub like clicking its link: every redirect followed (hub login -> portal authorize -> callback)."""
    return b.get(f"{_hub(b.base_url.port, hub)}hub/")


def _hub_login(b: httpx.Client, hub: str) -> httpx.Response:
    """Only the OAuth sign-in to a hub, without the default spawn that /hub/ would trigger."""
    return b.get(f"{_hub(b.base_url.port, hub)}hub/oauth_login", params={"next": "/hub/token"})


def _xsrf(b: httpx.Client, hub: str) -> str:
    return next(c.value for c in b.cookies.jar
                if c.name == "_xsrf" and c.domain == f"{hub}.localhost" and c.path.startswith("/hub"))  # fmt: skip


def _as_user(b: httpx.Client, hub: str, method: str, path: str, **kw) -> httpx.Response:
    """A hub API call with the browser's cookie (needs X-XSRFToken). ref: jupyterhub websecurity, XSRF."""
    return b.request(method, f"{_hub(b.base_url.port, hub)}hub/api/{path}", headers={"X-XSRFToken": _xsrf(b, hub)}, **kw)



def _server_ready(fleet: Fleet, hub: str, user: str) -> bool:
    with fleet.service_api(hub) as api:
        return bool((api.get(f"users/{user}").json().get("servers", {}).get("") or {}).get("ready"))


def _no_server(fleet: Fleet, hub: str, user: str) -> bool:
    with fleet.service_api(hub) as api:
        return not api.get(f"users/{user}").json().get("servers")


# -- the provider itself --------------------------------------------------------------------------------------------


def test_apply_prints_the_portal_and_how_to_sign_in(fleet: Fleet) -> None:
    assert f"{fleet.url}/portal/login" in fleet.apply_output
    assert fleet.password in fleet.apply_output


def test_discovery_keys_and_client_secrets_are_generated_once(fleet: Fleet) -> None:
    meta = fleet.browser().get("/portal/.well-known/openid-configuration").json()
    assert meta["issuer"] == f"{fleet.url}/portal"
    assert meta["authorization_endpoint"] == f"{fleet.url}/portal/oauth/authorize"
    assert "S256" in meta["code_challenge_methods_supported"]
    keys = fleet.browser().get(meta["jwks_uri"]).json()["keys"]
    assert [(k["kty"], k["alg"]) for k in keys] == [("RSA", "RS256")] and "d" not in keys[0]
    for path in [fleet.state / "portal" / n for n in ("oidc_signing_key.json", "session_secret", "token_secret")] + [
        fleet.state / "hubs" / h / "oauth_client_secret" for h in ("tm351", "m269")
    ]:
        assert path.stat().st_mode & 0o077 == 0, path


def test_authorize_refuses_an_unregistered_redirect_without_redirecting(fleet: Fleet) -> None:
    b = fleet.sign_in("alice")
    resp = b.get("/portal/oauth/authorize", params={"client_id": "tm351", "response_type": "code",
                                                   "redirect_uri": "https://evil.example/cb"}, follow_redirects=False)  # fmt: skip
    assert resp.status_code == 400 and "sign-in link is not from one of this fleet" in resp.text


def test_wrong_password_is_refused_at_the_portal(fleet: Fleet) -> None:
    resp = portal_sign_in(fleet.browser(), "alice", "nope")
    assert resp.status_code == 401 and "Invalid username or password" in resp.text
    assert "hubfleet-portal-session" not in resp.cookies


# -- one sign-in, every hub -------------------------------------------------------------------------------------------


def test_one_sign_in_opens_both_hubs(fleet: Fleet) -> None:
    b = fleet.sign_in("alice")
    courses = b.get("/portal/").text
    assert "Your courses" in courses and "TM351-2026J" in courses and "M269-2026J" in courses
    assert "TM351-2026K" not in courses  # only her own presentations, not everything on her hubs
    for hub in ("tm351", "m269"):
        landed = open_hub(b, hub)
        assert landed.status_code == 200, landed.text[:500]
        # No second password: the redirect chain went through the portal's authorize, never its login form.
        chain = [str(r.url) for r in landed.history]
        assert any("/portal/oauth/authorize" in u for u in chain) and not any("/portal/login" in u for u in chain)
        assert landed.url.host == f"{hub}.localhost"  # the hub's own host
        with fleet.service_api(hub) as api:
            assert api.get("users/alice").json()["name"] == "alice"
    wait_until(lambda: _server_ready(fleet, "tm351", "alice"))  # left running for the instructor test


def test_anonymous_visitor_gets_the_public_list_and_a_sign_in_link(fleet: Fleet) -> None:
    page = fleet.browser().get("/portal/")
    assert "Sign in to see your courses" in page.text and "/portal/login" in page.text
    assert "TM351-2026K" in page.text and "M269-2026J" in page.text
    # A hub opened without a portal session ends at the portal's sign-in form, which then leads back to the hub.
    b = fleet.browser()
    form = open_hub(b, "m269")
    assert form.url.path == "/portal/login" and 'name="password"' in form.text
    back = portal_sign_in(b, "carol", fleet.password, next=form.url.params["next"], follow_redirects=False)
    assert back.headers["location"].startswith("/portal/oauth/authorize?")


def test_staff_see_their_presentations_with_their_role(fleet: Fleet) -> None:
    page = fleet.sign_in("ivan").get("/portal/").text
    assert "TM351-2026J" in page and "Instructor" in page and "M269" not in page


# -- enforcement --------------------------------------------------------------------------------------------------------


def test_student_of_one_course_opening_another_hub_gets_the_403_page(fleet: Fleet) -> None:
    b = fleet.sign_in("carol")
    resp = open_hub(b, "tm351")
    assert resp.status_code == 403
    assert "You are not enrolled on TM351-2026J, TM351-2026K" in resp.text
    assert f'href="{fleet.url}/portal/"' in resp.text  # where to go instead: her own courses


def test_student_posting_another_presentations_profile_gets_403(fleet: Fleet) -> None:
    b = fleet.browser()
    portal_sign_in(b, "dan", fleet.password)
    assert _hub_login(b, "tm351").status_code == 200
    forbidden = _as_user(b, "tm351", "POST", "users/dan/server", json={"profile": "tm351-2026j-default"})
    assert forbidden.status_code == 403, forbidden.text
    assert "not one of your courses" in forbidden.text
    posted = b.post(f"{_hub(fleet.port, 'tm351')}hub/spawn", data={"profile": "tm351-2026j-default", "_xsrf": _xsrf(b, "tm351")})
    assert posted.status_code == 403
    # His own profile works; the server is left running for the instructor test.
    assert _as_user(b, "tm351", "POST", "users/dan/server", json={"profile": "tm351-2026k-default"}).status_code in (201, 202)
    wait_until(lambda: _server_ready(fleet, "tm351", "dan"))


def test_instructor_stops_own_students_server_but_not_others(fleet: Fleet) -> None:
    b = fleet.sign_in("ivan")
    assert _hub_login(b, "tm351").status_code == 200
    made = _as_user(b, "tm351", "POST", "users/ivan/tokens", json={"note": "helping students", "expires_in": 600})
    assert made.status_code == 201, made.text
    api = browser_client(f"{_hub(fleet.port, 'tm351')}hub/api/", headers={"Authorization": f"token {made.json()['token']}"},
                         timeout=60)  # a stop can take seconds on a loaded machine
    # Presentation A (his): alice's server stops.
    assert api.delete("users/alice/server").status_code in (202, 204)
    wait_until(lambda: _no_server(fleet, "tm351", "alice"))
    # Presentation B in the same hub (TM351-2026K): refused, and dan's server keeps running.
    refused = api.delete("users/dan/server")
    assert refused.status_code in (403, 404), refused.text
    assert _server_ready(fleet, "tm351", "dan")
    # Hub B (M269): he is not admitted at all.
    assert open_hub(b, "m269").status_code == 403
    with fleet.service_api("tm351") as service:
        service.delete("users/dan/server")


def test_identity_provider_group_enrols_at_login(fleet: Fleet) -> None:
    b = fleet.sign_in("zoe", "zoe-own-password")
    assert _hub_login(b, "tm351").status_code == 200
    with fleet.service_api("tm351") as api:
        assert "zoe" in api.get("groups/tm351-2026k").json()["users"]
    assert "TM351-2026K" in b.get("/portal/").text


def test_student_removed_from_the_roster_loses_access_but_keeps_files(fleet: Fleet) -> None:
    b = fleet.sign_in("bob")
    assert open_hub(b, "tm351").status_code == 200
    wait_until(lambda: _server_ready(fleet, "tm351", "bob"))
    bobs = f"http://bob.tm351.localhost:{fleet.port}/user/bob/"  # his server's own host
    assert b.get(bobs + "lab").status_code == 200  # the server's own OAuth hop sets its _xsrf cookie
    saved = b.put(bobs + "api/contents/TM351-2026J/essay.txt",
                  json={"type": "file", "format": "text", "content": "my essay"},
                  headers={"X-XSRFToken": b.cookies.get("_xsrf", domain="bob.tm351.localhost", path="/user/bob/")})  # fmt: skip
    assert saved.status_code == 201, saved.text
    with fleet.service_api("tm351") as api:
        api.delete("users/bob/server")
    wait_until(lambda: _no_server(fleet, "tm351", "bob"))

    roster = fleet.catalog / "enrolments" / "TM351-2026J.csv"
    roster.write_text("username,role\nalice,student\n")
    sync = fleet.cli("enrol", "sync")
    assert sync.returncode == 0, sync.stdout + sync.stderr

    # His hub cookie is re-checked before a spawn; a fresh sign-in ends at the 403 page.
    assert "not enrolled" in b.get(f"{_hub(fleet.port, 'tm351')}hub/spawn").text
    again = fleet.sign_in("bob")
    assert "TM351-2026J" not in again.get("/portal/").text
    assert open_hub(again, "tm351").status_code == 403
    essay = next((fleet.state / "storage").rglob("TM351-2026J/essay.txt"))
    assert essay.read_text() == "my essay"


def test_signing_out_of_a_hub_signs_out_of_the_portal_after_a_confirming_post(fleet: Fleet) -> None:
    """Single sign-out: the hub's "sign out" ends at the portal's end_session_endpoint, which (being a GET) only
    asks; its button POSTs with the form token, and then the next hub visit needs the password again."""
    b = fleet.sign_in("alice")
    assert _hub_login(b, "m269").status_code == 200
    confirm = b.get(f"{_hub(fleet.port, 'm269')}hub/logout")
    assert confirm.url.path == "/portal/logout" and 'id="confirm-sign-out"' in confirm.text
    assert 'id="portal-user">alice<' in b.get("/portal/").text  # the GET alone signed nobody out
    assert b.post("/portal/logout", data={}).status_code == 403  # nor does a POST without the token
    token = re.search(r'name="csrf_token" value="([^"]+)"', confirm.text).group(1)
    done = b.post("/portal/logout", data={"csrf_token": token})
    assert done.status_code == 200 and done.url.path == "/" and 'id="portal-login"' in done.text
    assert open_hub(b, "m269").url.path == "/portal/login"


# -- a real browser --------------------------------------------------------------------------------------------------


def test_browser_signs_in_sees_your_courses_and_opens_a_hub(fleet: Fleet) -> None:
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"]  # fmt: skip
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=args)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 760})
            page.goto(f"{fleet.url}/")
            page.click("#portal-login")
            page.fill("#username", "alice")
            page.fill("#password", fleet.password)
            page.click("#sign-in")
            page.wait_for_selector("#your-courses")
            assert page.inner_text("#portal-user") == "alice"
            assert page.locator("section.course").count() == 2
            page.screenshot(path="/tmp/portal.png", full_page=True)
            page.click("#course-M269-2026J a.open")
            # Lands in the hub with no second sign-in: the spawn page or JupyterLab itself.
            page.wait_for_url(re.compile(r"//(m269\.localhost:\d+/hub/spawn-pending/alice|alice\.m269\.localhost:\d+/user/alice/lab)"),
                              timeout=120_000)  # fmt: skip
        finally:
            browser.close()
