"""How a hub on Kubernetes signs people in: the chart's ``hub.config`` for the fleet's authenticator (oidc, the
embedded portal, ldap, lti13) and the ``hub.extraConfig`` pieces that go with OAuth logins.

Secrets never appear here: the hub reads them from hubfleet's Secret through ``valueFrom`` env entries.
"""

from __future__ import annotations

from hubfleet.backends.kubernetes import idp_groups, oidc_discovery
from hubfleet.backends.kubernetes import portal as hubfleet_portal
from hubfleet.backends.kubernetes.fleet import RenderOptions
from hubfleet.plan.spec import FleetSpec, HubSpec

__all__ = ["auth_config", "idp_config"]


def auth_config(hub: HubSpec, fleet: FleetSpec, options: RenderOptions) -> tuple[dict, dict]:
    """(hub.config, extra hub env) for the fleet's authenticator. Secrets only ever come from our Secret.

    Option names are oauthenticator 17's current ones (tests/test_k8s_oidc.py checks none is deprecated)."""
    auth, host = hub.auth, f"https://{hub.name}.{fleet.domain}"
    base = {"allow_all": False, "admin_users": list(hub.admins),
            # Enrolment sync creates the users of a hub through the REST API: existing users may log in.
            "allow_existing_users": True}
    env: dict = {}

    def from_secret(key: str) -> dict:
        return {"valueFrom": {"secretKeyRef": {"name": options.secret_name, "key": key}}}

    kind = auth["type"]
    if kind in ("oidc", "embedded"):
        oauth = {
            "client_id": auth.get("client_id", f"hub-{hub.name}"),
            "oauth_callback_url": f"{host}/hub/oauth_callback",
            "scope": ["openid", "profile", "email"],
            "username_claim": auth.get("username_claim", "preferred_username"),
            # Enrolment sync owns group memberships; idp groups only add at login (idp_groups.py, the local
            # backend's rule). manage_groups would reset them from the token at every login.
            "manage_groups": False,
            "enable_pkce": True,
            "basic_auth": True,  # client_secret_basic: the method every OpenID Connect provider must support
        }
        if kind == "embedded":
            # Our own portal (portal.py): its paths are ours to know, and so is the client it registers for this
            # hub (client_id = the hub's name, the redirect URI above; web/directory.py). The browser goes to
            # portal.{domain}; the hub's own calls go to the portal's Service inside the cluster.
            public = hubfleet_portal.public_url(fleet.domain) + hubfleet_portal.PREFIX
            internal = hubfleet_portal.internal_url(options) + hubfleet_portal.PREFIX
            oauth.update({"client_id": hub.name, "scope": ["openid", "profile", "groups"],
                          "authorize_url": public + "/oauth/authorize", "token_url": internal + "/oauth/token",
                          "userdata_url": internal + "/oauth/userinfo",
                          # Signing out of a hub signs out of the portal too (it asks first): a shared PC.
                          "logout_redirect_url": public + "/logout"})
        # oidc: the endpoints come from the IdP's discovery document when the hub starts (oidc_discovery.py).
        env["OAUTH_CLIENT_SECRET"] = from_secret("oauth-client-secret")  # read by OAuthenticator itself
        config = {"JupyterHub": {"authenticator_class": "generic-oauth"}, "GenericOAuthenticator": oauth}
    elif kind == "ldap":
        url = auth["server"]
        tls = "on_connect" if url.startswith("ldaps://") else "before_bind"
        ldap = {
            "server_address": url.split("://", 1)[-1].split(":")[0],
            "tls_strategy": tls,
            "user_search_base": auth["base_dn"],
            "user_attribute": auth.get("user_attribute", "uid"),
        }
        if auth.get("bind_dn_template"):
            ldap["bind_dn_template"] = [auth["bind_dn_template"]]
        groups = sorted({s["ldap"]["group"] for p in hub.presentations for s in p.enrolment
                         if s.get("ldap") and s["ldap"].get("group")})
        if groups:
            ldap["allowed_groups"] = groups
        config = {"JupyterHub": {"authenticator_class": "ldap"}, "LDAPAuthenticator": ldap}
    elif kind == "lti13":
        lti = {"issuer": auth["issuer"], "client_id": [auth["client_id"]],
               "authorize_url": auth["authorize_url"], "jwks_endpoint": auth["jwks_url"]}
        config = {"JupyterHub": {"authenticator_class": "ltiauthenticator.lti13.auth.LTI13Authenticator"},
                  "LTI13Authenticator": lti}
    else:
        raise ValueError(f"hub {hub.name}: auth type {kind!r} has no Kubernetes rendering")
    config["Authenticator"] = base
    return config, env


def idp_config(hub: HubSpec) -> dict[str, str]:
    """The identity-provider group rule, for the hubs that log in through OAuth (oidc, embedded)."""
    if hub.auth["type"] not in ("oidc", "embedded"):
        return {}
    out = {"15-hubfleet-idp-groups": idp_groups.hub_config(hub, hub.auth.get("groups_claim", "groups"))}
    if hub.auth["type"] == "oidc":  # before everything else that configures the authenticator
        out["05-hubfleet-oidc-discovery"] = oidc_discovery.hub_config(hub.auth["issuer"].rstrip("/"))
    return out
