"""How a local hub knows who is at the keyboard, and whether they belong here.

Identity and admission are separate:

* **Identity** comes from the fleet's ``auth`` setting. ``embedded`` and ``oidc`` both run the one OAuth2 /
  OpenID Connect code path, :class:`HubfleetOAuthenticator` (oauthenticator's ``GenericOAuthenticator``): with
  ``embedded`` the provider is the fleet's own portal (``hubfleet.web.oidc``), with ``oidc`` the institution's
  (Keycloak, Entra ID, CILogon...). ``ldap`` and ``lti13`` use the upstream authenticators with the same admission
  mixed in. The hub never sees a password in the embedded case: the portal checks it, once, for every hub.
* **Admission** is :class:`AdmissionMixin`: ``membership.HubContext`` decides from the hub's enrolment (the groups
  enrolment sync wrote, members.json before the first sync) and the presentation phases. Someone who is not
  admitted gets the 403 page that says why and links to the portal where their own courses are.

``manage_groups`` stays off. With it on, oauthenticator owns every user's groups, sets them from the token at each
login, and JupyterHub refuses group edits through the REST API, which is exactly what enrolment sync uses
(CSV/LDAP/static rosters). Instead the token's groups claim is used for one thing only, "auth affinity" enrolment:
a token carrying a presentation's ``idp_group`` adds the user to that presentation's group at login, through the
hub's own REST API (the same way the sync writes), before admission is decided.
ref: https://oauthenticator.readthedocs.io/en/latest/reference/api/gen/oauthenticator.oauth2.html#oauthenticator.oauth2.OAuthenticator.manage_groups
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import httpx
from jupyterhub.auth import Authenticator
from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from traitlets import Unicode

from hubfleet.backends.local.membership import HubContext
from hubfleet.backends.local.secrets import read_secret

__all__ = ["AdmissionMixin", "HubfleetOAuthenticator", "NotAdmitted"]


class NotAdmitted(web.HTTPError):
    """403 with a message meant for the person at the keyboard; rendered by templates/403.html."""

    def __init__(self, username: str, reason: str) -> None:
        super().__init__(403, "%s not admitted: %s", username, reason)
        # write_error shows jupyterhub_message instead of the log message. ref: jupyterhub/handlers/base.py write_error
        self.jupyterhub_message = reason


class AdmissionMixin(Authenticator):
    """Enrolment- and phase-based admission for any JupyterHub authenticator (mixed in before the upstream class).

    An Authenticator subclass itself (not a plain mixin) so traitlets registers its config traits.
    """

    hub_json = Unicode(config=True, help="Path of this hub's hub.json (written by the fleet side).")

    _context: HubContext | None = None

    @property
    def context(self) -> HubContext:
        if self._context is None or str(self._context.path) != self.hub_json:
            self._context = HubContext(Path(self.hub_json))
        return self._context

    async def check_allowed(self, username, auth_model=None):  # noqa: ANN001 - JupyterHub's signature
        """Called only after the identity is proven, so saying *why* leaks nothing to a stranger.

        JupyterHub documents raising ``HTTPError(403)`` from here to customise the message.
        ref: https://jupyterhub.readthedocs.io/en/stable/reference/api/auth.html#jupyterhub.auth.Authenticator.check_allowed
        """
        await self.enrol_from_token(username, auth_model or {})
        admission = self.context.admission(username)
        if not admission.allowed:
            raise NotAdmitted(username, admission.reason)
        return True

    async def enrol_from_token(self, username: str, auth_model: dict) -> list[str]:
        """Hook for identity sources that carry group claims; nothing to do for the others."""
        return []

    async def refresh_user(self, user, handler=None, **kwargs):  # noqa: ANN001
        """Re-check admission every ``auth_refresh_age`` seconds and before each spawn (``refresh_pre_spawn``).

        A user who is no longer admitted gets the 403 page with the reason, raised here, rather than ``False``
        ("log in again"): the login would only end at the same 403, and in JupyterHub 6.1 a ``False`` on a
        cookie-authenticated spawn fails with a 500 (``BaseHandler.refresh_auth`` reads ``_token_authenticated``,
        which only token authentication sets). ref: jupyterhub/handlers/base.py refresh_auth
        ref: https://jupyterhub.readthedocs.io/en/stable/reference/authenticators.html#authentication-state
        """
        if user.name in self.admin_users:
            return True
        admission = self.context.admission(user.name)
        if not admission.allowed:
            raise NotAdmitted(user.name, admission.reason)
        return True


class HubfleetOAuthenticator(AdmissionMixin, GenericOAuthenticator):
    """GenericOAuthenticator + hubfleet admission + idp_group enrolment at login (``embedded`` and ``oidc``)."""

    groups_claim = Unicode("groups", config=True, help="Userinfo claim listing the user's identity-provider groups.")

    def idp_group_targets(self) -> dict[str, tuple[str, str]]:
        """``{idp group: (hub group, role)}`` for this hub's presentations with an ``idp_group`` enrolment source."""
        out: dict[str, tuple[str, str]] = {}
        for pres in self.context.spec.presentations:
            by_role = {"student": pres.group, "tutor": pres.tutor_group, "instructor": pres.instructor_group}
            for source in pres.enrolment:
                if source.get("idp_group"):
                    role = source.get("role", "student")
                    out[source["idp_group"]] = (by_role[role], role)
        return out

    async def enrol_from_token(self, username: str, auth_model: dict) -> list[str]:
        """Add the user to the groups their token's idp groups map to; return the hub groups joined.

        Only adds: leaving an idp group is seen at the next login (no longer admitted through it) and by the
        enrolment sync, which owns removals. Written through the hub's REST API with hubfleet's service token, so
        the hub's database has one writer path for group membership.
        """
        user_info = (auth_model.get("auth_state") or {}).get(self.user_auth_state_key) or {}
        claimed = user_info.get(self.groups_claim) or []
        if isinstance(claimed, str):
            claimed = [claimed]
        targets = self.idp_group_targets()
        joined = sorted({targets[g][0] for g in claimed if g in targets})
        if not joined:
            return []
        ctx = self.context
        mine = ctx.hub_groups(username) or set()
        missing = [g for g in joined if g not in mine]
        if not missing:
            return joined
        raw = ctx.raw
        api = f"http://127.0.0.1:{raw['hub_port']}{ctx.spec.base_path}hub/api/"
        headers = {"Authorization": f"token {read_secret(raw['service_token_file'])}"}
        async with httpx.AsyncClient(base_url=api, headers=headers, timeout=30) as client:
            exists = await client.get(f"users/{quote(username)}")
            if exists.status_code == 404:
                (await client.post("users", json={"usernames": [username]})).raise_for_status()
            for group in missing:
                resp = await client.post(f"groups/{quote(group)}/users", json={"users": [username]})
                resp.raise_for_status()
        self.log.info("%s enrolled through identity-provider groups into %s", username, ", ".join(missing))
        return joined


# The LDAP and LTI 1.3 authenticators are optional dependencies: the classes exist only where they are installed,
# and hubconfig names them only for a catalog that asks for them.
try:
    from ldapauthenticator import LDAPAuthenticator
except ImportError:  # pragma: no cover - depends on the install
    pass
else:

    class HubfleetLDAPAuthenticator(AdmissionMixin, LDAPAuthenticator):
        """Bind against the institution's LDAP; admission from the hub's enrolment as for every auth type."""

    __all__ += ["HubfleetLDAPAuthenticator"]

try:
    from ltiauthenticator.lti13.auth import LTI13Authenticator
except ImportError:  # pragma: no cover - depends on the install
    pass
else:

    class HubfleetLTI13Authenticator(AdmissionMixin, LTI13Authenticator):
        """Launch from the LMS (LTI 1.3); admission from the hub's enrolment as for every auth type."""

    __all__ += ["HubfleetLTI13Authenticator"]
