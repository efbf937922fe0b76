"""The local hubs' password authenticator, until single sign-on (OIDC/LDAP/LTI) is wired in.

Two password sources, both written once by the fleet side (``backend.py``):

* demo mode: ``<state>/demo-password``, one password for every enrolled user (printed by ``hubfleet up``);
* otherwise: ``<state>/passwords.json`` (mode 0600), ``{username: hash}`` made with :func:`hash_password`.

Knowing a password is not enough: :class:`HubfleetAuthenticator` then asks :mod:`membership` whether the user
belongs on *this* hub. A wrong password is an ordinary failed login (the login form again, "Invalid username or
password"); a right password from someone who is not enrolled, or a student whose course has not opened yet, is a
403 page that says why and links to the front-door portal, where their own courses are listed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from jupyterhub.auth import Authenticator
from tornado import web
from traitlets import Unicode

from hubfleet.backends.local.membership import HubContext

__all__ = ["HubfleetAuthenticator", "NotAdmitted", "hash_password", "load_password_hashes", "verify_password"]

# scrypt is in the standard library and memory-hard; these are the interactive-login parameters from the scrypt
# paper and Python's docs (16 MiB, ~50 ms), so hashing a 1,500-student roster takes about a minute, not an hour.
# ref: https://docs.python.org/3/library/hashlib.html#hashlib.scrypt
# ref: https://cheatsheetseries.owasp.org/cheatsheets/Password_Storage_Cheat_Sheet.html#scrypt
_N, _R, _P = 2**14, 8, 1
_DKLEN = 32
_SCHEME = "scrypt"


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$<salt hex>$<hash hex>``: self-describing, so parameters can be raised later."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN, maxmem=64 << 20)
    return f"{_SCHEME}${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a :func:`hash_password` string; False for malformed input."""
    try:
        scheme, n, r, p, salt_hex, digest_hex = stored.split("$")
        if scheme != _SCHEME:
            return False
        expected = bytes.fromhex(digest_hex)
        digest = hashlib.scrypt(
            password.encode("utf-8"), salt=bytes.fromhex(salt_hex), n=int(n), r=int(r), p=int(p),
            dklen=len(expected), maxmem=64 << 20,
        )  # fmt: skip
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


# Checked for unknown usernames so "no such user" costs the same time as "wrong password" (no user enumeration).
_DUMMY_HASH = hash_password("hubfleet-dummy", salt=b"\0" * 16)


def load_password_hashes(path: Path) -> dict[str, str]:
    """Read passwords.json, refusing one other users can read (it is as good as the passwords for weak ones)."""
    st = path.stat()
    if st.st_mode & 0o077:
        raise PermissionError(f"{path}: mode {oct(st.st_mode & 0o777)} lets other users read it; run `chmod 600 {path}`")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected {{username: hash}}")
    return {str(k): str(v) for k, v in data.items()}


class NotAdmitted(web.HTTPError):
    """403 with a message meant for the person at the keyboard; rendered by templates/403.html."""

    def __init__(self, username: str, reason: str) -> None:
        super().__init__(403, "%s not admitted: %s", username, reason)
        # write_error shows jupyterhub_message instead of the log message. ref: jupyterhub/handlers/base.py write_error
        self.jupyterhub_message = reason


class HubfleetAuthenticator(Authenticator):
    """Password login + "enrolled on this hub and the course is open" admission, from hub.json/members.json."""

    hub_json = Unicode(config=True, help="Path of this hub's hub.json (written by the fleet side).")

    _context: HubContext | None = None
    _hashes_cache: tuple[int, dict[str, str]] = (-1, {})

    @property
    def context(self) -> HubContext:
        if self._context is None or str(self._context.path) != self.hub_json:
            self._context = HubContext(Path(self.hub_json))
        return self._context

    # -- password --------------------------------------------------------------------------------------------

    def _password_ok(self, username: str, password: str) -> bool:
        ctx = self.context
        if ctx.demo_mode:
            demo = (ctx.state_dir / "demo-password").read_text(encoding="utf-8").strip()
            return bool(demo) and hmac.compare_digest(password.encode(), demo.encode())
        stored = self._hashes().get(username)
        ok = verify_password(password, stored or _DUMMY_HASH)
        return ok and stored is not None

    def _hashes(self) -> dict[str, str]:
        path = self.context.state_dir / "passwords.json"
        try:
            mtime = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            self.log.warning("%s does not exist: nobody can log in until the fleet side writes it", path)
            return {}
        if mtime != self._hashes_cache[0]:
            self._hashes_cache = (mtime, load_password_hashes(path))
        return self._hashes_cache[1]

    async def authenticate(self, handler, data):  # noqa: ANN001 - JupyterHub's signature
        username = self.normalize_username((data or {}).get("username", "").strip())
        password = (data or {}).get("password", "")
        if not username or not password or not self._password_ok(username, password):
            return None  # JupyterHub shows the login form again with "Invalid username or password"
        return {"name": username}

    # -- admission ---------------------------------------------------------------------------------------------

    def check_allowed(self, username, authentication=None):  # noqa: ANN001
        """Only called after a correct password, so saying *why* leaks nothing to a stranger.

        JupyterHub documents raising ``HTTPError(403)`` here to customise the message.
        ref: https://jupyterhub.readthedocs.io/en/stable/reference/api/auth.html#jupyterhub.auth.Authenticator.authenticate
        """
        admission = self.context.admission(username)
        if not admission.allowed:
            raise NotAdmitted(username, admission.reason)
        return True

    async def refresh_user(self, user, handler=None):  # noqa: ANN001
        """Re-check admission every ``auth_refresh_age`` seconds: an unenrolled student's cookie stops working and
        the next login shows them the 403 page. ref: https://jupyterhub.readthedocs.io/en/stable/reference/authenticators.html#authentication-state"""
        if user.name in self.admin_users:
            return True
        return self.context.admission(user.name).allowed
