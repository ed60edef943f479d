"""The SQL storage backend: SQLite (aiosqlite) and PostgreSQL (asyncpg) on SQLAlchemy Core.

``open_storage(url)`` gives a ``SqlStorage``; ``migrate(url)`` brings the schema to the
latest revision (idempotent; safe to run from several processes at once).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy.engine import Connection

from authgate.errors import StorageError
from authgate.storage.sql.engine import (
    WRITE_OPTIONS,
    async_url,
    driver_errors,
    is_postgresql,
    make_engine,
    translate,
)
from authgate.storage.sql.locks import PG_MIGRATE_LOCK, xact_lock
from authgate.storage.sql.store import SqlStorage
from authgate.storage.sql.tables import metadata

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    """An Alembic Config for the migrations inside this package (no alembic.ini)."""
    config = Config()
    # ConfigParser interpolates '%': escape it in the path.
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    return config


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(url: str) -> None:
    """Apply every pending migration to the database at ``url``, in one transaction.

    Idempotent. Concurrent callers queue (SQLite: BEGIN IMMEDIATE; PostgreSQL: an
    advisory lock). Raises ConfigurationError for a bad URL, StorageUnavailable if the
    database cannot be reached, and StorageError if a migration fails.
    """
    engine = make_engine(url, pool_size=1)
    errors = driver_errors(engine)
    try:
        async with engine.execution_options(**WRITE_OPTIONS).begin() as conn:
            if is_postgresql(engine):
                await xact_lock(conn, PG_MIGRATE_LOCK)
            await conn.run_sync(_upgrade)
    except CommandError as e:
        raise StorageError(f"migration failed: {e}") from e
    except errors as e:
        raise translate(e) from e
    finally:
        await engine.dispose()


async def open_storage(url: str, *, pool_size: int = 5) -> SqlStorage:
    """A SqlStorage for ``sqlite:///PATH`` or ``postgresql://...``.

    A PostgreSQL URL may select a schema with ``?search_path=SCHEMA`` (it must exist;
    ``migrate`` creates the tables there). It connects lazily; call ``ping()`` to check
    the database, and ``migrate(url)`` first. Raises ConfigurationError for an
    unsupported or malformed URL (``search_path`` on SQLite), or a missing driver.
    """
    return SqlStorage(make_engine(url, pool_size=pool_size))


__all__ = [
    "SqlStorage",
    "alembic_config",
    "async_url",
    "metadata",
    "migrate",
    "open_storage",
]
