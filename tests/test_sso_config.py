"""How each catalog auth type maps onto a local hub's authenticator config (pure: no hub, no network), and the
portal's session cookie and redirect rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from traitlets.config import Config

from hubfleet.backends.local.hubconfig import authenticator, ldap_settings, lti13_settings, oauth_settings
from hubfleet.catalog import load_catalog
from hubfleet.plan import plan
from hubfleet.web.auth import SessionSigner
from hubfleet.web.portal import _safe_next

AT = __import__("datetime").date(2026, 11, 1)


def _hub(two_course_catalog: Path, auth: dict | None = None):  # noqa: ANN202
    spec = plan(load_catalog(two_course_catalog).catalog, AT).hub("tm351-2026j")
    return spec.model_copy(update={"auth": auth}) if auth else spec


def _raw(tmp_path: Path) -> dict:
    # As the fleet writes it: the portal's host, the hub's own host, the portal's private address.
    return {"front_door": "http://portal.localhost:8000", "hub_url": "http://tm351-2026j.localhost:8000/",
            "portal_internal_url": "http://127.0.0.1:9001/portal", "hub_dir": str(tmp_path / "hub")}  # fmt: skip


def test_embedded_is_generic_oauth_against_the_portal(two_course_catalog: Path, tmp_path: Path) -> None:
    c = Config()
    name = authenticator(c, _hub(two_course_catalog), _raw(tmp_path), "/x/hub.json")
    assert c.JupyterHub.authenticator_class == "hubfleet.backends.local.authenticator.HubfleetOAuthenticator"
    s = c[name]
    assert (s.client_id, s.authorize_url, s.token_url, s.userdata_url, s.oauth_callback_url) == (
        "tm351-2026j",
        "http://portal.localhost:8000/portal/oauth/authorize",  # the browser, at the portal's host
        "http://127.0.0.1:9001/portal/oauth/token",  # the hub process, at the portal's private address
        "http://127.0.0.1:9001/portal/oauth/userinfo",
        "http://tm351-2026j.localhost:8000/hub/oauth_callback",  # back to the hub's own host
    )
    assert s.manage_groups is False and s.username_claim == "preferred_username" and c.Authenticator.auto_login
    # The client secret is generated once, 0600, and the same on every config load.
    secret_file = tmp_path / "hub" / "oauth_client_secret"
    assert secret_file.stat().st_mode & 0o077 == 0 and s.client_secret == secret_file.read_text().strip()
    again = Config()
    authenticator(again, _hub(two_course_catalog), _raw(tmp_path), "/x/hub.json")
    assert again[name].client_secret == s.client_secret


def test_portal_urls_can_differ_for_browser_and_hub(two_course_catalog: Path, tmp_path: Path) -> None:
    raw = _raw(tmp_path) | {"portal_url": "https://hubs.example.ac.uk/portal", "portal_internal_url": "http://127.0.0.1:9001/portal"}
    s = oauth_settings(_hub(two_course_catalog), raw)
    assert s["authorize_url"].startswith("https://hubs.example.ac.uk/portal/") and s["token_url"].startswith("http://127.0.0.1:9001/")


def test_oidc_uses_the_providers_discovered_endpoints(two_course_catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    auth = {"type": "oidc", "issuer": "https://idp.example.ac.uk/realms/uni", "client_id": "notebooks", "groups_claim": "roles",
            "username_claim": "preferred_username"}  # fmt: skip
    meta = {"authorization_endpoint": "https://idp/a", "token_endpoint": "https://idp/t", "userinfo_endpoint": "https://idp/u"}
    with pytest.raises(RuntimeError, match="HUBFLEET_OIDC_CLIENT_SECRET"):
        oauth_settings(_hub(two_course_catalog, auth), _raw(tmp_path), discover=lambda issuer: meta)
    monkeypatch.setenv("HUBFLEET_OIDC_CLIENT_SECRET", "from-the-idp")
    s = oauth_settings(_hub(two_course_catalog, auth), _raw(tmp_path), discover=lambda issuer: meta)
    assert (s["client_id"], s["client_secret"], s["authorize_url"], s["groups_claim"]) == ("notebooks", "from-the-idp", "https://idp/a", "roles")


def test_ldap_maps_to_ldapauthenticator(two_course_catalog: Path, tmp_path: Path) -> None:
    auth = {"type": "ldap", "server": "ldaps://ldap.example.ac.uk", "base_dn": "dc=example,dc=ac,dc=uk", "user_attribute": "uid",
            "bind_dn_template": "uid={username},ou=people,dc=example,dc=ac,dc=uk"}  # fmt: skip
    assert ldap_settings(auth) == {
        "server_address": "ldap.example.ac.uk", "server_port": 636, "use_ssl": True, "user_attribute": "uid",
        "user_search_base": "dc=example,dc=ac,dc=uk", "bind_dn_template": ["uid={username},ou=people,dc=example,dc=ac,dc=uk"],
    }  # fmt: skip
    c = Config()
    name = authenticator(c, _hub(two_course_catalog, auth), _raw(tmp_path), "/x/hub.json")
    assert c.JupyterHub.authenticator_class.endswith(".HubfleetLDAPAuthenticator") and c[name].server_port == 636
    from hubfleet.backends.local.authenticator import HubfleetLDAPAuthenticator

    authenticator_instance = HubfleetLDAPAuthenticator(config=c)
    assert authenticator_instance.server_address == "ldap.example.ac.uk" and authenticator_instance.hub_json == "/x/hub.json"
    assert ldap_settings({"type": "ldap", "server": "ldap://dir:3890", "base_dn": "dc=x"})["lookup_dn"] is True


def test_lti13_maps_to_ltiauthenticator(two_course_catalog: Path, tmp_path: Path) -> None:
    auth = {"type": "lti13", "issuer": "https://moodle.example.ac.uk", "client_id": "abc123",
            "authorize_url": "https://moodle.example.ac.uk/mod/lti/auth.php", "jwks_url": "https://moodle.example.ac.uk/mod/lti/certs.php"}  # fmt: skip
    assert lti13_settings(auth)["client_id"] == {"abc123"}
    c = Config()
    name = authenticator(c, _hub(two_course_catalog, auth), _raw(tmp_path), "/x/hub.json")
    from hubfleet.backends.local.authenticator import HubfleetLTI13Authenticator

    lti = HubfleetLTI13Authenticator(config=c)
    assert name == "HubfleetLTI13Authenticator" and lti.issuer == auth["issuer"] and lti.jwks_endpoint == auth["jwks_url"]


def test_session_cookie_is_signed_scoped_and_tamper_proof(tmp_path: Path) -> None:
    signer = SessionSigner(tmp_path / "session_secret")
    value = signer.dumps("alice")
    assert signer.loads(value) == "alice"
    assert signer.loads(value[:-2] + ("A" if value[-1] != "A" else "B") + value[-1]) is None
    assert SessionSigner(tmp_path / "other_secret").loads(value) is None
    assert (tmp_path / "session_secret").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("target,expected", [
    ("/portal/oauth/authorize?client_id=x", "/portal/oauth/authorize?client_id=x"),
    ("https://evil.example/portal/", "/portal/"), ("//evil.example/portal/", "/portal/"), ("/hubs/x/", "/portal/"),
    ("", "/portal/"),
])  # fmt: skip
def test_login_only_redirects_back_into_the_portal(target: str, expected: str) -> None:
    assert _safe_next(target) == expected
