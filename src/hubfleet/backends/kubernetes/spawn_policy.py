"""The Python every hub runs from ``hub.extraConfig``: who may start which profile, and where homes live.

The chart cannot express either rule in values, so this one template is rendered into each hub's values
and also ``exec``'d by the tests with fake spawners, users and pods (``tests/test_k8s_render.py``).

It does three things, all keyed by data the renderer injects as JSON (``HUBFLEET``):

1. ``profile_list`` becomes a callable that keeps only the profiles whose groups the user is in.
   # ref: https://github.com/jupyterhub/zero-to-jupyterhub-k8s/issues/1734 (per-group profile lists)
   # ref: https://jupyterhub-kubespawner.readthedocs.io/en/latest/spawner.html (profile_list may be callable)
2. ``pre_spawn_hook`` refuses, with HTTP 403, a profile the server's owner may not use. The filtered
   list alone is not enough: kubespawner falls back to the base config when the filtered list is empty,
   and a REST client can post any ``user_options``. The hook runs before kubespawner applies the profile.
3. ``modify_pod_hook`` pins the subPath of every mount on the shared personal store to hubfleet's own
   username escaping (``hubfleet.catalog.naming.storage_name``, inlined below because the hub image
   does not have hubfleet installed). Why not kubespawner's ``{username}``: kubespawner 7 (z2jh 4)
   replaced its slug scheme ("escape" -> "safe"), and on a static store the subPath *is* the identity
   of a student's files, so that upgrade moved homes. Our escaping is fixed, shared with the local
   backend and the archiver, and a test keeps the inlined copy equal to the library one. The values still
   say ``{username}`` so that, should the hook ever not run, each user still gets a directory of their own.
   # ref: https://z2jh.jupyter.org/en/stable/administrator/upgrading/upgrade-3-to-4.html
   Dynamic PVC names (per-presentation layout) are left to kubespawner: ``remember_pvc_name`` keeps a
   created claim's name in the spawner state, and the archiver finds claims by label and annotation.

The service token of hubfleet's own service comes from an env var set from a Secret hubfleet owns (never
from values): GitOps tools cannot run Helm's ``lookup``, so a chart-generated token would change on every
Argo CD sync. # ref: https://z2jh.jupyter.org/en/stable/resources/reference.html#hub-services
"""

from __future__ import annotations

import json

# The code below is what runs inside the hub. Keep it dependency-free beyond tornado (JupyterHub's own).
HUB_CONFIG = r'''# --- hubfleet spawn policy (generated; do not edit by hand) ---
import json as _json
import os as _os

from tornado import web as _web

HUBFLEET = _json.loads(__HUBFLEET_DATA__)


def hubfleet_escape(name):
    """Same as hubfleet.catalog.naming.storage_name (injective): keep [a-z0-9], write other bytes as -xx."""
    import hashlib as _hashlib
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


def hubfleet_allowed(user):
    """Profile slugs the user may start: those shared with one of their groups; admins may start all."""
    groups = {g.name for g in getattr(user, "groups", [])}
    if getattr(user, "admin", False):
        return [p["slug"] for p in HUBFLEET["profiles"]]
    return [p["slug"] for p in HUBFLEET["profiles"] if groups & set(p["groups"])]


_HUBFLEET_PROFILES = list(c.KubeSpawner.get("profile_list") or [])  # singleuser.profileList, set by z2jh


def hubfleet_profile_list(spawner):
    allowed = set(hubfleet_allowed(spawner.user))
    return [p for p in _HUBFLEET_PROFILES if p.get("slug") in allowed]


def hubfleet_pre_spawn_hook(spawner):
    allowed = hubfleet_allowed(spawner.user)
    if not allowed:
        raise _web.HTTPError(403, "%s is not enrolled on any presentation of this hub" % spawner.user.name)
    slug = (spawner.user_options or {}).get("profile")
    if slug is not None and slug not in allowed:
        raise _web.HTTPError(403, "profile %r is not available to %s" % (slug, spawner.user.name))


def hubfleet_modify_pod_hook(spawner, pod):
    """Pin the user segment of every personal-store subPath (``home/<user>/...``) to hubfleet's escaping."""
    store = HUBFLEET["personal_store"]
    if not store:
        return pod
    containers = list(pod.spec.containers or []) + list(pod.spec.init_containers or [])
    for container in containers:
        for mount in container.volume_mounts or []:
            parts = (mount.sub_path or "").split("/")
            if mount.name == store["volume"] and len(parts) >= 2 and parts[0] == store["prefix"]:
                parts[1] = hubfleet_escape(spawner.user.name)
                mount.sub_path = "/".join(parts)
    return pod


c.KubeSpawner.profile_list = hubfleet_profile_list
c.KubeSpawner.pre_spawn_hook = hubfleet_pre_spawn_hook
c.KubeSpawner.modify_pod_hook = hubfleet_modify_pod_hook

# hubfleet's service: the token comes from our Secret through hub.extraEnv, never from values.
c.JupyterHub.services = [s for s in (c.JupyterHub.get("services") or []) if s.get("name") != "hubfleet"] + [
    {"name": "hubfleet", "api_token": _os.environ[HUBFLEET["service_token_env"]]}
]
'''

PLACEHOLDER = "__HUBFLEET_DATA__"


def hub_config(data: dict) -> str:
    """The extraConfig snippet with ``data`` embedded as a JSON string literal (safe: repr of a str)."""
    return HUB_CONFIG.replace(PLACEHOLDER, repr(json.dumps(data, sort_keys=True, separators=(",", ":"))), 1)


def policy_data(profiles: list[dict], personal_store: dict | None, token_env: str) -> dict:
    """What the hub code needs: each profile's slug and groups, which mounts sit on the personal store
    (``{"volume": "home", "prefix": "home"}``: subPaths there are ``home/<user>/...``), the token env var."""
    return {
        "profiles": [{"slug": p["slug"], "groups": list(p["groups"])} for p in profiles],
        "personal_store": personal_store,
        "service_token_env": token_env,
    }
