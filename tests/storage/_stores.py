"""Stores opened for one test or fixture and closed however it ends, and databases left at
an older schema revision (for the migration tests)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Protocol, TypeVar

from alembic import command
from sqlalchemy.engine import Connection

from authgate.storage.sql import SqlStorage, alembic_config, open_storage


class _Closable(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


@contextlib.asynccontextmanager
async def closed_after(opening: Awaitable[C]) -> AsyncIterator[C]:
    """What ``opening`` gives (a store, a raw connection), closed at the end of the block."""
    resource = await opening
    try:
        yield resource
    finally:
        await resource.close()


def opened(url: str) -> contextlib.AbstractAsyncContextManager[SqlStorage]:
    """A SqlStorage on ``url``, closed at the end of the block."""
    return closed_after(open_storage(url))


def upgrade_to(connection: Connection, revision: str) -> None:
    """Migrate the database behind ``connection`` up to ``revision`` (not to head)."""
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


@contextlib.asynccontextmanager
async def at_revision(url: str, revision: str) -> AsyncIterator[SqlStorage]:
    """A store on the empty database at ``url``, migrated only up to ``revision``."""
    async with opened(url) as store:
        async with store.engine.begin() as conn:
            await conn.run_sync(upgrade_to, revision)
        yield store
