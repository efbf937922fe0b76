"""``auth: oidc`` on Kubernetes: endpoints discovered from the IdP's well-known document, current option names.

The discovery test runs the rendered hub config the way z2jh's jupyterhub_config.py does (``hub.config`` loaded
into a traitlets Config, then each ``hub.extraConfig`` entry exec'd in key order) against a local HTTP server that
serves a discovery document, and builds the real oauthenticator 17.4.0 GenericOAuthenticator from the result.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from jupyterhub.auth import Authenticator
from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.oauth2 import OAuthenticator
from test_k8s_backend import spec_of, write_catalog
from traitlets.config import Config

from hubfleet.backends.kubernetes.material import read_material
from hubfleet.backends.kubernetes.values import render_values

OAUTH_SECTIONS = ("GenericOAuthenticator", "OAuthenticator", "Authenticator")


def deprecated_names() -> set[str]:
    """Every option name oauthenticator 17 (and JupyterHub's Authenticator under it) calls deprecated."""
    names = set(GenericOAuthenticator._deprecated_oauth_aliases) | set(OAuthenticator._deprecated_oauth_aliases)
    names |= set(getattr(Authenticator, "_deprecated_aliases", {}))
    names |= {n for n, t in GenericOAuthenticator.class_traits(config=True).items()
              if "deprecated" in (t.help or "").lower()}
    return names


class _Issuer:
    """A local IdP that serves only its discovery document; ``issuer`` may be made to lie."""

    def __init__(self, claimed_issuer: str | None = None):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                owner.requests.append(self.path)
                if self.path != "/realms/uni/.well-known/openid-configuration":
                    self.send_error(404)
                    return
                body = json.dumps(owner.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.requests: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/realms/uni"
        base = self.url + "/protocol/openid-connect"
        self.document = {
            "issuer": claimed_issuer or self.url,
            "authorization_endpoint": base + "/auth",
            "token_endpoint": base + "/token",
            "userinfo_endpoint": base + "/userinfo",
            "end_session_endpoint": base + "/logout",
            "jwks_uri": base + "/certs",
        }
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture(autouse=True)
def hub_env(monkeypatch):
    # What the hub pod's env holds from the hubfleet Secret (hub.extraEnv).
    monkeypatch.setenv("HUBFLEET_API_TOKEN", "0" * 64)
    monkeypatch.setenv("OAUTH_CLIENT_SECRET", "from-the-idp")


@pytest.fixture
def issuer():
    idp = _Issuer()
    yield idp
    idp.close()


def _values(tmp_path, issuer_url: str) -> dict:
    root = write_catalog(tmp_path / "catalog",
                         auth=f'auth: {{type: oidc, issuer: "{issuer_url}", client_id: notebooks}}')
    spec = spec_of(root)
    hub = next(h for h in spec.hubs if h.name == "m269-2026j")
    return render_values(hub, spec, material=read_material(root, spec))


def _run_hub_config(values: dict) -> Config:
    """What z2jh's jupyterhub_config.py does with hub.config and hub.extraConfig (minus the chart's own setup)."""
    c = Config()
    for section, cfg in values["hub"]["config"].items():
        c[section].update(cfg)
    for _key, code in sorted(values["hub"]["extraConfig"].items()):
        exec(compile(code, _key, "exec"), {"c": c})  # noqa: S102 - the hub does exactly this
    return c


def test_oidc_endpoints_are_discovered_at_hub_start_not_derived(tmp_path, issuer):
    values = _values(tmp_path, issuer.url)
    oauth = values["hub"]["config"]["GenericOAuthenticator"]
    # Nothing guessed from the issuer: an IdP's paths are its own (this one's are Keycloak's).
    assert not {"authorize_url", "token_url", "userdata_url"} & set(oauth)
    assert issuer.requests == []  # rendering is pure: no request until the hub starts
    c = _run_hub_config(values)
    assert issuer.requests == ["/realms/uni/.well-known/openid-configuration"]
    auth = GenericOAuthenticator(config=c)
    doc = issuer.document
    assert (auth.authorize_url, auth.token_url, auth.userdata_url, auth.logout_redirect_url) == (
        doc["authorization_endpoint"], doc["token_endpoint"], doc["userinfo_endpoint"], doc["end_session_endpoint"])
    assert auth.client_id == "notebooks"
    assert auth.oauth_callback_url == "https://m269-2026j.hubs.test.example/hub/oauth_callback"
    assert auth.enable_pkce and auth.manage_groups is False


def test_a_document_for_another_issuer_stops_the_hub_with_the_reason(tmp_path):
    idp = _Issuer(claimed_issuer="https://evil.example/realms/uni")
    try:
        with pytest.raises(RuntimeError, match=r"is for issuer 'https://evil.example/realms/uni'.*fleet.auth.issuer"):
            _run_hub_config(_values(tmp_path, idp.url))
    finally:
        idp.close()


def test_no_deprecated_oauthenticator_option_is_rendered(tmp_path, issuer):
    deprecated = deprecated_names()
    assert {"claim_groups_key", "username_key", "extra_params", "tls_verify"} <= deprecated  # the list is real
    values = _values(tmp_path, issuer.url)
    rendered = {k for section in OAUTH_SECTIONS for k in values["hub"]["config"].get(section, {})}
    code = "\n".join(values["hub"]["extraConfig"].values())
    rendered |= set(re.findall(r"\bc\.(?:\w*Authenticator)\.(\w+)", code))
    assert rendered & deprecated == set()
    # Every rendered name is an option the installed oauthenticator knows (a typo would be silently ignored).
    known = set(GenericOAuthenticator.class_traits(config=True))
    assert {k for k in values["hub"]["config"]["GenericOAuthenticator"]} <= known
    assert rendered - {"post_auth_hook"} <= known | set(Authenticator.class_traits(config=True))
    assert "claim_groups_key" not in json.dumps(values)
