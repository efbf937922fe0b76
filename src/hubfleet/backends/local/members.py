"""Who may log in to a local hub, and with which password.

``members.json`` (one per hub) maps ``username -> {presentation key -> role}``. It is built from the catalog's
CSV rosters (parsed and validated by the loader), static ``users:`` lists, and each presentation's instructors and
tutors. The hub re-reads it at runtime (helper-7's authenticator), so a roster edit needs no restart. LDAP and
IdP-group sources are resolved elsewhere (enrolment sync) and are not expanded here.

Passwords (checked by the portal, the fleet's embedded OpenID Connect provider; hubs never see one): in demo mode
everyone shares one generated password (``<state>/demo-password``). As root, each user gets their own password,
generated once: plaintext in ``passwords.txt`` for the operator to hand out, hashes in ``passwords.json`` for the
portal. Both 0600; an apply never changes an existing user's password.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any

from hubfleet.backends.local.fleetstate import read_json, write_json_atomic
from hubfleet.backends.local.secrets import ensure_secret
from hubfleet.catalog.loader import LoadedCatalog
from hubfleet.enrol.membership import resolve_hub
from hubfleet.plan.spec import HubSpec

__all__ = ["PasswordBook", "demo_password", "hash_generated", "hash_password", "hub_members", "verify_password"]

# scrypt is in the standard library and memory-hard; these are the interactive-login parameters from the scrypt
# paper and Python's docs (16 MiB, ~50 ms), so hashing a 1,500-student roster takes about a minute, not an hour.
# ref: https://docs.python.org/3/library/hashlib.html#hashlib.scrypt
# ref: https://cheatsheetseries.owasp.org/cheatsheets/Password_Storage_Cheat_Sheet.html#scrypt
_N, _R, _P = 2**14, 8, 1
_DKLEN = 32
_SCHEME = "scrypt"
# Passwords hubfleet generates itself (PasswordBook: 72 random bits from the CSPRNG) are hashed once with salted
# SHA-256, not scrypt. Key stretching protects guessable, human-chosen passwords; against a 72-bit random secret an
# offline attacker needs ~2^71 guesses whatever the hash costs, so scrypt would only add ~170 ms per student on this
# machine: 1,950 students were five minutes of the first `make demo` with nothing on screen (issue 14). JupyterHub
# stores its own generated API tokens the same way (orm.Hashed: generated tokens get one round).
# ref: https://github.com/jupyterhub/jupyterhub/blob/6.1.1/jupyterhub/orm.py (Hashed.generated_rounds)
# ref: https://cheatsheetseries.owasp.org/cheatsheets/Password_Storage_Cheat_Sheet.html (hashing vs stretching)
_GENERATED = "sha256"
GENERATED_BYTES = 9  # secrets.token_urlsafe(9): 72 bits


def hash_generated(password: str, *, salt: bytes | None = None) -> str:
    """``sha256$<salt hex>$<hash hex>`` for a password hubfleet generated (high entropy); see _GENERATED."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    return f"{_GENERATED}${salt.hex()}${hashlib.sha256(salt + password.encode('utf-8')).hexdigest()}"


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$<salt hex>$<hash hex>``: self-describing, so parameters can be raised later."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN, maxmem=64 << 20)
    return f"{_SCHEME}${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a :func:`hash_password` string; False for malformed input."""
    try:
        if stored.startswith(_GENERATED + "$"):
            _, salt_hex, digest_hex = stored.split("$")
            digest = hashlib.sha256(bytes.fromhex(salt_hex) + password.encode("utf-8")).digest()
            return hmac.compare_digest(digest, bytes.fromhex(digest_hex))
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


def hub_members(hub: HubSpec, loaded: LoadedCatalog) -> dict[str, dict[str, str]]:
    """``{username: {KEY: role}}`` for every presentation of one hub, from the catalog alone (members.json).

    The same resolution the enrolment sync uses, without live LDAP lookups: those reach the hub as groups."""
    roles = resolve_hub(loaded, hub, live=False).roles
    return {u: dict(sorted(r.items())) for u, r in sorted(roles.items())}


def demo_password(state: Path) -> str:
    """The one password of a demo-mode fleet; generated on first use and then only read."""
    return ensure_secret(state / "demo-password", nbytes=8)


class PasswordBook:
    """Per-user passwords for a fleet of system users: generated once per user, never regenerated."""

    def __init__(self, txt: Path, hashes: Path) -> None:
        self.txt = txt
        self.hashes = hashes

    def _plain(self) -> dict[str, str]:
        out: dict[str, str] = {}
        try:
            for line in self.txt.read_text().splitlines():
                if line.strip() and not line.startswith("#"):
                    user, _, password = line.partition(" ")
                    out[user] = password.strip()
        except FileNotFoundError:
            pass
        return out

    def ensure(self, users: set[str]) -> list[str]:
        """Give every user in ``users`` a password if they have none; return the users that got a new one."""
        plain = self._plain()
        hashes: dict[str, Any] = read_json(self.hashes) or {}
        new = sorted(u for u in users if u not in plain)
        missing_hash = [u for u in plain if u not in hashes]
        if not new and not missing_hash:
            return []
        for user in new:
            plain[user] = secrets.token_urlsafe(GENERATED_BYTES)
        for user in new + missing_hash:
            hashes[user] = hash_generated(plain[user])
        lines = ["# hubfleet: one line per user, 'username password'. Hand these out; hubs only keep hashes."]
        lines += [f"{u} {p}" for u, p in sorted(plain.items())]
        self.txt.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.txt.with_name(f".{self.txt.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        os.replace(tmp, self.txt)
        write_json_atomic(self.hashes, dict(sorted(hashes.items())), mode=0o600)
        return new
