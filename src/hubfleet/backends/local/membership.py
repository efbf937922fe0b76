"""Who may use one local hub, and as what: the hub side of the contract with the fleet side (``backend.py``).

The fleet side writes ``<state>/hubs/<hub>/hub.json`` (the HubSpec plus paths, ports and secret files) and
``members.json`` (``{username: {PRESENTATION-KEY: "student"|"tutor"|"instructor"}}``). Everything that runs inside
the hub process (authenticator, spawner, templates) asks this module, so the rules live in one place:

* admins (``spec.admins``) may always log in and use every profile;
* team members (tutors, instructors: from members.json or the spec's team lists) may log in from ``provisioned``
  on, so they can prepare the course before students arrive;
* students only while their presentation is ``open`` or ``read-only``.

Both files are re-read when their mtime changes, so an enrolment change or a phase change that the fleet side
writes takes effect at the next login or spawn without restarting the hub (and logging everyone out).

Which enrolment counts: once the hub's database has a presentation's groups (seeded from members.json at hub start,
then kept exact by ``hubfleet enrol sync``, which also brings LDAP members, and by idp-group enrolment at login),
those groups are the authority for that presentation: a student the sync took out of the group has lost access,
whatever an older members.json says. Before the hub's first start (no database yet) members.json is used.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubfleet.plan.spec import HubSpec, Phase, PresentationSpec, ProfileSpec

__all__ = ["Admission", "HubContext", "STAFF_ROLES", "public_hub_url"]

STAFF_ROLES = ("tutor", "instructor")


@dataclass(frozen=True)
class Admission:
    """The answer to "may this user log in here, and to which presentations?"."""

    allowed: bool
    presentations: tuple[PresentationSpec, ...] = ()
    reason: str = ""  # for the 403 page when not allowed


@dataclass
class _Cached:
    mtime_ns: int = -1
    value: Any = None


@dataclass
class HubContext:
    """hub.json + members.json of one hub, re-read on change. Cheap to call on every request."""

    path: Path
    _hub: _Cached = field(default_factory=_Cached)
    _members: _Cached = field(default_factory=_Cached)

    # -- the files ---------------------------------------------------------------------------------------------

    @property
    def raw(self) -> dict[str, Any]:
        return self._load(self.path, self._hub, _parse_hub)

    @property
    def spec(self) -> HubSpec:
        return self.raw["_spec"]

    @property
    def hub_dir(self) -> Path:
        return Path(self.raw["hub_dir"])

    @property
    def state_dir(self) -> Path:
        # <state>/hubs/<hub>: fleet-wide files (demo-password, passwords.json) live two levels up.
        return self.hub_dir.parent.parent

    @property
    def storage_root(self) -> Path:
        return Path(self.raw["storage_root"])

    @property
    def catalog_root(self) -> Path:
        return Path(self.raw["catalog_root"])

    @property
    def demo_mode(self) -> bool:
        return bool(self.raw.get("demo_mode", False))

    @property
    def front_door(self) -> str:
        """Where people start: the portal's URL, with a trailing slash."""
        return str(self.raw.get("front_door", "/")).rstrip("/") + "/"

    @property
    def hub_url(self) -> str:
        """This hub's public URL, with a trailing slash (see :func:`public_hub_url`)."""
        return public_hub_url(self.raw)

    def hub_groups(self, username: str) -> set[str] | None:
        """The user's groups in this hub's database, or None when there is no database to ask yet."""
        view = self._db_view(username)
        return None if view is None else view[1]

    def _db_view(self, username: str) -> tuple[set[str], set[str]] | None:
        """(groups that exist, the user's groups) read from the hub's sqlite database, read-only.

        A separate read-only connection rather than the hub's ORM session: JupyterHub asks authenticators to manage
        their own connections (Authenticator.db is deprecated), and the spawner and templates call this too.
        ref: https://github.com/jupyterhub/jupyterhub/issues/3700
        """
        db = self.hub_dir / "jupyterhub.sqlite"
        if not db.is_file():
            return None
        try:
            with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
                existing = {row[0] for row in conn.execute("SELECT name FROM groups")}
                mine = {
                    row[0]
                    for row in conn.execute(
                        "SELECT g.name FROM groups g JOIN user_group_map m ON m.group_id = g.id "
                        "JOIN users u ON u.id = m.user_id WHERE u.name = ?",
                        (username,),
                    )
                }
        except sqlite3.Error:
            return None  # the hub is creating its schema right now: fall back to members.json
        return existing, mine

    def known_users(self) -> set[str]:
        """Every user this hub's database holds (enrolment sync never deletes one), empty before its first start."""
        db = self.hub_dir / "jupyterhub.sqlite"
        if not db.is_file():
            return set()
        try:
            with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
                return {row[0] for row in conn.execute("SELECT name FROM users")}
        except sqlite3.Error:
            return set()

    def members(self) -> dict[str, dict[str, str]]:
        members_path = self.raw.get("members")
        if not members_path:
            return {}
        return self._load(Path(members_path), self._members, _parse_members)

    @staticmethod
    def _load(path: Path, cache: _Cached, parse: Any) -> Any:
        try:
            mtime = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            if cache.value is not None:
                return cache.value  # mid-replace by the writer: keep serving the last good copy
            raise
        if mtime != cache.mtime_ns:
            cache.value = parse(json.loads(path.read_text(encoding="utf-8")))
            cache.mtime_ns = mtime
        return cache.value

    # -- the rules ---------------------------------------------------------------------------------------------

    def presentation(self, key: str) -> PresentationSpec:
        for pres in self.spec.presentations:
            if pres.key == key:
                return pres
        raise KeyError(key)

    def is_admin(self, username: str) -> bool:
        return username in self.spec.admins

    def roles_of(self, username: str) -> dict[str, str]:
        """{presentation key: role} for the presentations of this hub; team lists in the spec count as roles."""
        roles: dict[str, str] = {}
        mine = self.members().get(username, {})
        db = self._db_view(username)
        for pres in self.spec.presentations:
            if username in pres.instructors:
                roles[pres.key] = "instructor"
            elif username in pres.tutors:
                roles[pres.key] = "tutor"
            elif db is not None and pres.group in db[0]:
                groups = db[1]
                for role, group in (("instructor", pres.instructor_group), ("tutor", pres.tutor_group), ("student", pres.group)):
                    if group in groups:
                        roles[pres.key] = role
                        break
            elif pres.key in mine:
                roles[pres.key] = mine[pres.key]
        return roles

    def is_team(self, username: str, key: str) -> bool:
        return self.is_admin(username) or self.roles_of(username).get(key) in STAFF_ROLES

    def admission(self, username: str) -> Admission:
        if self.is_admin(username):
            return Admission(True, self.spec.presentations)
        roles = self.roles_of(username)
        admitted, waiting = [], []
        for pres in self.spec.presentations:
            role = roles.get(pres.key)
            if role is None:
                continue
            if role in STAFF_ROLES and pres.phase.hub_wanted:
                admitted.append(pres)
            elif pres.phase.students_admitted:
                admitted.append(pres)
            else:
                waiting.append(pres)
        if admitted:
            return Admission(True, tuple(admitted))
        if waiting:
            when = "; ".join(f"{p.key} opens to students on {p.start.isoformat()}" for p in waiting)
            return Admission(False, reason=f"Your course has not started yet: {when}.")
        courses = ", ".join(p.key for p in self.spec.presentations)
        return Admission(
            False,
            reason=f"You are not enrolled on {courses}, the course this hub serves. "
            "If you think you should be, contact your tutor or student support.",
        )

    def profiles_for(self, username: str) -> list[ProfileSpec]:
        """Profiles this user may start: those of the presentations they are admitted to (admins: all)."""
        keys = {p.key for p in self.admission(username).presentations}
        return [p for p in self.spec.profiles if p.presentation in keys]

    def read_only_for(self, username: str, key: str) -> bool:
        """Students of a read-only presentation can look and download, not modify; the team is exempt."""
        return self.presentation(key).phase == Phase.read_only and not self.is_team(username, key)


def _parse_hub(data: dict[str, Any]) -> dict[str, Any]:
    missing = [k for k in ("spec", "hub_dir", "storage_root", "catalog_root") if k not in data]
    if missing:
        raise ValueError(f"hub.json is missing {', '.join(missing)}")
    return {**data, "_spec": HubSpec.model_validate(data["spec"])}


def _parse_members(data: Any) -> dict[str, dict[str, str]]:
    if not isinstance(data, dict):
        raise ValueError("members.json must map username -> {presentation key: role}")
    return {str(u): {str(k): str(r) for k, r in (roles or {}).items()} for u, roles in data.items()}


def public_hub_url(raw: dict[str, Any]) -> str:
    """A hub's public URL with a trailing slash: its own host (hub.json ``hub_url``, the fleet's hubs), else the
    front door and the spec's base path (a lone hub, as in the hub-side tests)."""
    if raw.get("hub_url"):
        return str(raw["hub_url"]).rstrip("/") + "/"
    spec = raw.get("_spec") or raw.get("spec") or {}
    base = spec.base_path if hasattr(spec, "base_path") else spec.get("base_path", "/")
    return str(raw.get("front_door", "")).rstrip("/") + base
