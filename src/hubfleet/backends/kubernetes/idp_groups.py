"""Identity-provider groups on a Kubernetes hub: the local backend's rule, in the hub's ``hub.extraConfig``.

The rule (both backends; ``backends/local/authenticator.py`` for the local one): enrolment sync owns a hub's group
memberships; an identity-provider group named by a presentation's ``idp_group`` enrolment source only *adds* its
members to that presentation's hub group when they log in. A login never removes a group.

So ``manage_groups`` stays off. With it on, JupyterHub sets every user's groups from the token at each login and
each auth refresh (``user.sync_groups``) and refuses group edits through the REST API, so a student's course
groups written by ``hubfleet enrol sync`` vanished at their next login. Off, oauthenticator refuses
``allowed_groups`` and ``claim_groups_key`` (they require it), so this snippet does both jobs itself:

- ``HubfleetOAuthenticator.check_allowed`` admits whoever oauthenticator admits (existing users: the sync created
  them) plus anyone whose token carries one of this hub's idp groups;
- ``post_auth_hook`` adds that user to the hub groups those idp groups map to, in the hub's own database, as the
  REST API's group handler does, before the login completes (so the spawn that follows already sees them).

# ref: https://oauthenticator.readthedocs.io/en/latest/reference/api/gen/oauthenticator.oauth2.html#oauthenticator.oauth2.OAuthenticator.manage_groups
# ref: https://github.com/jupyterhub/jupyterhub/blob/5.5.0/jupyterhub/handlers/base.py (auth_to_user: sync_groups)
"""

from __future__ import annotations

import json

from hubfleet.plan.spec import HubSpec

# Runs inside the hub (JupyterHub 5.5, oauthenticator 17.4 in the z2jh 4.4.0 image); only what those ship.
HUB_CONFIG = r'''# --- hubfleet identity-provider groups (generated; do not edit by hand) ---
import json as _json
import unicodedata as _unicodedata

from jupyterhub import orm as _orm
from jupyterhub.utils import maybe_future as _maybe_future
from oauthenticator.generic import GenericOAuthenticator as _GenericOAuthenticator

HUBFLEET_IDP = _json.loads(__HUBFLEET_IDP__)


def hubfleet_idp_hub_groups(authenticator, authentication):
    """The hub groups the token's idp groups map to (sorted, no duplicates)."""
    user_info = (authentication.get("auth_state") or {}).get(authenticator.user_auth_state_key) or {}
    claimed = user_info.get(HUBFLEET_IDP["claim"]) or []
    if isinstance(claimed, str):
        claimed = [claimed]
    return sorted({HUBFLEET_IDP["groups"][g] for g in claimed if g in HUBFLEET_IDP["groups"]})


class HubfleetOAuthenticator(_GenericOAuthenticator):
    """GenericOAuthenticator that also admits members of this hub's identity-provider groups."""

    def normalize_username(self, username):
        # NFC as hubfleet.catalog.naming.normalise_username: an IdP's decomposed "e + U+0301" and a roster's
        # composed "é" are one user (JupyterHub itself only lower-cases), so one storage name and one enrolment.
        return _unicodedata.normalize("NFC", super().normalize_username(username))

    async def check_allowed(self, username, auth_model):
        if await super().check_allowed(username, auth_model):
            return True
        return bool(auth_model and hubfleet_idp_hub_groups(self, auth_model))


async def hubfleet_idp_post_auth_hook(authenticator, handler, authentication):
    """Add the user to the hub groups of their idp groups; never remove one."""
    joined = hubfleet_idp_hub_groups(authenticator, authentication)
    if not joined:
        return authentication
    user = handler.find_user(authentication["name"])
    if user is None:  # first login: create them as JupyterHub's login would (allowed_users, add_user)
        user = handler.user_from_username(authentication["name"])
        await _maybe_future(authenticator.add_user(user))
    db = handler.db
    added = []
    for name in joined:
        group = _orm.Group.find(db, name)
        if group is None:
            group = _orm.Group(name=name)
            db.add(group)
        if group not in user.orm_user.groups:
            user.orm_user.groups.append(group)
            added.append(name)
    db.commit()
    if added:
        authenticator.log.info("%s enrolled through identity-provider groups into %s", user.name, ", ".join(added))
    return authentication


c.JupyterHub.authenticator_class = HubfleetOAuthenticator
c.Authenticator.post_auth_hook = hubfleet_idp_post_auth_hook
'''

PLACEHOLDER = "__HUBFLEET_IDP__"


def targets(hub: HubSpec) -> dict[str, str]:
    """``{idp group: hub group}`` for the hub's presentations with an ``idp_group`` enrolment source (the role's
    group: students, tutors or instructors), as the local authenticator's ``idp_group_targets``."""
    out = {}
    for pres in hub.presentations:
        by_role = {"student": pres.group, "tutor": pres.tutor_group, "instructor": pres.instructor_group}
        for source in pres.enrolment:
            if source.get("idp_group"):
                out[source["idp_group"]] = by_role[source.get("role", "student")]
    return out


def hub_config(hub: HubSpec, claim: str) -> str:
    """The extraConfig snippet for an OAuth hub, ``claim`` being the userinfo claim that lists the user's groups."""
    data = {"claim": claim, "groups": targets(hub)}
    return HUB_CONFIG.replace(PLACEHOLDER, repr(json.dumps(data, sort_keys=True, separators=(",", ":"))), 1)
