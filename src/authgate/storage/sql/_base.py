"""SqlBase: what every part of the SQL store shares.

The engine, reads (``_read``), write transactions with their serialization retry
(``_transaction``), dialect upserts (``_insert``), the mapping of driver errors to
authgate's, and the connection a task holds while it owns SQLite's write lock.

Each write is one transaction run by ``_transaction``. PostgreSQL runs them at its default
isolation (READ COMMITTED, or whatever the server is configured with): the atomic steps
are single conditional statements (``UPDATE ... WHERE ... RETURNING``, ``INSERT ... ON
CONFLICT``) or take a row lock first, and a transaction rolled back as a serialization
failure or a deadlock runs again instead of surfacing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final, TypeVar

from sqlalchemy import (
    ColumnElement,
    Executable,
    Row,
    Table,
    Update,
    exc,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from authgate.storage.sql import engine as _engine

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_T = TypeVar("_T")
_R = TypeVar("_R", bound="DataclassInstance")

# How often a write transaction runs before a serialization failure or deadlock surfaces,
# and the longest pause (seconds) before the first rerun; it doubles up to the cap.
WRITE_ATTEMPTS: Final = 16
RETRY_PAUSE_S: Final = 0.005
MAX_RETRY_PAUSE_S: Final = 0.25

# The connection that a task holds with SQLite's write lock (key_lock), with its store and
# task: the store's calls made by that task run on it (in a SAVEPOINT), since SQLite allows
# one writer at a time.
_HELD: ContextVar[tuple[SqlBase, asyncio.Task[Any], AsyncConnection] | None] = ContextVar(
    "authgate_sql_held", default=None
)


def dumps(value: Any) -> str:
    """The stored form of a JSON value: compact, keys sorted, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def names(values: Iterable[str]) -> tuple[str, ...]:
    """A set of names in its stored form: unique and sorted."""
    return tuple(sorted(set(values)))


@functools.cache
def _field_names(cls: type[DataclassInstance]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def record_of(cls: type[_R], row: Row[Any], **overrides: Any) -> _R:
    """A record from a row: each field from the column of the same name, except those
    given in ``overrides`` (the fields whose stored form differs)."""
    values = {name: getattr(row, name) for name in _field_names(cls) if name not in overrides}
    return cls(**values, **overrides)


def values_of(record: DataclassInstance, table: Table, **overrides: Any) -> dict[str, Any]:
    """The INSERT values of ``record`` for ``table``: for each column, the field of the
    same name, or its stored form from ``overrides``."""
    return {
        column.name: (
            overrides[column.name] if column.name in overrides else getattr(record, column.name)
        )
        for column in table.columns
    }


def not_revoked(table: Table) -> ColumnElement[bool]:
    """The rows of ``table`` not revoked yet (``revoked_at IS NULL``)."""
    return table.c.revoked_at.is_(None)


def mark_revoked(table: Table, *where: ColumnElement[bool], now: float) -> Update:
    """Set ``revoked_at = now`` on the rows matched that are not revoked yet.

    The ``revoked_at IS NULL`` condition is part of the statement, so that a row is revoked
    once and keeps its first time, and a caller learns from the row count (or RETURNING)
    whether it was the one that revoked it.
    """
    return update(table).where(*where, not_revoked(table)).values(revoked_at=now)


class SqlBase:
    """The engine and transactions of the SQL store, and its error translation.

    Every method that touches the database runs inside ``_read`` or ``_transaction``,
    which map driver errors to ``Conflict``, ``StorageUnavailable`` or ``StorageError``.
    ``retries`` counts the write transactions run again after a serialization failure or
    a deadlock (PostgreSQL).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._write_engine = engine.execution_options(**_engine.WRITE_OPTIONS)
        self._read_engine = (
            engine.execution_options(**{_engine.BEGIN_OPTION: "NONE"})
            if _engine.is_sqlite(engine)
            else engine
        )
        self._sqlite = _engine.is_sqlite(engine)
        self._postgresql = _engine.is_postgresql(engine)
        self._errors = _engine.driver_errors(engine)
        # SQLite has one writer at a time: queue this process's writers here rather than
        # on the busy handler (other processes still queue on the busy timeout).
        self._write_lock = asyncio.Lock()
        self.retries = 0

    @property
    def engine(self) -> AsyncEngine:
        """The underlying engine (for tests and migrations)."""
        return self._engine

    # -- the held connection -----------------------------------------------------------

    def _held(self) -> AsyncConnection | None:
        held = _HELD.get()
        if held is None:
            return None
        owner, task, conn = held
        if owner is self and task is asyncio.current_task():
            return conn
        return None

    @contextmanager
    def _holding(self, task: asyncio.Task[Any], conn: AsyncConnection) -> Iterator[None]:
        """For the block, run this store's calls made by ``task`` on ``conn``."""
        token = _HELD.set((self, task, conn))
        try:
            yield
        finally:
            _HELD.reset(token)

    # -- transactions ------------------------------------------------------------------

    @asynccontextmanager
    async def _translated(self) -> AsyncIterator[None]:
        try:
            yield
        except self._errors as e:
            raise _engine.translate(e) from e

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        held = self._held()
        async with self._translated():
            if held is not None:
                yield held
                return
            async with self._read_engine.connect() as conn:
                yield conn

    async def _transaction(self, body: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
        """Run ``body`` in one write transaction and return its result.

        A transaction that PostgreSQL rolls back as a serialization failure or a deadlock
        runs again, as a whole, after a short random pause (up to ``WRITE_ATTEMPTS``
        times); only then does the error surface, as StorageUnavailable.
        """
        held = self._held()
        async with self._translated():
            if held is not None:
                async with held.begin_nested():
                    return await body(held)
            attempt = 1
            while True:
                try:
                    if self._sqlite:
                        async with self._write_lock, self._write_engine.begin() as conn:
                            return await body(conn)
                    async with self._write_engine.begin() as conn:
                        return await body(conn)
                except exc.DBAPIError as e:
                    if attempt >= WRITE_ATTEMPTS or not _engine.is_retryable(e):
                        raise
                    self.retries += 1
                # Random and growing, so that the transactions that collided spread out.
                pause = min(RETRY_PAUSE_S * 2 ** (attempt - 1), MAX_RETRY_PAUSE_S)
                await asyncio.sleep(pause * secrets.randbelow(1001) / 1000)
                attempt += 1

    async def _execute(self, statement: Executable) -> int:
        """Run one write statement in its own transaction; the number of rows it matched."""

        async def _body(conn: AsyncConnection) -> int:
            return (await conn.execute(statement)).rowcount

        return await self._transaction(_body)

    async def _changed_one(self, statement: Executable) -> bool:
        """Run one write statement in its own transaction; True if it matched one row."""
        return await self._execute(statement) == 1

    def _insert(self, table: Table) -> Any:
        """An INSERT that supports ``on_conflict_do_update`` on this dialect."""
        if self._postgresql:
            return pg_dialect.insert(table)
        if self._sqlite:
            return sqlite_dialect.insert(table)
        raise NotImplementedError(self._engine.dialect.name)  # pragma: no cover

    # -- Database ----------------------------------------------------------------------

    async def ping(self) -> None:
        """Run ``SELECT 1``; raise StorageUnavailable if the database cannot answer."""
        async with self._read() as conn:
            await conn.execute(select(literal(1)))

    async def close(self) -> None:
        """Release every connection."""
        await self._engine.dispose()
