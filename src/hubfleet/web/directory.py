"""The portal's user directory: who exists, how they prove it, which courses they are in, which hubs are clients.

Everything is read from the state dir the local backend writes, on demand (files are re-read when they change),
so the portal holds no copy that could drift from what the hubs enforce:

* ``<state>/hubs/<hub>/hub.json`` + ``members.json`` + the hub's database, through ``membership.HubContext``: the
  same rules and the same enrolment data the hub itself uses (members.json is built from the catalog's rosters,
  static lists and teams; the hub's groups are what ``hubfleet enrol sync`` wrote, LDAP members included). So a
  course is listed on "your courses" exactly when that hub would let the user in.
* ``<state>/demo-password`` (demo mode: one password for everyone) or ``<state>/passwords.json`` (per-user scrypt
  hashes from ``members.PasswordBook``; the plaintext for the operator is in ``passwords.txt``).
* the catalog's optional ``auth.users_file`` (``username,password,groups``): extra accounts and the
  identity-provider groups the embedded provider puts in the ``groups`` claim (``idp_group`` enrolment).
* ``<hub_dir>/oauth_client_secret``: a hub whose config generated this file is a registered OAuth client.
"""

from __future__ import annotations

import csv
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubfleet.backends.local.members import hash_password, verify_password
from hubfleet.backends.local.membership import HubContext
from hubfleet.backends.local.secrets import read_secret

__all__ = ["Client", "Enrolment", "UserDirectory"]

# Checked for unknown usernames so "no such user" costs the same time as "wrong password" (no user enumeration).
_DUMMY_HASH = hash_password("hubfleet-dummy", salt=b"\0" * 16)


@dataclass(frozen=True)
class Client:
    """One hub as an OAuth client: client_id is the hub name; the redirect URI must match exactly."""

    client_id: str
    secret: str
    redirect_uri: str


@dataclass(frozen=True)
class Enrolment:
    """One line of "your courses"."""

    hub: str
    key: str
    title: str
    role: str
    phase: str
    start: str
    end: str
    admitted: bool  # would the hub let them in today (a student's course may not be open yet)


@dataclass
class _FileCache:
    mtime_ns: int = -1
    value: Any = None


