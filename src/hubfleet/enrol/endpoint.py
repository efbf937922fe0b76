"""The bulk enrolment endpoint that runs *inside* each hub: ``POST {hub}/hub/api/hubfleet/enrol``.

JupyterHub's ``POST /users`` runs its single-user creation path once per name (two lookups, the default roles
assigned twice, a spawner row, three transactions: about 15 SQL statements per user; see
``backends/local/dbtuning.py``). Term start means thousands of students per hub, so this endpoint does the same
work as one batch: every new user, their ``user`` role and default (``''``) spawner row, every new group and every
new group membership, in **one transaction**: all of it is written, or (an error, a ``kill -9`` half-way) none.

Body: ``{"users": [name, ...], "groups": {group: [name, ...]}, "remove": {group: [name, ...]}}`` (``remove``
optional: members taken out of existing groups, in the same transaction). Idempotent: users and memberships that
exist are left alone, so sending the same body twice writes nothing the second time. Names go through the hub's own
``Authenticator.normalize_username`` / ``validate_username``, like ``POST /users``: one refused name refuses the
whole request (400, listing them) and writes nothing. Users and groups are never deleted here (deleting a group
stays on the REST API). ``GET`` answers ``{"version": 2, "groups": {group: [member, ...]}}``: whether a hub offers
it, and (from version 2) every group's members in one query, which is what a sync compares with (the REST API's
paged group models took most of the time of a sync that changes little).

Protected by its own scope, ``custom:hubfleet:enrol`` (JupyterHub custom scopes), which only the hubfleet service's
role holds: a student's token, even an admin's token without it, gets 403.
ref: https://jupyterhub.readthedocs.io/en/stable/rbac/scopes.html#custom-scopes
ref: https://jupyterhub.readthedocs.io/en/stable/reference/api/app.html#jupyterhub.app.JupyterHub.extra_handlers

Registered with ``register(c)`` from a hub's config: the local backend's ``hubconfig.py`` imports this module; a
Kubernetes hub has no hubfleet installed, so ``backends/kubernetes/values.py`` ships this file's source in
``hub.extraConfig``. Hence: JupyterHub, tornado and SQLAlchemy imports only, and nothing that needs
``from __future__`` (the source is exec'd by the chart's jupyterhub_config.py).
"""

import json
import os
import signal

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.auth import Authenticator, LocalAuthenticator
from sqlalchemy import delete, insert, select
from jupyterhub.metrics import TOTAL_USERS
from tornado import web

HUBFLEET_ENROL_SCOPE = "custom:hubfleet:enrol"
HUBFLEET_ENROL_PATH = r"/api/hubfleet/enrol"
HUBFLEET_ENROL_VERSION = 2
# Fault injection for the tests only (tests/test_bulk_enrol.py): `kill` = SIGKILL this hub after every row of the
# request is flushed to the database but before the commit; `raise` = fail at the same point.
HUBFLEET_ENROL_FAULT = "HUBFLEET_ENROL_FAULT"
_CHUNK = 500  # names per IN (...) lookup: far below SQLite's bound-parameter limit


