"""Database tuning for each local hub, applied from the hub's own config (``jupyterhub_config.py``).

Call :func:`tune_hub` from the hub config (it runs before JupyterHub creates its engine). It installs:

1. :func:`tune_sqlite`: WAL + synchronous=NORMAL on every SQLite connection.
   JupyterHub commits three times per created user (see below); with SQLite's defaults (rollback journal,
   synchronous=FULL) every commit is an fsync, so enrolling 1,000 students took ~22 s here. In WAL mode with
   synchronous=NORMAL a commit is an append to the WAL, still atomic and safe against a crashed process (only an
   OS crash or power cut can lose the last commits, never corrupt the db).
   ref: https://www.sqlite.org/wal.html  ref: https://www.sqlite.org/pragma.html#pragma_synchronous

2. :func:`skip_sqlite_ping` and 3. :func:`cache_default_role_lookups`: cut the per-user CPU cost of user creation.

Why user creation is slow (profiled with py-spy on JupyterHub 6.1.1 / SQLAlchemy 2.1):
``POST /hub/api/users {"usernames": [...]}`` is *not* a batch insert; it runs the single-user path once per name
(ref: jupyterhub/apihandlers/users.py UserListAPIHandler.post, lines 241-276):

* ``find_user`` (users.py:246), then ``user_from_username`` (handlers/base.py:620-631) which looks the name up
  again, ``assign_default_roles`` + commit, ``TOTAL_USERS.inc()`` + commit, builds ``User`` (user.py:243-244:
  lazy-loads ``_orm_spawners``, creates the default ``Spawner`` row + commit), then ``assign_default_roles``
  *again* (users.py:267) and another commit (users.py:268).
* ``assign_default_roles`` (roles.py:310-334) looks up the ``admin`` and ``user`` roles *by name* each call
  (``orm.Role.find``, orm.py:236-241): 4 ``SELECT roles WHERE name=?`` per created user.
* Every session transaction checks out a connection, and JupyterHub's ``register_ping_connection``
  (orm.py:1447-1505, registered at orm.py:1626) runs ``BEGIN; SELECT 1; COMMIT`` on every ``engine_connect``.

Counted with a statement listener, 1,000 users = 15 statements/user (4 role lookups, 2 user lookups, 3 pings,
3 inserts, 3 relationship loads) in 3 session transactions. That is ~5-6 ms of hub CPU per user, constant:
1,000 / 2,000 / 4,000 / 8,000 users in one POST, and four POSTs of 2,000 into a hub growing to 8,000 users,
all cost the same per user
(so the cost is not quadratic; the ``role.users`` lazy-load and expire-on-commit suspects were ruled out:
no ``SELECT ... user_role_map.role_id`` is ever emitted, and the session is built with
``expire_on_commit=False``, orm.py:1604/1642). The two hooks below remove the role lookups and the pings,
~25-30 % of that CPU, without changing what is written to the database.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

_installed: set[str] = set()


def tune_hub() -> None:
    """Install every hook below. Call it from the hub config file (before JupyterHub connects to its db)."""
    tune_sqlite()
    skip_sqlite_ping()
    cache_default_role_lookups()


def tune_sqlite() -> None:
    """Register a connect hook setting WAL + synchronous=NORMAL on every SQLite connection."""
    if "sqlite" in _installed:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _pragmas(dbapi_connection, _record):  # pragma: no cover - runs inside the hub process
        if type(dbapi_connection).__module__.startswith("sqlite3"):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    _installed.add("sqlite")


def skip_sqlite_ping() -> None:
    """Do not register JupyterHub's "pessimistic disconnect" ping on SQLite engines.

    JupyterHub runs ``BEGIN; SELECT 1; COMMIT`` through the full SQLAlchemy Core stack every time its session
    starts a transaction (three times per created user), to detect database *server* connections dropped by the
    network or a server restart. A SQLite connection is a file handle in the hub process: it cannot be dropped,
    so for SQLite the ping is pure overhead. Server databases (PostgreSQL, MySQL) keep the ping unchanged.
    JupyterHub looks the function up as a module global when it builds its engine (orm.new_session_factory), so
    replacing it from the config file, which JupyterHub loads before ``init_db``, takes effect.
    ref: https://github.com/jupyterhub/jupyterhub/blob/6.1.1/jupyterhub/orm.py#L1447-L1505 (ping)
    ref: https://github.com/jupyterhub/jupyterhub/blob/6.1.1/jupyterhub/orm.py#L1625-L1626 (registration)
    ref: https://docs.sqlalchemy.org/en/20/core/pooling.html#disconnect-handling-pessimistic
    """
    if "ping" in _installed:
        return
    from jupyterhub import orm

    original = getattr(orm, "register_ping_connection", None)
    if original is None:  # a JupyterHub without it: nothing to skip
        log.warning("hubfleet: jupyterhub.orm.register_ping_connection not found; SQLite ping left as is")
        _installed.add("ping")
        return

    def register_ping_connection(engine):  # pragma: no cover - runs inside the hub process
        if engine.dialect.name == "sqlite":
            return None
        return original(engine)

    register_ping_connection.__wrapped__ = original  # type: ignore[attr-defined]
    orm.register_ping_connection = register_ping_connection
    _installed.add("ping")


# The roles JupyterHub grants by name to every user it creates (roles.assign_default_roles). Only these are cached.
_DEFAULT_ROLES = frozenset({"user", "admin"})


def cache_default_role_lookups() -> None:
    """Remember the ``user`` and ``admin`` Role rows per session instead of a ``SELECT`` per lookup.

    ``roles.assign_default_roles`` (called twice per created user) calls ``orm.Role.find(db, 'admin')`` and
    ``orm.Role.find(db, 'user')``; each is a query (and an autoflush). The hub uses one long-lived session with
    ``expire_on_commit=False``, so the query returns the *same* identity-mapped object every time; we return that
    object directly while it is still a live, persistent row of the same session with the same name. Anything
    else (another session, a role deleted or pending deletion, rolled back, renamed, other role names, no cached
    object yet) falls through to the original query, so role management at startup (``init_role_creation``,
    which may delete and recreate roles) behaves exactly as before.
    Upstream did the same for the hub's startup loop: https://github.com/jupyterhub/jupyterhub/pull/4496
    ref: https://github.com/jupyterhub/jupyterhub/blob/6.1.1/jupyterhub/roles.py#L310-L334 (assign_default_roles)
    ref: https://github.com/jupyterhub/jupyterhub/blob/6.1.1/jupyterhub/orm.py#L236-L241 (Role.find)
    ref: https://docs.sqlalchemy.org/en/20/orm/session_api.html#sqlalchemy.orm.Session.info (per-session cache)
    """
    if "roles" in _installed:
        return
    from jupyterhub import orm
    from sqlalchemy import exc, inspect

    find = orm.Role.__dict__.get("find")
    if not isinstance(find, classmethod):
        log.warning("hubfleet: jupyterhub.orm.Role.find is not a classmethod; role lookups left uncached")
        _installed.add("roles")
        return
    original = find.__func__

    def cached_find(cls, db, name):  # pragma: no cover - runs inside the hub process
        if name not in _DEFAULT_ROLES:
            return original(cls, db, name)
        key = ("hubfleet.default_role", cls, name)
        role = db.info.get(key)
        if role is not None:
            try:
                state = inspect(role)
                if state.persistent and state.session is db and role not in db.deleted and role.name == name:
                    return role
            except exc.SQLAlchemyError:
                pass
            db.info.pop(key, None)
        role = original(cls, db, name)
        if role is not None:
            db.info[key] = role
        return role

    cached_find.__wrapped__ = original  # type: ignore[attr-defined]
    orm.Role.find = classmethod(cached_find)
    _installed.add("roles")
