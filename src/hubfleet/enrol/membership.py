"""Who belongs where: every enrolment source resolved to the groups of every hub.

Resolution reads every source first (rosters already parsed by the loader, LDAP live) and fails
as a whole if any source cannot be read, so a sync never acts on a partial picture: a missing
CSV or an LDAP outage must not look like "everybody left".
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from hubfleet.catalog.loader import LoadedCatalog
from hubfleet.enrol.ldap_source import LdapDirectory, LdapError
from hubfleet.plan.spec import FleetSpec, HubSpec, PresentationSpec

ROLE_RANK = {"student": 0, "tutor": 1, "instructor": 2}


class SourceError(Exception):
    """A source could not be read; nothing was changed anywhere."""

    def __init__(self, presentation: str, source: str, why: str):
        self.presentation, self.source, self.why = presentation, source, why
        super().__init__(f"{presentation}: enrolment source {source}: {why}; nothing was changed")


@dataclass
class HubMembers:
    """The desired membership of one hub: group name -> usernames, and each user's roles."""

    hub: str
    groups: dict[str, set[str]] = field(default_factory=dict)
    roles: dict[str, dict[str, str]] = field(default_factory=dict)  # username -> {presentation key: role}
    idp_groups: dict[str, tuple[str, str]] = field(default_factory=dict)  # idp group -> (presentation, role)
    additive_groups: set[str] = field(default_factory=set)  # fed at login by idp claims: never emptied by a sync

    @property
    def users(self) -> set[str]:
        return set(self.roles)


def directory_for(loaded: LoadedCatalog) -> LdapDirectory | None:
    d = loaded.catalog.fleet.directory
    if d is None:
        return None
    password = os.environ.get(d.password_env) if d.password_env else None
    return LdapDirectory(d.url, d.base_dn, bind_dn=d.bind_dn, password=password)


def _source_members(loaded: LoadedCatalog, src: dict, directory: LdapDirectory | None, key: str) -> set[str]:
    if src.get("csv") is not None:
        return {m.username for m in loaded.rosters.get(src["csv"], [])}
    if src.get("users") is not None:
        return {u.strip().lower() for u in src["users"]}
    if src.get("ldap") is not None:
        query = src["ldap"]
        if directory is None:
            raise SourceError(key, "ldap", "fleet.directory is not configured")
        try:
            if query.get("group"):
                return directory.members_of_group(query["group"], query.get("attribute", "uid"))
            return directory.members_by_filter(query["filter"], query.get("attribute", "uid"), query.get("base"))
        except LdapError as exc:
            raise SourceError(key, f"ldap {query.get('group') or query.get('filter')}", str(exc)) from exc
    return set()  # idp_group: enrolled at login from the token's groups claim


def _roles_of(loaded: LoadedCatalog, src: dict, usernames: set[str]) -> dict[str, str]:
    """A roster row can carry its own role; otherwise the source's role applies."""
    if src.get("csv") is not None:
        return {m.username: m.role for m in loaded.rosters.get(src["csv"], [])}
    return {u: src.get("role", "student") for u in usernames}


def _add(members: HubMembers, pres: PresentationSpec, user: str, role: str) -> None:
    current = members.roles.setdefault(user, {})
    previous = current.get(pres.key)
    # Someone listed as a student and as a tutor is a tutor: the higher role wins.
    if previous is None or ROLE_RANK[role] > ROLE_RANK[previous]:
        current[pres.key] = role


def resolve_hub(
    loaded: LoadedCatalog, hub: HubSpec, directory: LdapDirectory | None = None, *, live: bool = True
) -> HubMembers:
    """``live=False`` resolves only what the catalog itself holds (rosters, lists, team), with no directory
    lookups: what a hub can know at startup; the sync adds LDAP members to the groups afterwards."""
    members = HubMembers(hub=hub.name)
    for pres in hub.presentations:
        for src in pres.enrolment:
            if src.get("ldap") is not None and not live:
                continue
            if src.get("idp_group"):
                role = src.get("role", "student")
                members.idp_groups[src["idp_group"]] = (pres.key, role)
                members.additive_groups.add(
                    {"student": pres.group, "tutor": pres.tutor_group, "instructor": pres.instructor_group}[role]
                )
                continue
            names = _source_members(loaded, src, directory, pres.key)
            for user, role in _roles_of(loaded, src, names).items():
                _add(members, pres, user, role)
        for user in pres.instructors:
            _add(members, pres, user, "instructor")
        for user in pres.tutors:
            _add(members, pres, user, "tutor")
        members.groups.update({pres.group: set(), pres.tutor_group: set(), pres.instructor_group: set()})
    by_key = {p.key: p for p in hub.presentations}
    for user, roles in members.roles.items():
        for key, role in roles.items():
            pres = by_key[key]
            group = {"student": pres.group, "tutor": pres.tutor_group, "instructor": pres.instructor_group}[role]
            members.groups[group].add(user)
    return members


def resolve(
    loaded: LoadedCatalog,
    spec: FleetSpec,
    hubs: set[str] | None = None,
    directory_factory: Callable[[LoadedCatalog], LdapDirectory | None] = directory_for,
) -> dict[str, HubMembers]:
    """Membership of every wanted hub (or only ``hubs``); raises SourceError before anything is written."""
    directory = directory_factory(loaded)
    return {h.name: resolve_hub(loaded, h, directory) for h in spec.hubs if hubs is None or h.name in hubs}


def managed_groups(loaded: LoadedCatalog) -> dict[str, set[str]]:
    """Every group hubfleet owns per hub: those of every presentation the catalog places there, in any phase."""
    from hubfleet.catalog.naming import group_name, hub_name

    fleet = loaded.catalog.fleet
    out: dict[str, set[str]] = {}
    for course in loaded.catalog.courses:
        for pres in course.presentations:
            hub = hub_name(fleet.topology, fleet.name, course.code, pres.id, course.unit)
            out.setdefault(hub, set()).update(group_name(course.code, pres.id, r) for r in ("student", "tutor", "instructor"))
    return out
