"""The portal's sign-in and sign-out forms against forgery and password guessing (in process, no hubs).

A state dir with only ``passwords.json`` is enough for the portal's directory to know alice and bob.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import portal_sign_in
from fastapi.testclient import TestClient

from hubfleet.backends.local.members import hash_password
from hubfleet.web import csrf as csrf_module
from hubfleet.web.auth import SESSION_COOKIE
from hubfleet.web.csrf import CSRF_COOKIE
from hubfleet.web.portal import PortalSource, create_app

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(tmp_path: Path, clock: Clock):  # noqa: ANN201
    state = tmp_path / "state"
    state.mkdir()
    book = state / "passwords.json"
    book.write_text(json.dumps({u: hash_password(p) for u, p in PASSWORDS.items()}))
    book.chmod(0o600)
    return create_app(PortalSource(state), clock=clock)


def browser(app) -> TestClient:  # noqa: ANN001
    return TestClient(app, follow_redirects=False)


def signed_in_as(b: TestClient) -> str | None:
    found = re.search(r'id="portal-user">([^<]+)<', b.get("/portal/").text)
    return found.group(1) if found else None


def token_of(page_text: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page_text).group(1)


# -- login CSRF -------------------------------------------------------------------------------------------------------


def test_the_form_carries_a_token_bound_to_an_httponly_cookie(app) -> None:  # noqa: ANN001
    page = browser(app).get("/portal/login")
    assert page.status_code == 200 and 'name="csrf_token"' in page.text
    cookie = next(v for k, v in page.headers.multi_items() if k == "set-cookie" and v.startswith(CSRF_COOKIE))
    assert "HttpOnly" in cookie and "Path=/portal" in cookie and "samesite=lax" in cookie.lower()
    assert page.headers["cache-control"] == "no-store"


def test_a_valid_token_signs_in(app) -> None:  # noqa: ANN001
    b = browser(app)
    resp = portal_sign_in(b, "alice", "alice-pw")
    assert resp.status_code == 303 and resp.headers["location"] == "/portal/"
    assert signed_in_as(b) == "alice"


@pytest.mark.parametrize("token", [None, "", "forged", "InR3byI.aaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbbb"])
def test_a_post_without_or_with_a_forged_token_is_refused_and_makes_no_session(app, token: str | None) -> None:  # noqa: ANN001
    b = browser(app)
    b.get("/portal/login")  # the browser even has the CSRF cookie
    data = {"username": "alice", "password": "alice-pw"} | ({"csrf_token": token} if token is not None else {})
    resp = b.post("/portal/login", data=data)
    assert resp.status_code == 403 and "did not come from this site" in resp.text
    assert SESSION_COOKIE not in resp.headers.get("set-cookie", "")
    assert signed_in_as(b) is None
    # The page is a fresh, working form (and does not echo the posted username).
    assert 'value="alice"' not in resp.text
    assert b.post("/portal/login", data={"username": "alice", "password": "alice-pw", "csrf_token": token_of(resp.text)}).status_code == 303


def test_a_token_signed_with_another_secret_is_refused(app, tmp_path: Path) -> None:  # noqa: ANN001
    b = browser(app)
    page = b.get("/portal/login")
    nonce = b.cookies.get(CSRF_COOKIE)
    other = csrf_module.CsrfGuard(tmp_path / "another_secret")
    forged = other._signer.dumps(nonce)
    assert token_of(page.text) != forged
    assert b.post("/portal/login", data={"username": "alice", "password": "alice-pw", "csrf_token": forged}).status_code == 403
    assert signed_in_as(b) is None


def test_an_expired_token_is_refused(app, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    b = browser(app)
    token = token_of(b.get("/portal/login").text)
    monkeypatch.setattr(csrf_module, "CSRF_MAX_AGE", -1)
    assert b.post("/portal/login", data={"username": "alice", "password": "alice-pw", "csrf_token": token}).status_code == 403
    assert signed_in_as(b) is None


def test_an_attackers_page_cannot_log_the_victim_into_the_attackers_account(app) -> None:  # noqa: ANN001
    """Login CSRF: the attacker's page makes the victim's browser POST the attacker's credentials. It can send the
    victim's cookies along but cannot read them or the victim's form, so the best it has is a token from its own
    session (or none)."""
    attacker = browser(app)
    attackers_token = token_of(attacker.get("/portal/login").text)
    victim = browser(app)
    victim.get("/")  # the victim has used the portal before (a CSRF cookie of their own)
    victim.get("/portal/login")
    forged_form = {"username": "bob", "password": "bob-pw", "next": "/portal/"}
    for extra in ({}, {"csrf_token": attackers_token}):
        resp = victim.post("/portal/login", data=forged_form | extra, headers={"Origin": "https://evil.example"})
        assert resp.status_code == 403 and signed_in_as(victim) is None
    # A browser that labels the request cross-site is refused even with a matching token.
    own = token_of(victim.get("/portal/login").text)
    resp = victim.post("/portal/login", data=forged_form | {"csrf_token": own}, headers={"Sec-Fetch-Site": "cross-site"})
    assert resp.status_code == 403 and signed_in_as(victim) is None


def test_the_csrf_nonce_is_replaced_at_sign_in(app) -> None:  # noqa: ANN001
    b = browser(app)
    b.get("/portal/login")
    before = b.cookies.get(CSRF_COOKIE)
    assert portal_sign_in(b, "alice", "alice-pw").status_code == 303
    assert b.cookies.get(CSRF_COOKIE) not in (None, before)


# -- sign-out -----------------------------------------------------------------------------------------------------------


def test_logout_by_get_only_asks_and_post_with_the_token_signs_out(app) -> None:  # noqa: ANN001
    b = browser(app)
    portal_sign_in(b, "alice", "alice-pw")
    confirm = b.get("/portal/logout")  # where a hub's "sign out" sends the browser
    assert confirm.status_code == 200 and 'id="confirm-sign-out"' in confirm.text and 'method="post"' in confirm.text
    assert SESSION_COOKIE not in confirm.headers.get("set-cookie", "")
    assert signed_in_as(b) == "alice"
    # A forged POST (no token, or a token from another browser) changes nothing.
    other = token_of(browser(app).get("/portal/login").text)
    for data in ({}, {"csrf_token": other}):
        refused = b.post("/portal/logout", data=data)
        assert refused.status_code == 403 and signed_in_as(b) == "alice"
    done = b.post("/portal/logout", data={"csrf_token": token_of(confirm.text)})
    assert done.status_code == 303 and done.headers["location"] == "/"
    assert signed_in_as(b) is None
    assert 'id="signed-out"' in b.get("/portal/logout").text


def test_every_signed_in_page_signs_out_with_a_post_form(app) -> None:  # noqa: ANN001
    b = browser(app)
    portal_sign_in(b, "alice", "alice-pw")
    courses = b.get("/portal/").text
    assert 'id="portal-sign-out"' in courses and 'href="/portal/logout"' not in courses
    assert b.post("/portal/logout", data={"csrf_token": token_of(courses)}).status_code == 303
    assert signed_in_as(b) is None


# -- brute force ----------------------------------------------------------------------------------------------------------


def from_client(app, address: str) -> TestClient:  # noqa: ANN001
    return TestClient(app, follow_redirects=False, client=(address, 50000))


def test_failures_slow_down_that_username_from_that_client_progressively(app, clock: Clock) -> None:  # noqa: ANN001
    b = from_client(app, "10.0.0.9")
    for _ in range(5):
        assert portal_sign_in(b, "alice", "guess").status_code == 401
    # Even the right password waits out the delay: the check comes before the password is looked at.
    slowed = portal_sign_in(b, "alice", "alice-pw")
    assert slowed.status_code == 429 and SESSION_COOKIE not in slowed.headers.get("set-cookie", "")
    assert "Try again in 5 seconds." in slowed.text and int(slowed.headers["retry-after"]) == 5
    assert signed_in_as(b) is None
    clock.now += 5
    assert portal_sign_in(b, "alice", "guess").status_code == 401
    # Each further failure doubles the wait (5, 10, 20 ... seconds, at most 5 minutes); never a lock-out.
    assert int(portal_sign_in(b, "alice", "alice-pw").headers["retry-after"]) == 10
    clock.now += 10
    assert portal_sign_in(b, "alice", "alice-pw").status_code == 303


def test_an_attackers_failures_do_not_slow_down_the_owner_from_their_own_client(app, clock: Clock) -> None:  # noqa: ANN001
    attacker = from_client(app, "10.0.0.66")
    for _ in range(40):
        assert portal_sign_in(attacker, "alice", "guess").status_code in (401, 429)
    assert portal_sign_in(attacker, "alice", "alice-pw").status_code == 429
    # The owner, from their own machine, with the right password: in at once.
    assert portal_sign_in(from_client(app, "10.0.0.7"), "alice", "alice-pw").status_code == 303
    # Another account from the attacker's machine is not slowed by alice's failures either (under the per-client
    # allowance).
    assert portal_sign_in(from_client(app, "10.0.0.66"), "bob", "bob-pw").status_code == 303


def test_a_success_resets_the_pairs_count(app, clock: Clock) -> None:  # noqa: ANN001
    b = from_client(app, "10.0.0.9")
    for _ in range(4):
        assert portal_sign_in(b, "alice", "guess").status_code == 401
    assert portal_sign_in(b, "alice", "alice-pw").status_code == 303
    for _ in range(4):
        assert portal_sign_in(from_client(app, "10.0.0.9"), "alice", "guess").status_code == 401
    assert portal_sign_in(from_client(app, "10.0.0.9"), "alice", "alice-pw").status_code == 303


def test_one_client_spraying_usernames_is_slowed_down(app, clock: Clock) -> None:  # noqa: ANN001
    throttle = app.state.throttle
    b = from_client(app, "10.0.0.5")
    for i in range(throttle.client_free):
        assert portal_sign_in(b, f"nobody{i}", "guess").status_code == 401
    # From this client, even alice's right password waits now; the page says when to come back.
    slowed = portal_sign_in(b, "alice", "alice-pw")
    assert slowed.status_code == 429 and "Try again in 5 seconds." in slowed.text
    assert portal_sign_in(from_client(app, "10.0.0.6"), "alice", "alice-pw").status_code == 303  # not elsewhere
    clock.now += 5
    assert portal_sign_in(b, "alice", "alice-pw").status_code == 303


def test_refused_attempts_do_not_extend_the_delay(app, clock: Clock) -> None:  # noqa: ANN001
    b = from_client(app, "10.0.0.9")
    for _ in range(5):
        portal_sign_in(b, "bob", "guess")
    for _ in range(4):
        clock.now += 1
        assert portal_sign_in(b, "bob", "guess").status_code == 429
    clock.now += 1
    assert portal_sign_in(b, "bob", "bob-pw").status_code == 303


def test_the_delay_is_capped_and_forgotten_after_an_hour_of_quiet(app, clock: Clock) -> None:  # noqa: ANN001
    throttle = app.state.throttle
    b = from_client(app, "10.0.0.9")
    for _ in range(20):
        clock.now += throttle.cap
        assert portal_sign_in(b, "bob", "guess").status_code == 401  # at most one guess per cap, never locked
    assert int(portal_sign_in(b, "bob", "bob-pw").headers["retry-after"]) == throttle.cap
    clock.now += throttle.forget + 1
    for _ in range(throttle.free):
        assert portal_sign_in(b, "bob", "guess").status_code == 401


def test_forwarded_for_is_only_the_front_doors_last_entry(tmp_path: Path) -> None:
    """Behind the front door the portal keys on the entry the front door appended; served directly, on the peer."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "passwords.json").write_text(json.dumps({u: hash_password(p) for u, p in PASSWORDS.items()}))
    (state / "passwords.json").chmod(0o600)
    behind = create_app(PortalSource(state), behind_front_door=True)
    for i in range(5):
        made_up = {"X-Forwarded-For": f"203.0.113.{i}, 10.0.0.8"}  # the client wrote the first, the door the last
        assert portal_sign_in(browser(behind), "alice", "guess", headers=made_up).status_code == 401
    assert portal_sign_in(browser(behind), "alice", "alice-pw", headers={"X-Forwarded-For": "10.0.0.8"}).status_code == 429
    assert portal_sign_in(browser(behind), "alice", "alice-pw", headers={"X-Forwarded-For": "10.0.0.9"}).status_code == 303
    direct = create_app(PortalSource(state))
    for i in range(5):
        assert portal_sign_in(browser(direct), "alice", "guess", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code == 401
    assert portal_sign_in(browser(direct), "alice", "alice-pw").status_code == 429


def test_on_a_shared_network_the_owners_own_browser_is_not_slowed_by_a_classmate(app, clock: Clock) -> None:  # noqa: ANN001
    """A lab (or campus wifi) is one address behind NAT: a classmate there cannot slow down the owner's browser,
    which signed in before, even though it comes from the same address."""
    lab = "10.1.1.1"
    owners_browser = from_client(app, lab)
    assert portal_sign_in(owners_browser, "alice", "alice-pw").status_code == 303  # once, last week
    sign_out(owners_browser)
    classmate = from_client(app, lab)
    for _ in range(20):
        assert portal_sign_in(classmate, "alice", "guess").status_code in (401, 429)
    assert portal_sign_in(from_client(app, lab), "alice", "alice-pw").status_code == 429  # an unknown browser waits
    assert portal_sign_in(owners_browser, "alice", "alice-pw").status_code == 303  # the owner's does not
    assert signed_in_as(owners_browser) == "alice"


def test_a_device_cookie_only_counts_for_its_own_user(app, clock: Clock) -> None:  # noqa: ANN001
    lab = "10.1.1.2"
    bobs_browser = from_client(app, lab)
    assert portal_sign_in(bobs_browser, "bob", "bob-pw").status_code == 303
    sign_out(bobs_browser)
    # Bob's known browser trying alice is just another client on the lab's address: it is slowed down like one.
    for _ in range(5):
        assert portal_sign_in(from_client(app, lab), "alice", "guess").status_code == 401
    assert portal_sign_in(bobs_browser, "alice", "guess").status_code == 429


def sign_out(b: TestClient) -> None:
    assert b.post("/portal/logout", data={"csrf_token": token_of(b.get("/portal/logout").text)}).status_code == 303
    assert signed_in_as(b) is None