class HubfleetEnrolHandler(APIHandler):
    """Create users and group memberships in bulk, in one transaction."""

    def _require_scope(self):
        # Not @needs_scope: it checks the scope exists when the class is defined, and custom scopes are defined
        # later, when the hub loads its roles. The same checks: credentials, then the scope (unfiltered).
        if not self.current_user:
            raise web.HTTPError(403, "Missing or invalid credentials.")
        if HUBFLEET_ENROL_SCOPE not in self.expanded_scopes:
            raise web.HTTPError(403, f"Action is not authorized with current scopes; requires {HUBFLEET_ENROL_SCOPE}")

    def get(self):
        self._require_scope()
        self.write(json.dumps({"version": HUBFLEET_ENROL_VERSION, "groups": self._memberships(self.db)}))

    def _memberships(self, db):
        """Every group (empty ones too) with its members' names, sorted: two queries whatever the hub's size."""
        tables = orm.Base.metadata.tables
        groups, users, user_groups = tables["groups"], tables["users"], tables["user_group_map"]
        out = {name: [] for name in db.execute(select(groups.c.name)).scalars()}
        joined = groups.join(user_groups, user_groups.c.group_id == groups.c.id).join(
            users, users.c.id == user_groups.c.user_id)
        for group_name, user_name in db.execute(select(groups.c.name, users.c.name).select_from(joined)):
            out[group_name].append(user_name)
        return {name: sorted(members) for name, members in out.items()}

    async def post(self):
        self._require_scope()
        body = self.get_json_body() or {}
        users, groups, remove = self._parse(body)
        if isinstance(self.authenticator, LocalAuthenticator):
            # Its add_user makes a system account per user: not something one transaction can undo. The client
            # falls back to POST /users on 501.
            raise web.HTTPError(501, "this hub's authenticator creates system accounts per user; use POST /users")
        db = self.db
        try:
            created, made_groups, added = self._write(db, users, groups)
            removed = self._remove(db, remove)
            fault = os.environ.get(HUBFLEET_ENROL_FAULT, "")
            if fault == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if fault == "raise":
                raise RuntimeError("injected fault before commit")
            db.commit()
        except Exception:
            db.rollback()
            raise
        TOTAL_USERS.inc(len(created))
        await self._add_users(created)
        self.set_status(200)
        self.write(json.dumps({
            "created": sorted(created),
            "groups_created": sorted(made_groups),
            "added": {name: n for name, n in sorted(added.items()) if n},
            "removed": {name: n for name, n in sorted(removed.items()) if n},
        }))

    def _parse(self, body):
        shape = 'expected {"users": [names], "groups": {group: [names]}, "remove": {group: [names]}}'
        if not isinstance(body, dict) or set(body) - {"users", "groups", "remove"}:
            raise web.HTTPError(400, shape)
        names = body.get("users") or []
        groups = body.get("groups") or {}
        remove = body.get("remove") or {}
        if not isinstance(names, list) or not isinstance(groups, dict) or not isinstance(remove, dict) or not all(
            isinstance(n, str) for n in names + [m for d in (groups, remove) for ms in d.values() for m in (ms or [])]
        ) or not all(isinstance(ms, list) for d in (groups, remove) for ms in d.values()):
            raise web.HTTPError(400, shape)
        normal = self.authenticator.normalize_username
        users = {normal(n) for n in names}
        groups = {str(g): {normal(n) for n in ms} for g, ms in groups.items()}
        everyone = users.union(*groups.values()) if groups else set(users)
        refused = sorted(n for n in everyone if not self.authenticator.validate_username(n))
        if refused:
            raise web.HTTPError(400, "Invalid usernames: " + ", ".join(refused[:20]) + (" ..." if len(refused) > 20 else ""))
        remove = {str(g): {normal(n) for n in ms} for g, ms in remove.items()}
        return everyone, groups, remove

    def _remove(self, db, remove):
        """Take members out of existing groups (unknown groups and non-members are no-ops: idempotent)."""
        tables = orm.Base.metadata.tables
        users, user_groups = tables["users"], tables["user_group_map"]
        removed = {}
        for group_name, members in sorted(remove.items()):
            group = orm.Group.find(db, group_name)
            if group is None or not members:
                continue
            count = 0
            ordered = sorted(members)
            for i in range(0, len(ordered), _CHUNK):
                ids = select(users.c.id).where(users.c.name.in_(ordered[i:i + _CHUNK]))
                count += db.execute(delete(user_groups).where(user_groups.c.group_id == group.id,
                                                              user_groups.c.user_id.in_(ids))).rowcount
            removed[group_name] = count
            db.expire(group, ["users"])
        for obj in list(db.identity_map.values()):
            if isinstance(obj, orm.User) and any(obj.name in ms for ms in remove.values()):
                db.expire(obj, ["groups"])
        return removed

    def _write(self, db, names, groups):
        """Insert what is missing with SQLAlchemy Core in the session's transaction (the ORM's unit of work took
        ~5 ms per user: 25 s for 5,000 on a busy machine); the caller commits or rolls back."""
        tables = orm.Base.metadata.tables
        users, spawners = tables["users"], tables["spawners"]
        user_roles, user_groups = tables["user_role_map"], tables["user_group_map"]
        ordered = sorted(names)
        ids = {}
        for i in range(0, len(ordered), _CHUNK):
            chunk = ordered[i:i + _CHUNK]
            ids.update(db.execute(select(users.c.name, users.c.id).where(users.c.name.in_(chunk))).all())
        new = [n for n in ordered if n not in ids]
        if new:
            # Column defaults (created, admin, cookie_id) are applied by Core as by the ORM.
            rows = db.execute(insert(users).returning(users.c.name, users.c.id), [{"name": n} for n in new]).all()
            ids.update(rows)
            # The end state of POST /users: the default server's spawner row and the default `user` role.
            db.execute(insert(spawners), [{"user_id": ids[n], "name": ""} for n in new])
            user_role = db.execute(select(tables["roles"].c.id).where(tables["roles"].c.name == "user")).scalar()
            if user_role is not None:
                db.execute(insert(user_roles), [{"user_id": ids[n], "role_id": user_role} for n in new])
        made_groups, added, touched = [], {}, []
        for group_name, members in sorted(groups.items()):
            group = orm.Group.find(db, group_name)
            if group is None:
                group = orm.Group(name=group_name)
                db.add(group)
                db.flush()
                made_groups.append(group_name)
            have = set(db.execute(select(user_groups.c.user_id).where(user_groups.c.group_id == group.id)).scalars())
            rows = [{"user_id": ids[n], "group_id": group.id} for n in sorted(members) if ids[n] not in have]
            if rows:
                db.execute(insert(user_groups), rows)
            added[group_name] = len(rows)
            touched.append(group)
        # The hub's session keeps loaded objects across commits (expire_on_commit=False): collections the rows
        # above changed are reloaded on next use.
        for group in touched:
            db.expire(group, ["users"])
        for obj in list(db.identity_map.values()):
            if isinstance(obj, orm.User) and obj.name in names:
                db.expire(obj, ["groups"])
            elif isinstance(obj, orm.Role) and obj.name == "user":
                db.expire(obj, ["users"])
        return new, made_groups, added

    async def _add_users(self, names):
        """What POST /users does for each new user: ``Authenticator.add_user``. The base hook only adds the name
        to ``allowed_users`` (when ``allow_existing_users``), done here for all at once; an authenticator that
        overrides it gets the call per user, with the User wrapper it expects."""
        auth = self.authenticator
        if type(auth).add_user is Authenticator.add_user:
            if auth.allow_existing_users and not auth.allow_all:
                auth.allowed_users.update(names)
            return
        for name in names:
            result = auth.add_user(self.find_user(name))
            if hasattr(result, "__await__"):
                await result


def register(c, scope_description="hubfleet's enrolment sync: create users and group memberships in bulk"):
    """Define the custom scope and mount the handler on config ``c`` (the role granting it is the caller's)."""
    custom = dict(c.JupyterHub.get("custom_scopes") or {})
    custom[HUBFLEET_ENROL_SCOPE] = {"description": scope_description}
    c.JupyterHub.custom_scopes = custom
    handlers = [h for h in (c.JupyterHub.get("extra_handlers") or []) if h[0] != HUBFLEET_ENROL_PATH]
    c.JupyterHub.extra_handlers = handlers + [(HUBFLEET_ENROL_PATH, HubfleetEnrolHandler)]
