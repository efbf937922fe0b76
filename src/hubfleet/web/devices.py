"""Known devices: a browser that has signed in as a user before is a client of its own for the sign-in throttle.

The throttle (``throttle.py``) keys failures by (username, client address). On a campus, a whole lab or the whole
wifi is one address behind NAT, so a classmate failing on purpose from the same network would slow down the
owner too. A browser that once signed in successfully as ``alice`` keeps a signed cookie saying so; when it
offers that cookie for ``alice`` again, its attempts are counted under the device instead of the address, so
nobody else's failures reach them. The cookie proves nothing about the password (it signs nothing in), it only
chooses which counter an attempt goes to; a cookie for another username is ignored, and one cannot be forged
without the portal's secret. This is OWASP's "device cookie" defence against lock-out abuse.
ref: https://owasp.org/www-community/Slow_Down_Online_Guessing_Attacks_with_Device_Cookies
"""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import Request, Response
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from hubfleet.backends.local.secrets import ensure_secret

__all__ = ["DEVICE_COOKIE", "DeviceCookies"]

DEVICE_COOKIE = "hubfleet-portal-device"
# A presentation runs about nine months; a device known for half a year covers the term it was first used in.
DEVICE_MAX_AGE = 180 * 24 * 3600


class DeviceCookies:
    def __init__(self, secret_file: Path, path: str) -> None:
        self._serializer = URLSafeTimedSerializer(ensure_secret(secret_file), salt="hubfleet-portal-device")
        self.path = path

    def device(self, request: Request, username: str) -> str | None:
        """The device id this browser proves for ``username``, or None (no cookie, forged, expired, other user)."""
        raw = request.cookies.get(DEVICE_COOKIE)
        if not raw:
            return None
        try:
            data = self._serializer.loads(raw, max_age=DEVICE_MAX_AGE)
        except (BadSignature, SignatureExpired):
            return None
        if not isinstance(data, dict) or data.get("u") != username or not isinstance(data.get("d"), str):
            return None
        return data["d"]

    def remember(self, request: Request, response: Response, username: str, secure: bool = False) -> None:
        """After a successful sign-in: this browser is a known device of ``username`` (a new id, or the same one)."""
        device = self.device(request, username) or secrets.token_urlsafe(16)
        response.set_cookie(DEVICE_COOKIE, self._serializer.dumps({"u": username, "d": device}), max_age=DEVICE_MAX_AGE,
                            path=self.path, httponly=True, samesite="lax", secure=secure)  # fmt: skip
