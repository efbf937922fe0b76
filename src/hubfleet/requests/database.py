"""The request database: an engine for a URL, migrated to head by Alembic, and sessions on it.

SQLite (``sqlite:///<state>/requests.db``, the default, embedded) or PostgreSQL
(``postgresql+psycopg://user@host/db``) for production. Migrations run from the package's own
``migrations/`` folder through Alembic's API, so no ``alembic.ini`` has to be shipped or found.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["Database", "default_url", "migrate"]

MIGRATIONS = Path(__file__).parent / "migrations"


def default_url(state: Path) -> str:
    return f"sqlite:///{Path(state) / 'requests.db'}"


def _alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # A '%' in a password would be read as interpolation by configparser.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (idempotent)."""
    command.upgrade(_alembic_config(url), revision)


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # Several portal threads share the file; a writer waits for another instead of failing at once.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record):  # noqa: ANN001
            cur = conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


class Database:
    """One engine and its session factory; ``migrate_now`` runs the migrations first (the portal does)."""

    def __init__(self, url: str, *, migrate_now: bool = True) -> None:
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            path.parent.mkdir(parents=True, exist_ok=True)
            # Requests hold rosters (usernames): readable by the fleet's operator only, from the first byte.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        if migrate_now:
            migrate(url)
        self.url = url
        self.engine = _engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back on an exception."""
        with self._sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
