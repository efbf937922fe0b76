"""Enrolment sync: make each hub's users and groups match the catalog, in bulk and incrementally.

Per hub: one paged read of the groups (their member lists tell us who is already in), then only
the difference is written. When the hub offers hubfleet's bulk enrolment endpoint (``enrol/endpoint.py``), every
new user and every new membership go in one request and one transaction; otherwise (a hub of another version or
config) one ``POST /users`` per chunk of missing users, and per group one ``POST /groups/{g}/users`` with the whole
list, and one ``DELETE /groups/{g}/users`` per group with leavers (the endpoint takes them in its transaction). ``HubChanges.method`` says which path. A second sync with no change makes zero
writes. Users are never deleted (their files belong to the lifecycle, not to enrolment): a student
who leaves is only taken out of the group, which is what grants access.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from collections.abc import Callable

from hubfleet.catalog.loader import LoadedCatalog
from hubfleet.enrol.membership import HubMembers, managed_groups, resolve
from hubfleet.hubapi.client import AsyncHubClient, HubAPIError, fan_out
from hubfleet.plan.spec import FleetSpec


CREATE_CHUNK = 1000
BULK, REST = "bulk endpoint", "REST API"


@dataclass
class GroupChange:
    group: str
    add: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    create: bool = False
    delete: bool = False


@dataclass
class HubChanges:
    """What a sync will do (dry run) or did, in one hub."""

    hub: str
    create_users: list[str] = field(default_factory=list)
    groups: list[GroupChange] = field(default_factory=list)
    writes: int = 0
    error: str | None = None
    enrolled: int = 0  # users the catalog puts in this hub: how many are in place once the sync is done
    method: str = ""  # BULK or REST: how this hub was (or, in a dry run, would be) written to

    @property
    def empty(self) -> bool:
        return not self.create_users and not any(
            g.add or g.remove or g.create or g.delete for g in self.groups
        )

    def counts(self) -> dict[str, int]:
        return {
            "users created": len(self.create_users),
            "added to groups": sum(len(g.add) for g in self.groups),
            "removed from groups": sum(len(g.remove) for g in self.groups),
            "groups created": sum(g.create for g in self.groups),
            "groups deleted": sum(g.delete for g in self.groups),
        }


def compute(desired: HubMembers, groups: dict[str, set[str]], managed: set[str]) -> HubChanges:
    """Pure: the difference between desired membership and the hub's groups.

    ``managed`` are the group names hubfleet owns in this hub (every presentation the catalog has
    ever placed here); a managed group no longer wanted is emptied and deleted, so stale access
    (and the roles granted through it) goes with the presentation.
    """
    changes = HubChanges(hub=desired.hub, enrolled=len(desired.users))
    present = set().union(*groups.values()) if groups else set()
    changes.create_users = sorted(desired.users - present)
    for name in sorted(desired.groups):
        want = desired.groups[name]
        have = groups.get(name)
        change = GroupChange(group=name, create=have is None)
        have = have or set()
        change.add = sorted(want - have)
        # Members who joined through their identity provider's group claim are not in any roster: the
        # provider, checked at each login, is the authority for them, so a sync only ever adds to such groups.
        change.remove = [] if name in desired.additive_groups else sorted(have - want)
        if change.create or change.add or change.remove:
            changes.groups.append(change)
    for name in sorted((managed & set(groups)) - set(desired.groups)):
        changes.groups.append(GroupChange(group=name, remove=sorted(groups[name]), delete=True))
    return changes


async def _read_groups(client: AsyncHubClient) -> dict[str, set[str]]:
    return {g["name"]: set(g.get("users") or []) for g in await client.groups()}


async def sync_hub(
    client: AsyncHubClient, desired: HubMembers, managed: set[str], *, dry_run: bool = False
) -> HubChanges:
    info = await client.bulk_enrol_info()
    bulk = info is not None
    if bulk and isinstance(info.get("groups"), dict):  # version 2: the memberships come with the answer
        groups = {name: set(members) for name, members in info["groups"].items()}
    else:
        groups = await _read_groups(client)
    changes = compute(desired, groups, managed)
    changes.method = BULK if bulk else REST
    if dry_run or changes.empty:
        return changes
    before = client.writes
    if bulk:
        adds = {g.group: g.add for g in changes.groups if g.create or g.add}
        removals = {g.group: g.remove for g in changes.groups if g.remove}
        try:
            await client.bulk_enrol(changes.create_users, adds, removals)
        except HubAPIError as exc:
            if exc.status != 501:  # 501: the hub's authenticator makes accounts per user (LocalAuthenticator)
                raise
            bulk, changes.method = False, f"{REST} (bulk refused: {exc.message})"
    if bulk:
        for change in changes.groups:
            if change.delete:
                await client.delete_group(change.group)
        changes.writes = client.writes - before
        return changes
    # Users exist before they join groups: JupyterHub's group endpoints refuse unknown users.
    # One request per CREATE_CHUNK users: JupyterHub creates them one by one inside the request (~3 ms each
    # with hubfleet's db tuning) on its single event loop, so one request for 5,000 would freeze logins for
    # ~15 s. Chunks keep the hub answering students between them at the cost of a few extra requests.
    for i in range(0, len(changes.create_users), CREATE_CHUNK):
        await client.create_users(changes.create_users[i : i + CREATE_CHUNK])
    for change in changes.groups:
        if change.create:
            await client.create_group(change.group, change.add)
            continue
        if change.add:
            await client.add_group_members(change.group, change.add)
        if change.remove:
            await client.remove_group_members(change.group, change.remove)
        if change.delete:
            await client.delete_group(change.group)
    changes.writes = client.writes - before
    return changes


async def sync_fleet(
    endpoints: dict[str, tuple[str, str]],
    members: dict[str, HubMembers],
    managed: dict[str, set[str]],
    *,
    dry_run: bool = False,
    concurrency: int = 8,
    timeout: float = 300.0,
    on_done=None,
) -> list[HubChanges]:
    """Sync every hub in ``members`` with at most ``concurrency`` hubs in flight."""

    async def one(hub: str) -> HubChanges:
        url, token = endpoints[hub]
        # Creating thousands of users is one request but many database rows: allow it time.
        async with AsyncHubClient(url, token, timeout=timeout) as client:
            try:
                result = await sync_hub(client, members[hub], managed.get(hub, set()), dry_run=dry_run)
            except Exception as exc:  # one unreachable hub must not hide the others' results
                result = HubChanges(hub=hub, error=f"{type(exc).__name__}: {exc}", writes=client.writes)
        if on_done:
            on_done(result)
        return result

    return await fan_out(sorted(members), one, limit=concurrency)


def run_sync(*args, **kwargs) -> list[HubChanges]:
    return asyncio.run(sync_fleet(*args, **kwargs))


def sync_spec(
    loaded: LoadedCatalog,
    spec: FleetSpec,
    endpoint: Callable[[str], tuple[str, str]],
    *,
    hubs: set[str] | None = None,
    dry_run: bool = False,
    on_done=None,
) -> list[HubChanges]:
    """Resolve every source for the planned hubs (raising SourceError before any write), then sync them.

    ``endpoint(hub) -> (api_url, token)`` comes from the backend, so `enrol sync`, `apply` and `up` share this.
    """
    members = resolve(loaded, spec, hubs)
    endpoints = {name: endpoint(name) for name in members}
    return run_sync(endpoints, members, managed_groups(loaded), dry_run=dry_run, on_done=on_done)