class UserDirectory:
    def __init__(self, state: Path) -> None:
        self.state = Path(state)
        self._contexts: dict[str, HubContext] = {}
        self._hashes = _FileCache()
        self._users_file = _FileCache()

    # -- hubs --------------------------------------------------------------------------------------------------

    def contexts(self) -> dict[str, HubContext]:
        """{hub: HubContext} for every hub dir with a hub.json (retired hubs are moved out of hubs/)."""
        found: dict[str, HubContext] = {}
        hubs = self.state / "hubs"
        for hub_json in sorted(hubs.glob("*/hub.json")) if hubs.is_dir() else []:
            name = hub_json.parent.name
            ctx = self._contexts.get(name) or HubContext(hub_json)
            try:
                ctx.spec  # noqa: B018 - parse now, skip a half-written hub.json
            except (OSError, ValueError):
                continue
            found[name] = self._contexts[name] = ctx
        return found

    def client(self, client_id: str) -> Client | None:
        ctx = self.contexts().get(client_id)
        if ctx is None:
            return None
        try:
            secret = read_secret(ctx.hub_dir / "oauth_client_secret")
        except FileNotFoundError:
            return None  # the hub has not started with the embedded provider yet
        redirect = ctx.hub_url + "hub/oauth_callback"
        return Client(client_id, secret, redirect)

    # -- who exists and how they log in ------------------------------------------------------------------------

    def demo_mode(self) -> bool:
        try:
            return bool(json.loads((self.state / "fleet.json").read_text()).get("demo_mode"))
        except (OSError, ValueError):
            return any(ctx.demo_mode for ctx in self.contexts().values())

    def exists(self, username: str) -> bool:
        """Anyone a hub of this fleet knows: enrolled now, on a team, an admin, or a user a hub has kept."""
        if username in self._extra_users() or username in self._password_hashes():
            return True
        for ctx in self.contexts().values():
            if ctx.is_admin(username) or ctx.roles_of(username) or username in ctx.members():
                return True
            if username in ctx.known_users():
                return True
        return False

    def verify(self, username: str, password: str) -> bool:
        if not username or not password:
            return False
        extra = self._extra_users().get(username)
        if extra and extra["password"]:
            stored = extra["password"]
            if stored.startswith("scrypt$"):
                return verify_password(password, stored)
            return hmac.compare_digest(stored.encode(), password.encode())
        if self.demo_mode():
            try:
                demo = (self.state / "demo-password").read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                return False
            return bool(demo) and self.exists(username) and hmac.compare_digest(password.encode(), demo.encode())
        stored = self._password_hashes().get(username)
        ok = verify_password(password, stored or _DUMMY_HASH)
        return ok and stored is not None

    def _password_hashes(self) -> dict[str, str]:
        path = self.state / "passwords.json"

        def parse(p: Path) -> dict[str, str]:
            if p.stat().st_mode & 0o077:
                # As good as the passwords for weak ones: refuse to trust a file others can read.
                raise PermissionError(f"{p}: mode {oct(p.stat().st_mode & 0o777)}; run `chmod 600 {p}`")
            return {str(k): str(v) for k, v in json.loads(p.read_text(encoding="utf-8")).items()}

        return _cached(path, self._hashes, parse) or {}

    def _extra_users(self) -> dict[str, dict[str, Any]]:
        """The catalog's ``auth.users_file``: ``{username: {"password": str, "groups": [..]}}``."""
        path = None
        for ctx in self.contexts().values():
            users_file = (ctx.spec.auth or {}).get("users_file")
            if users_file:
                path = ctx.catalog_root / users_file
                break
        if path is None:
            return {}

        def parse(p: Path) -> dict[str, dict[str, Any]]:
            out = {}
            with p.open(newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    name = (row.get("username") or "").strip().lower()
                    if name:
                        groups = (row.get("groups") or "").replace(";", " ").split()
                        out[name] = {"password": (row.get("password") or "").strip(), "groups": groups}
            return out

        return _cached(path, self._users_file, parse) or {}

    # -- what they belong to -------------------------------------------------------------------------------------

    def enrolments(self, username: str) -> list[Enrolment]:
        out = []
        for name, ctx in self.contexts().items():
            roles = ctx.roles_of(username)
            admitted = {p.key for p in ctx.admission(username).presentations}
            for pres in ctx.spec.presentations:
                role = roles.get(pres.key) or ("admin" if ctx.is_admin(username) else None)
                if role is None:
                    continue
                out.append(Enrolment(name, pres.key, pres.title, role, pres.phase.value, pres.start.isoformat(),
                                     pres.end.isoformat(), pres.key in admitted))  # fmt: skip
        return sorted(out, key=lambda e: (e.start, e.key))

    def idp_groups(self, username: str) -> list[str]:
        return list(self._extra_users().get(username, {}).get("groups", []))

    def groups_for(self, username: str, hub: str | None) -> list[str]:
        """The ``groups`` claim: the user's groups in that hub (their presentations' student/tutor/instructor
        groups, from the same enrolment data the hub uses) plus their identity-provider groups."""
        groups = set(self.idp_groups(username))
        ctx = self.contexts().get(hub or "")
        if ctx is not None:
            for pres in ctx.spec.presentations:
                role = ctx.roles_of(username).get(pres.key)
                if role:
                    groups.add({"student": pres.group, "tutor": pres.tutor_group, "instructor": pres.instructor_group}[role])
        return sorted(groups)


def _cached(path: Path, cache: _FileCache, parse: Any) -> Any:
    try:
        mtime = os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return None
    if mtime != cache.mtime_ns:
        cache.value = parse(path)
        cache.mtime_ns = mtime
    return cache.value
