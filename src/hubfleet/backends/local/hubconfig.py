"""The configuration of one local JupyterHub, built from the ``hub.json`` the fleet side writes.

The hub is started as ``<venv>/bin/jupyterhub -f <hub_dir>/jupyterhub_config.py`` with cwd ``<hub_dir>``; that
file is two lines (:func:`write_config_file`) so every setting lives here, in tested code, and a catalog change
only ever rewrites data (hub.json, members.json), never Python.

hub.json keys read (the contract with ``backend.py``):

required  ``spec`` (HubSpec JSON), ``hub_dir``, ``storage_root``, ``catalog_root``, ``hub_port``, ``proxy_port``,
          ``proxy_api_port``, ``chp``, ``front_door``, ``demo_mode``, ``service_token_file``,
          ``cookie_secret_file``, ``proxy_token_file``, ``members``
optional  ``hub_url`` (the hub's own host, ``http://<hub>.<domain>:<port>/``: set by the fleet, it turns on
          ``JupyterHub.subdomain_host`` so every student's server gets a host of its own, see ``hosts.py``),
          ``portal_url``, ``portal_internal_url`` (see :func:`portal_urls`),
          ``start_proxy`` (default true: the hub starts and stops its own CHP; false if the fleet side runs CHP
          itself, ref: https://jupyterhub.readthedocs.io/en/stable/howto/separate-proxy.html),
          ``cleanup_servers`` (default false: students' servers survive a hub restart, see below),
          ``log_level`` (default "INFO").
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hubfleet.backends.local.dbtuning import tune_hub
from hubfleet.backends.local.membership import HubContext, public_hub_url
from hubfleet.backends.local.secrets import ensure_secret, read_secret
from hubfleet.plan.spec import HubSpec, Phase

__all__ = ["CULLER_SCOPES", "HUBFLEET_SCOPES", "TEMPLATES", "configure", "restart_needed", "write_config_file"]

TEMPLATES = Path(__file__).parent / "templates"
HOST = "127.0.0.1"

# What hubfleet itself does to a hub, and no more (ref: https://jupyterhub.readthedocs.io/en/stable/rbac/scopes.html):
#   read:hub      GET /info (version, for status and upgrade checks)
#   admin:users   enrolment sync creates and deletes users (implies list:users, read:users)
#   admin:groups  enrolment sync creates groups and sets their members
#   servers       status (read:servers), stop before archive/down (delete:servers), smoke-test start
#   read:metrics  the portal's /metrics reads each hub's /hub/metrics (running servers, active users)
#   custom:hubfleet:enrol  the bulk enrolment endpoint (hubfleet.enrol.endpoint); defined by this config, held by
#                 no one else
# Not access:servers (hubfleet never opens a student's server) and not tokens (it never acts as a student).
HUBFLEET_SCOPES = ["read:hub", "admin:users", "admin:groups", "servers", "read:metrics", "custom:hubfleet:enrol"]
# jupyterhub-idle-culler culling servers only (not users). ref: https://github.com/jupyterhub/jupyterhub-idle-culler#permissions
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]


def write_config_file(hub_dir: Path) -> Path:
    """Write ``<hub_dir>/jupyterhub_config.py`` (two lines, no secrets); return its path."""
    hub_dir = Path(hub_dir).resolve()
    path = hub_dir / "jupyterhub_config.py"
    text = (
        "from hubfleet.backends.local.hubconfig import configure\n"
        f"configure(c, {str(hub_dir / 'hub.json')!r})\n"
    )
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def configure(c: Any, hub_json: str | Path) -> None:
    """Fill the traitlets config ``c`` of one hub from its hub.json."""
    hub_json = str(Path(hub_json).resolve())
    raw = json.loads(Path(hub_json).read_text(encoding="utf-8"))
    spec = HubSpec.model_validate(raw["spec"])
    ctx = HubContext(Path(hub_json))
    hub_dir = Path(raw["hub_dir"])
    # Everything the hub creates (sqlite -wal/-shm, the proxy pid file, lab config dirs before their chmod) is
    # private to the hub's account; files meant for students get explicit modes. See docs/security.md.
    os.umask(0o077)

    # -- network: public side through this hub's CHP, hub API on its own port --------------------------------
    c.JupyterHub.bind_url = f"http://{HOST}:{raw['proxy_port']}{spec.base_path}"
    c.JupyterHub.hub_bind_url = f"http://{HOST}:{raw['hub_port']}"
    c.ConfigurableHTTPProxy.command = [raw["chp"]]  # node CHP: the Python port drops websocket subprotocols
    c.ConfigurableHTTPProxy.api_url = f"http://{HOST}:{raw['proxy_api_port']}"
    c.ConfigurableHTTPProxy.auth_token = read_secret(raw["proxy_token_file"])
    c.ConfigurableHTTPProxy.should_start = bool(raw.get("start_proxy", True))
    c.ConfigurableHTTPProxy.pid_file = str(hub_dir / "jupyterhub-proxy.pid")
    if raw.get("hub_url"):
        # Students' servers on hosts of their own, {user}.{hub}.{domain}: a page a student serves is then another
        # origin than the hub and the portal, and cannot read them or act on them (issue 16). The proxy routes by
        # host (started with --host-routing, see proxy.py); JupyterHub's login cookie stays on the hub's host.
        # ref: https://jupyterhub.readthedocs.io/en/stable/explanation/websecurity.html#enable-subdomains
        c.JupyterHub.subdomain_host = str(raw["hub_url"]).rstrip("/")

    # -- state: everything in the hub dir; secrets generated once by the fleet side ----------------------------
    c.JupyterHub.db_url = f"sqlite:///{hub_dir / 'jupyterhub.sqlite'}"
    # WAL + synchronous=NORMAL, no per-transaction ping on SQLite, cached default-role lookups: bulk enrolment
    # of thousands of students ~1.7x faster (benchmarks/enrol_sync.py). Runs before the hub opens its db.
    tune_hub()
    c.JupyterHub.cookie_secret_file = raw["cookie_secret_file"]
    c.JupyterHub.pid_file = str(hub_dir / "jupyterhub.pid")
    c.JupyterHub.log_level = raw.get("log_level", "INFO")
    # A hub restart (config change, upgrade) must not kill students' kernels: LocalProcessSpawner finds its
    # servers again by pid. So `hubfleet down` must stop servers through the API before stopping the hub.
    # ref: https://jupyterhub.readthedocs.io/en/stable/reference/api/app.html#jupyterhub.app.JupyterHub.cleanup_servers
    c.JupyterHub.cleanup_servers = bool(raw.get("cleanup_servers", False))

    # -- who may log in (identity from fleet auth, admission from enrolment: authenticator.py) --------------------
    authenticator(c, spec, raw, hub_json)
    c.Authenticator.admin_users = set(spec.admins)
    # JupyterHub >= 5 admits nobody without allow_all or an allow list; our check_allowed is the allow logic.
    # ref: DESIGN.md "Known traps"
    c.Authenticator.allow_all = False
    # check_allowed (membership.py) *is* the allow config; this only silences "nobody can login" at startup.
    # ref: https://jupyterhub.readthedocs.io/en/stable/reference/api/auth.html#jupyterhub.auth.Authenticator.any_allow_config
    c.Authenticator.any_allow_config = True
    c.Authenticator.auth_refresh_age = 300
    c.Authenticator.refresh_pre_spawn = True  # an unenrolled student cannot start a server with an old cookie

    # -- servers ----------------------------------------------------------------------------------------------
    c.JupyterHub.spawner_class = "hubfleet.backends.local.spawner.HubfleetSpawner"
    c.HubfleetSpawner.hub_json = hub_json
    c.Spawner.http_timeout = 60
    c.Spawner.start_timeout = 120

    # -- pages ------------------------------------------------------------------------------------------------
    c.JupyterHub.template_paths = [str(TEMPLATES)]
    c.JupyterHub.template_vars = template_vars(ctx, spec, raw)
    if spec.branding.logo:
        logo = Path(raw["catalog_root"]) / spec.branding.logo
        if logo.is_file():
            c.JupyterHub.logo_file = str(logo)  # served at {base}hub/logo, which page.html already shows

    # -- services, roles, groups ------------------------------------------------------------------------------
    # The bulk enrolment endpoint and its scope (imported here: the module needs JupyterHub, present in the hub).
    from hubfleet.enrol.endpoint import register

    register(c)
    c.JupyterHub.services = services(spec, raw)
    c.JupyterHub.load_roles = roles(spec)
    c.JupyterHub.load_groups = groups(ctx)


OIDC_SECRET_ENV = "HUBFLEET_OIDC_CLIENT_SECRET"


def portal_urls(raw: dict[str, Any]) -> tuple[str, str]:
    """(portal URL the browser sees, portal URL this hub process reaches) for the embedded provider.

    Both default to ``front_door`` + ``/portal``. The fleet names them apart: the browser goes to the portal's host
    (``http://portal.localhost:PORT``), which the hub process may not resolve (glibc does not know ``*.localhost``),
    so its server-to-server calls go to the front door by address (``portal_internal_url``, ``http://127.0.0.1:PORT``).
    """
    public = str(raw.get("portal_url") or str(raw.get("front_door", "")).rstrip("/") + "/portal").rstrip("/")
    return public, str(raw.get("portal_internal_url") or public).rstrip("/")


def oauth_settings(spec: HubSpec, raw: dict[str, Any], discover: Any = None) -> dict[str, Any]:
    """GenericOAuthenticator settings for ``embedded`` (the portal) and ``oidc`` (the institution's provider).

    One code path: only the endpoints and the client credentials differ. ``discover(issuer) -> dict`` fetches the
    provider's metadata for ``oidc`` (read at hub start; a new IdP endpoint needs a hub restart, like any IdP client).
    """
    auth = spec.auth or {"type": "embedded"}
    callback = public_hub_url(raw) + "hub/oauth_callback"
    common = {
        "oauth_callback_url": callback,
        "username_claim": auth.get("username_claim", "preferred_username"),
        "groups_claim": auth.get("groups_claim", "groups"),
        "scope": ["openid", "profile", "groups"],
        "manage_groups": False,  # see authenticator.py: the sync owns groups; the claim only enrols idp groups
        "enable_pkce": True,
        "login_service": spec.branding.name,
        "basic_auth": True,  # client_secret_basic, the method every OIDC provider must support
        # Tornado's 20 s default fails a sign-in with a 500 when a busy one-VM workshop starves the provider for a
        # moment (seen at load 10 on 2 cores); a slow token answer must cost a wait, not the student's login.
        "http_request_kwargs": {"connect_timeout": 30, "request_timeout": 90},
    }
    if auth["type"] == "embedded":
        public, internal = portal_urls(raw)
        secret_file = Path(raw["hub_dir"]) / "oauth_client_secret"
        return {
            **common,
            "client_id": spec.name,
            # Generated once, 0600, never regenerated; the portal reads the same file to register this hub.
            "client_secret": ensure_secret(secret_file),
            "authorize_url": public + "/oauth/authorize",  # the browser goes here
            "token_url": internal + "/oauth/token",  # the hub process calls these
            "userdata_url": internal + "/oauth/userinfo",
            # Signing out of a hub signs out of the portal too: on a shared PC the next person must not inherit it.
            "logout_redirect_url": public + "/logout",
        }
    if auth["type"] == "oidc":
        meta = (discover or _discover)(auth["issuer"])
        secret = os.environ.get(OIDC_SECRET_ENV, "")
        if not secret:
            raise RuntimeError(f"auth type oidc: set {OIDC_SECRET_ENV} to the client secret registered with {auth['issuer']}")
        out = {
            **common,
            "client_id": auth.get("client_id", "hubfleet"),
            "client_secret": secret,
            "authorize_url": meta["authorization_endpoint"],
            "token_url": meta["token_endpoint"],
            "userdata_url": meta["userinfo_endpoint"],
        }
        if meta.get("end_session_endpoint"):
            out["logout_redirect_url"] = meta["end_session_endpoint"]
        return out
    raise ValueError(f"auth type {auth['type']} is not an OAuth2 provider")


def _discover(issuer: str) -> dict[str, Any]:
    import httpx

    # ref: https://openid.net/specs/openid-connect-discovery-1_0.html#ProviderConfig
    resp = httpx.get(issuer.rstrip("/") + "/.well-known/openid-configuration", timeout=15)
    resp.raise_for_status()
    return resp.json()


def ldap_settings(auth: dict[str, Any]) -> dict[str, Any]:
    """``auth: {type: ldap}`` -> ldapauthenticator.LDAPAuthenticator settings (bind as the user)."""
    url = urlsplit(auth["server"])
    ssl = url.scheme == "ldaps"
    out: dict[str, Any] = {
        "server_address": url.hostname or auth["server"],
        "server_port": url.port or (636 if ssl else 389),
        "use_ssl": ssl,
        "user_attribute": auth.get("user_attribute", "uid"),
        "user_search_base": auth["base_dn"],
    }
    if auth.get("bind_dn_template"):
        out["bind_dn_template"] = [auth["bind_dn_template"]]
    else:
        # No template: find the user's DN by searching the base for user_attribute=username, then bind as it.
        out["lookup_dn"] = True
    return out


def lti13_settings(auth: dict[str, Any]) -> dict[str, Any]:
    """``auth: {type: lti13}`` -> ltiauthenticator.lti13.auth.LTI13Authenticator settings (the LMS is the IdP)."""
    return {
        "issuer": auth["issuer"],
        "client_id": {auth["client_id"]},
        "authorize_url": auth["authorize_url"],
        "jwks_endpoint": auth["jwks_url"],
    }


_AUTH_CLASSES = {
    "embedded": "HubfleetOAuthenticator",
    "oidc": "HubfleetOAuthenticator",
    "ldap": "HubfleetLDAPAuthenticator",
    "lti13": "HubfleetLTI13Authenticator",
}


def authenticator(c: Any, spec: HubSpec, raw: dict[str, Any], hub_json: str, discover: Any = None) -> str:
    """Set the authenticator for the catalog's auth type on config ``c``; return the class name used."""
    auth = spec.auth or {"type": "embedded"}
    name = _AUTH_CLASSES[auth["type"]]
    c.JupyterHub.authenticator_class = f"hubfleet.backends.local.authenticator.{name}"
    settings = getattr(c, name)
    settings.hub_json = hub_json
    if auth["type"] in ("embedded", "oidc"):
        values = oauth_settings(spec, raw, discover)
        # Straight to the provider: with the portal's session the student never sees a second login page.
        c.Authenticator.auto_login = True
    elif auth["type"] == "ldap":
        values = ldap_settings(auth)
    else:
        values = lti13_settings(auth)
    for key, value in values.items():
        setattr(settings, key, value)
    return name


def services(spec: HubSpec, raw: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"name": "hubfleet", "api_token": read_secret(raw["service_token_file"])}]
    if spec.culling.enabled:
        cmd = [
            sys.executable, "-m", "jupyterhub_idle_culler",
            f"--timeout={spec.culling.idle_timeout}",
            f"--cull-every={spec.culling.every}",
        ]  # fmt: skip
        if spec.culling.max_age:
            cmd.append(f"--max-age={spec.culling.max_age}")
        # Hub-managed: the hub starts it, restarts it if it dies and stops it on shutdown.
        # ref: https://jupyterhub.readthedocs.io/en/stable/reference/services.html#hub-managed-services
        out.append({"name": "idle-culler", "command": cmd})
    return out


def roles(spec: HubSpec) -> list[dict[str, Any]]:
    out = [{"name": "hubfleet", "description": "hubfleet's enrolment sync and status", "scopes": HUBFLEET_SCOPES,
            "services": ["hubfleet"]}]  # fmt: skip
    if spec.culling.enabled:
        out.append({"name": "idle-culler", "description": "Stops idle servers", "scopes": CULLER_SCOPES,
                    "services": ["idle-culler"]})  # fmt: skip
    for grant in spec.roles:
        out.append({"name": grant.name, "description": grant.description, "scopes": list(grant.scopes),
                    "groups": list(grant.groups), "users": list(grant.users)})  # fmt: skip
    return out


def groups(ctx: HubContext) -> dict[str, dict[str, list[str]]]:
    """Seed the presentation groups from members.json at start, so the planner's group-filtered roles (tutors see
    their students) work before the enrolment sync first runs. load_groups only adds; the sync removes.
    ref: https://jupyterhub.readthedocs.io/en/stable/reference/api/app.html#jupyterhub.app.JupyterHub.load_groups"""
    out: dict[str, dict[str, list[str]]] = {}
    members = ctx.members()
    for pres in ctx.spec.presentations:
        by_role = {"student": pres.group, "tutor": pres.tutor_group, "instructor": pres.instructor_group}
        found: dict[str, set[str]] = {g: set() for g in by_role.values()}
        found[pres.tutor_group].update(pres.tutors)
        found[pres.instructor_group].update(pres.instructors)
        for user, keys in members.items():
            role = keys.get(pres.key)
            if role in by_role:
                found[by_role[role]].add(user)
        for group, users in found.items():
            out[group] = {"users": sorted(users)}
    return out


def template_vars(ctx: HubContext, spec: HubSpec, raw: dict[str, Any]) -> dict[str, Any]:
    """Variables for templates/*.html. Callables get the current user (or None) on every page render, so what
    comes from hub.json (course list, phases) is live; branding is startup-only (see :func:`restart_needed`)."""

    def read_only(user: Any) -> list[str]:
        if user is None:
            return []
        mine = ctx.roles_of(user.name)
        return [p.key for p in ctx.spec.presentations if p.key in mine and ctx.read_only_for(user.name, p.key)]

    def staff_only(user: Any) -> list[str]:
        # Provisioned presentations: the team is in, students are not yet. Shown to the team as a reminder.
        if user is None:
            return []
        return [p.key for p in ctx.spec.presentations if p.phase == Phase.provisioned and ctx.is_team(user.name, p.key)]

    return {
        "hubfleet_name": spec.branding.name,
        "hubfleet_primary_color": spec.branding.primary_color,
        "hubfleet_login_message": spec.branding.login_message or "",
        "hubfleet_demo_mode": lambda user: ctx.demo_mode,
        "hubfleet_front_door": lambda user: ctx.front_door,
        "hubfleet_courses": lambda user: [f"{p.key}: {p.title}" for p in ctx.spec.presentations],
        "hubfleet_read_only": read_only,
        # When each read-only presentation is archived, for the banner ("until 10 Jul 2027").
        "hubfleet_archive_on": lambda user: {
            p.key: f"{p.archive_on.day} {p.archive_on:%b %Y}" for p in ctx.spec.presentations
        },
        "hubfleet_staff_only": staff_only,
    }


# hub.json keys and spec fields a running hub only reads at startup. Everything else is re-read live by
# HubContext (phases, team lists, profiles, storage, seeding, lab config, demo mode, members.json).
_STARTUP_KEYS = ("hub_dir", "hub_port", "proxy_port", "proxy_api_port", "chp", "cookie_secret_file", "proxy_token_file",
                 "service_token_file", "start_proxy", "cleanup_servers", "log_level", "singleuser_python",
                 "front_door", "hub_url", "portal_url", "portal_internal_url")  # fmt: skip
_STARTUP_SPEC = ("name", "base_path", "admins", "roles", "culling", "branding", "auth")


def restart_needed(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Must a running hub restart to see ``new`` hub.json? (The fleet side asks before restarting, since a restart
    drops every websocket; students' servers survive it, see cleanup_servers.)"""
    if old is None:
        return True

    def startup(doc: dict[str, Any]) -> tuple:
        spec = doc.get("spec", {})
        return tuple(doc.get(k) for k in _STARTUP_KEYS) + tuple(json.dumps(spec.get(k), sort_keys=True) for k in _STARTUP_SPEC)

    return startup(old) != startup(new)
