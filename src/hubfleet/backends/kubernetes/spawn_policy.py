"""The Python every hub runs from ``hub.extraConfig``: who may start which profile, and where homes live.

The chart cannot express either rule in values, so this one template is rendered into each hub's values
and also ``exec``'d by the tests: with fake spawners (``tests/test_k8s_render.py``) and with real KubeSpawner 7.0.0
building pods in-process (``tests/test_k8s_spawn_names.py``).

It does three things, all keyed by data the renderer injects as JSON (``HUBFLEET``):

1. ``profile_list`` becomes a callable that keeps only the profiles whose groups the user is in.
   # ref: https://github.com/jupyterhub/zero-to-jupyterhub-k8s/issues/1734 (per-group profile lists)
   # ref: https://jupyterhub-kubespawner.readthedocs.io/en/latest/spawner.html (profile_list may be callable)
2. Refusals never count as spawn failures (z2jh's ``consecutiveFailureLimit: 5`` makes the hub exit after five;
   issue 9 item 2). A user in no profile group is offered nothing: the default ``user`` role loses ``self``
   and a role on the profiles' groups gives it back, so JupyterHub's own scope check answers 403 before any
   spawn starts. A requested profile outside the user's (only a hand-made request can name one) is dropped
   by the callable and by ``pre_spawn_hook`` (which runs before kubespawner applies the profile), so the
   user's own default starts instead. ``pre_spawn_hook`` still refuses a user with no profile as a backstop.
3. The same callable makes each profile personal: ``{hubfleet_account}`` and ``{hubfleet_storage}`` in its
   ``kubespawner_override`` become the user's Unix account (``hubfleet.catalog.naming.unix_account``) and storage
   name (``storage_name``), inlined below because the hub image does not have hubfleet installed; tests keep the
   copies equal to the library for every username.
   Why not kubespawner's ``{username}``: kubespawner 7 expands it with its own slug ("safe" scheme, e.g.
   ``alice-smith---63425827``) in volumes, mounts and env, JupyterHub expands ``notebook_dir`` with the raw name,
   and ``working_dir`` is expanded only when the spawner is constructed, never from a profile, so the home mount,
   the root dir and the working dir disagreed for any escaped name. And z2jh 3 -> 4 changed the slug scheme: on
   a static store the subPath *is* the identity of a student's files, so that upgrade moved homes. Ours is fixed
   and shared with the local backend and the archiver.
   # ref: https://z2jh.jupyter.org/en/stable/administrator/upgrading/upgrade-3-to-4.html
   # ref: https://github.com/jupyterhub/kubespawner/blob/7.0.0/kubespawner/spawner.py (_expand_user_properties)
   The notebook user inside the container is the Unix account (docker-stacks' start.sh renames jovyan to NB_USER
   and makes /home/NB_USER its home): a valid login for usermod for every username (letter first, at most 32
   characters), which a storage name is not (``élodie`` -> ``-c3-a9lodie``; long e-mail logins). The files stay
   at subPath ``home/<storage name>``. The placeholders are not kubespawner's, so a profile applied without this
   callable fails the spawn (KeyError) instead of mounting someone else's directory.
   Dynamic claims (per-presentation layout) are named by kubespawner's own template expansion, per profile (a hub
   with two presentations has two claims per student); the archiver finds claims by label and annotation.

The service token of hubfleet's own service comes from an env var set from a Secret hubfleet owns (never
from values): GitOps tools cannot run Helm's ``lookup``, so a chart-generated token would change on every
Argo CD sync. # ref: https://z2jh.jupyter.org/en/stable/resources/reference.html#hub-services
"""

from __future__ import annotations

import json

