"""Alembic environment for authgate's SQL schema.

``authgate.storage.sql.migrate`` runs it with a live connection in
``config.attributes["connection"]``; the ``alembic`` command line (for writing new
revisions) uses ``sqlalchemy.url`` from its own configuration instead.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from authgate.storage.sql.engine import make_engine
from authgate.storage.sql.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_from_url() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url, or run authgate.storage.sql.migrate(url)")

    async def go() -> None:
        engine = make_engine(url, pool_size=1)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(_run)
        finally:
            await engine.dispose()

    asyncio.run(go())


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported")

_connection = context.config.attributes.get("connection")
if _connection is not None:
    _run(_connection)
else:
    _run_from_url()
