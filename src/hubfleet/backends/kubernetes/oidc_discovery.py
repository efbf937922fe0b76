"""OpenID Connect discovery for ``auth: oidc`` hubs, done by the hub itself when it starts (``hub.extraConfig``).

An institution's IdP publishes its endpoints at ``{issuer}/.well-known/openid-configuration``; their paths differ
between products (Keycloak ``/protocol/openid-connect/auth``, Entra ID ``/oauth2/v2.0/authorize``, Shibboleth
``/profile/oidc/authorize``), so deriving them from the issuer only works for one of them. oauthenticator 17.4's
GenericOAuthenticator has no discovery of its own (it wants ``authorize_url``, ``token_url``, ``userdata_url``), and
the renderer is pure (no network while rendering, and the IdP may move an endpoint after the render), so the hub
reads the document at start-up, as the local backend does when it writes a hub's config
(``backends/local/hubconfig.py``).

The document's ``issuer`` must equal the configured one (OpenID Connect Discovery 1.0, section 4.3): a document
served for another issuer is refused, and so is one missing an endpoint. A hub that cannot discover does not start
(its pod restarts with back-off and the reason is in its log), rather than starting with a login that cannot work.
# ref: https://openid.net/specs/openid-connect-discovery-1_0.html#ProviderConfigurationValidation
# ref: https://oauthenticator.readthedocs.io/en/latest/reference/api/gen/oauthenticator.generic.html
"""

from __future__ import annotations

import json

# Runs inside the hub (z2jh 4.4.0's image); stdlib only. `c` is the traitlets config jupyterhub_config.py builds.
HUB_CONFIG = r'''# --- hubfleet OpenID Connect discovery (generated; do not edit by hand) ---
import json as _json
import time as _time
import urllib.request as _urllib_request

HUBFLEET_OIDC = _json.loads(__HUBFLEET_OIDC__)


def hubfleet_oidc_discover(issuer, attempts, timeout=10):
    """The provider's metadata, validated; RuntimeError saying what is wrong otherwise."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    for attempt in range(attempts):
        try:
            with _urllib_request.urlopen(url, timeout=timeout) as response:
                meta = _json.load(response)
            break
        except (OSError, ValueError) as exc:  # URLError/HTTPError are OSErrors; a broken document a ValueError
            if attempt + 1 == attempts:
                raise RuntimeError(f"OpenID Connect discovery: cannot read {url}: {exc}") from exc
            _time.sleep(min(2**attempt, 10))  # the IdP or the cluster's egress may be coming up too
    if not isinstance(meta, dict) or str(meta.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
        found = meta.get("issuer") if isinstance(meta, dict) else meta
        raise RuntimeError(f"OpenID Connect discovery: {url} is for issuer {found!r}, not {issuer!r}; "
                           "fix fleet.auth.issuer")
    missing = [k for k in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint") if not meta.get(k)]
    if missing:
        raise RuntimeError(f"OpenID Connect discovery: {url} names no {', '.join(missing)}")
    return meta


_hubfleet_oidc = hubfleet_oidc_discover(HUBFLEET_OIDC["issuer"], HUBFLEET_OIDC["attempts"])
c.GenericOAuthenticator.authorize_url = _hubfleet_oidc["authorization_endpoint"]
c.GenericOAuthenticator.token_url = _hubfleet_oidc["token_endpoint"]
c.GenericOAuthenticator.userdata_url = _hubfleet_oidc["userinfo_endpoint"]
if _hubfleet_oidc.get("end_session_endpoint"):
    # Signing out of a hub signs out at the IdP too: on a shared PC the next person must not inherit the session.
    c.GenericOAuthenticator.logout_redirect_url = _hubfleet_oidc["end_session_endpoint"]
'''

PLACEHOLDER = "__HUBFLEET_OIDC__"
ATTEMPTS = 5  # 1+2+4+8 s of back-off, then the pod restarts and Kubernetes backs off further


def hub_config(issuer: str, attempts: int = ATTEMPTS) -> str:
    """The extraConfig snippet that discovers ``issuer``'s endpoints when the hub starts."""
    data = {"issuer": issuer, "attempts": attempts}
    return HUB_CONFIG.replace(PLACEHOLDER, repr(json.dumps(data, sort_keys=True, separators=(",", ":"))), 1)