# The code below is what runs inside the hub. Keep it dependency-free beyond tornado (JupyterHub's own).
HUB_CONFIG = r'''# --- hubfleet spawn policy (generated; do not edit by hand) ---
import hashlib as _hashlib
import json as _json
import os as _os

from tornado import web as _web

HUBFLEET = _json.loads(__HUBFLEET_DATA__)


def hubfleet_escape(name):
    """Same as hubfleet.catalog.naming.storage_name (injective): keep [a-z0-9], write other bytes as -xx."""
    out = []
    for ch in name:
        if ("a" <= ch <= "z") or ("0" <= ch <= "9"):
            out.append(ch)
        else:
            out.extend("-%02x" % b for b in ch.encode())
    out = "".join(out)
    if len(out) > 128:
        out = "%s_%s" % (out[:103], _hashlib.sha256(name.encode()).hexdigest()[:24])
    return out


def hubfleet_account(name):
    """Same as hubfleet.catalog.naming.unix_account: the fleet's prefix + storage name, at most 32 characters."""
    prefix, stored = HUBFLEET["account_prefix"], hubfleet_escape(name)
    if len(prefix) + len(stored) <= 32:
        return prefix + stored
    keep = 32 - len(prefix) - 9
    return "%s%s_%s" % (prefix, stored[:keep], _hashlib.sha256(name.encode()).hexdigest()[:8])


def hubfleet_personal(value, name):
    """``value`` (a profile, or any part of one) with the user's account and storage name filled in."""
    if isinstance(value, str):
        return value.replace("{hubfleet_account}", hubfleet_account(name)).replace(
            "{hubfleet_storage}", hubfleet_escape(name))
    if isinstance(value, list):
        return [hubfleet_personal(v, name) for v in value]
    if isinstance(value, dict):
        return {k: hubfleet_personal(v, name) for k, v in value.items()}
    return value


def hubfleet_allowed(user):
    """Profile slugs the user may start: those shared with one of their groups; admins may start all."""
    groups = {g.name for g in getattr(user, "groups", [])}
    if getattr(user, "admin", False):
        return [p["slug"] for p in HUBFLEET["profiles"]]
    return [p["slug"] for p in HUBFLEET["profiles"] if groups & set(p["groups"])]


_HUBFLEET_PROFILES = list(c.KubeSpawner.get("profile_list") or [])  # singleuser.profileList, set by z2jh


def hubfleet_keep_own_profile(spawner, allowed):
    """Drop a requested profile outside ``allowed`` (only a hand-made request can name one: the form never
    offers it), so the server starts with the user's own default profile. Refusing instead would raise during
    the spawn, which counts as a spawn failure, and z2jh's consecutiveFailureLimit makes the hub exit after 5
    of them (issue 9 item 2)."""
    options = getattr(spawner, "user_options", None)
    if isinstance(options, dict) and options.get("profile") not in (None, *allowed):
        spawner.log.warning("hubfleet: %s asked for profile %r, which is not theirs; starting their default",
                            spawner.user.name, options["profile"])
        spawner.user_options = {k: v for k, v in options.items()
                                if k != "profile" and not k.startswith("profile-option-")}


def hubfleet_profile_list(spawner):
    """The profiles the server's owner may start (KubeSpawner reads this before the requested profile)."""
    allowed = set(hubfleet_allowed(spawner.user))
    hubfleet_keep_own_profile(spawner, allowed)
    profiles = [hubfleet_personal(p, spawner.user.name) for p in _HUBFLEET_PROFILES if p.get("slug") in allowed]
    for profile in profiles:
        override = profile.get("kubespawner_override") or {}
        if "pvc_name_template" in override:
            # kubespawner names the claim it creates (pvc_name) from the hub-wide template, once, when the spawner
            # is built; the pod mounts the profile's. Name it from the profile's, as kubespawner itself would.
            # ref: https://github.com/jupyterhub/kubespawner/blob/7.0.0/kubespawner/spawner.py (__init__: pvc_name)
            override["pvc_name"] = spawner._expand_user_properties(override["pvc_name_template"])
    return profiles


def hubfleet_pre_spawn_hook(spawner):
    """Runs before KubeSpawner's start: drop a foreign profile here too. The refusal is a backstop that should
    never fire: users in no profile group have no ``servers`` scope (see the roles below), so JupyterHub
    refuses them before a spawn starts; a refusal from here would count as a spawn failure."""
    allowed = hubfleet_allowed(spawner.user)
    if not allowed:
        raise _web.HTTPError(403, "%s is not enrolled on any presentation of this hub" % spawner.user.name)
    hubfleet_keep_own_profile(spawner, allowed)


c.KubeSpawner.profile_list = hubfleet_profile_list
c.KubeSpawner.pre_spawn_hook = hubfleet_pre_spawn_hook

# Offer nothing to refuse: only members of a profile's group may start a server. JupyterHub's default `user`
# role grants every user `self` (which includes starting their own server); here it keeps only reading
# oneself, and a role on the profiles' groups gives `self` back. A user in no group then gets 403 from
# JupyterHub's scope check before any spawn starts, which never counts towards consecutiveFailureLimit.
# Admins keep everything through the admin role. # ref: https://jupyterhub.readthedocs.io/en/stable/rbac/roles.html#default-roles
_HUBFLEET_GROUPS = sorted({g for p in HUBFLEET["profiles"] for g in p["groups"]})
c.JupyterHub.load_roles = [r for r in (c.JupyterHub.get("load_roles") or [])
                           if r.get("name") not in ("user", "hubfleet-enrolled")] + [
    {"name": "user", "description": "Any signed-in user: may read their own account, nothing more",
     "scopes": ["read:users!user"]},
    {"name": "hubfleet-enrolled", "description": "Enrolled users: start and use their own server",
     "scopes": ["self"], "groups": _HUBFLEET_GROUPS},
]

# hubfleet's service: the token comes from our Secret through hub.extraEnv, never from values.
c.JupyterHub.services = [s for s in (c.JupyterHub.get("services") or []) if s.get("name") != "hubfleet"] + [
    {"name": "hubfleet", "api_token": _os.environ[HUBFLEET["service_token_env"]]}
]
'''

PLACEHOLDER = "__HUBFLEET_DATA__"


def hub_config(data: dict) -> str:
    """The extraConfig snippet with ``data`` embedded as a JSON string literal (safe: repr of a str)."""
    return HUB_CONFIG.replace(PLACEHOLDER, repr(json.dumps(data, sort_keys=True, separators=(",", ":"))), 1)


ACCOUNT = "{hubfleet_account}"  # in a profile: the user's Unix account (the notebook user, /home/<account>)
STORAGE = "{hubfleet_storage}"  # in a profile: the user's storage name (subPaths on the personal store)


def policy_data(profiles: list[dict], token_env: str, account_prefix: str) -> dict:
    """What the hub code needs: each profile's slug and groups, the fleet's account prefix, the token env var."""
    return {
        "profiles": [{"slug": p["slug"], "groups": list(p["groups"])} for p in profiles],
        "account_prefix": account_prefix,
        "service_token_env": token_env,
    }
