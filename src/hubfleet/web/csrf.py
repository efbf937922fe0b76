"""The portal's defence against cross-site request forgery on its own forms (sign-in and sign-out).

SameSite=Lax on the session cookie does not stop *login* CSRF: an attacker's page can POST its own username and
password to ``/portal/login`` and the browser keeps the session that comes back, so the victim then works (and
saves, and is tracked) as the attacker. So every state-changing form carries a token, checked on POST:

* a pre-session cookie ``hubfleet-portal-csrf`` holds a random nonce (HttpOnly, scoped to ``/portal`` like the
  session, set by any portal page that renders a form);
* the form's hidden ``csrf_token`` is that nonce signed with a timestamp (itsdangerous, HMAC-SHA1 under a key
  derived from the portal's generated-once session secret with its own salt, so a token is never a valid session
  and vice versa);
* a POST is accepted only when the cookie is there, the token's signature is good and younger than
  ``CSRF_MAX_AGE``, and the nonce inside equals the cookie's. A cross-site page can make the browser send the
  cookie but can read neither the cookie nor the form, so it cannot produce the matching token.
* a POST the browser itself labels ``Sec-Fetch-Site: cross-site`` or ``same-site`` is refused outright: the
  students' servers are other hosts of the same site (``alice.tm351.localhost``), and a page there could toss
  a nonce cookie of its own onto the parent domain; only the portal's own pages post to it (defence in depth).

The nonce is replaced at sign-in, so a nonce planted before the session does not outlive it.
ref: https://cheatsheetseries.owasp.org/cheatsheets/Cross-Site_Request_Forgery_Prevention_Cheat_Sheet.html
(signed double-submit cookie; "Login CSRF").

Students' servers are on hosts of their own (``backends/local/hosts.py``), so no script they serve shares the
portal's origin.
"""

from __future__ import annotations

import hmac
import re
import secrets
from pathlib import Path

from fastapi import Request, Response
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from hubfleet.backends.local.secrets import ensure_secret
from hubfleet.web.auth import PORTAL_PREFIX, SESSION_MAX_AGE

__all__ = ["CSRF_COOKIE", "CSRF_FIELD", "CSRF_MAX_AGE", "CsrfGuard"]

CSRF_COOKIE = "hubfleet-portal-csrf"
CSRF_FIELD = "csrf_token"
# How long a rendered form stays usable: a sign-in page left open over lunch still works, a stolen one soon won't.
CSRF_MAX_AGE = 2 * 3600
_NONCE = re.compile(r"[A-Za-z0-9_-]{32,64}")


class CsrfGuard:
    """Issues and checks the portal's form tokens (see the module docstring)."""

    def __init__(self, secret_file: Path) -> None:
        # The same generated-once secret as the session; the salt keeps the two signatures apart.
        self._signer = URLSafeTimedSerializer(ensure_secret(secret_file), salt="hubfleet-portal-csrf")

    @staticmethod
    def _nonce(request: Request) -> str | None:
        value = request.cookies.get(CSRF_COOKIE, "")
        return value if _NONCE.fullmatch(value) else None

    def issue(self, request: Request) -> tuple[str, str]:
        """``(token, nonce)`` for a form on this request's page: the browser's nonce, or a new one to set."""
        nonce = self._nonce(request) or secrets.token_urlsafe(32)
        return self._signer.dumps(nonce), nonce

    def set_cookie(self, request: Request, response: Response, nonce: str) -> None:
        response.set_cookie(
            CSRF_COOKIE, nonce, max_age=SESSION_MAX_AGE, path=PORTAL_PREFIX, httponly=True, samesite="lax",
            secure=request.url.scheme == "https",
        )

    def rotate(self, request: Request, response: Response) -> None:
        """A new nonce (at sign-in): tokens rendered before it stop working."""
        self.set_cookie(request, response, secrets.token_urlsafe(32))

    def check(self, request: Request, token: str | None) -> bool:
        """Is this POST from one of our own forms, in the browser that was shown it?"""
        if request.headers.get("sec-fetch-site", "").lower() in ("cross-site", "same-site"):
            return False
        nonce = self._nonce(request)
        if not nonce or not token:
            return False
        try:
            signed = self._signer.loads(token, max_age=CSRF_MAX_AGE)
        except (BadSignature, SignatureExpired):
            return False
        return isinstance(signed, str) and hmac.compare_digest(signed.encode(), nonce.encode())
