"""KeyStore on SQL: signing keys (encrypted at rest by the service) and the rotation lock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from authgate.storage.base import KeyRecord, KeyState
from authgate.storage.sql._base import SqlBase, record_of, values_of
from authgate.storage.sql.locks import PG_KEY_LOCK, xact_lock
from authgate.storage.sql.tables import keys


class SqlKeys(SqlBase):
    """KeyStore: the stored keys, and ``key_lock`` so that one instance rotates at a time."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self._key_mutex = asyncio.Lock()
        self._key_owner: asyncio.Task[Any] | None = None

    async def list_keys(self) -> list[KeyRecord]:
        """Every stored key, oldest first."""
        async with self._read_one() as conn:
            rows = (await conn.execute(select(keys).order_by(keys.c.created_at, keys.c.kid))).all()
        return [
            record_of(
                KeyRecord,
                row,
                encrypted_private=None
                if row.encrypted_private is None
                else bytes(row.encrypted_private),
            )
            for row in rows
        ]

    async def insert_key(self, key: KeyRecord) -> None:
        """Store a new key; Conflict if the kid exists."""
        await self._execute(keys.insert().values(values_of(key, keys)))

    async def update_key(
        self,
        kid: str,
        *,
        state: KeyState,
        activated_at: float | None = None,
        retired_at: float | None = None,
        expires_at: float | None = None,
        drop_private: bool = False,
    ) -> None:
        """Move a key to ``state``, setting the given (non-None) times; with
        ``drop_private``, erase its private part. An unknown kid changes nothing."""
        values: dict[str, Any] = {"state": state}
        if activated_at is not None:
            values["activated_at"] = activated_at
        if retired_at is not None:
            values["retired_at"] = retired_at
        if expires_at is not None:
            values["expires_at"] = expires_at
        if drop_private:
            values["encrypted_private"] = None
        await self._execute(update(keys).where(keys.c.kid == kid).values(values))

    def key_lock(self) -> AbstractAsyncContextManager[None]:
        """Held while rotating keys, so that only one instance rotates at a time.

        PostgreSQL: a transaction-scoped advisory lock, held on a connection of its own.
        SQLite: a ``BEGIN IMMEDIATE`` transaction (SQLite's write lock) held for the whole
        block; this store's calls made by the same task inside the block run in that
        transaction, and commit when the block exits (they roll back if it raises).
        Writes from other tasks wait until the block exits.
        """
        return self._key_lock()

    @asynccontextmanager
    async def _key_lock(self) -> AsyncIterator[None]:
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - always called from a task
            raise RuntimeError("key_lock needs a running task")
        if self._key_owner is task:  # re-entered by the task that holds it
            yield
            return
        if self._sqlite:
            async with (
                self._write_lock,
                self._translated(),
                self._write_engine.connect() as conn,
                conn.begin(),  # BEGIN IMMEDIATE: SQLite's write lock, until commit
            ):
                with self._holding(task, conn), self._owned_by(task):
                    yield
            return
        async with (
            self._key_mutex,
            self._translated(),
            self._engine.connect() as conn,
            conn.begin(),  # the advisory lock is released when this transaction ends
        ):
            await xact_lock(conn, PG_KEY_LOCK)
            with self._owned_by(task):
                yield

    @contextmanager
    def _owned_by(self, task: asyncio.Task[Any]) -> Iterator[None]:
        """For the block, ``task`` holds the key lock (and may re-enter it)."""
        self._key_owner = task
        try:
            yield
        finally:
            self._key_owner = None
