"""SqlBase: what every part of the SQL store shares.

The engine, reads (``_read``), write transactions with their serialization retry
(``_transaction``), dialect upserts (``_insert``), the mapping of driver errors to
authgate's, and the connection a task holds while it owns SQLite's write lock.

Each write is one transaction run by ``_transaction``. PostgreSQL runs them at its default
isolation (READ COMMITTED, or whatever the server is configured with): the atomic steps
are single conditional statements (``UPDATE ... WHERE ... RETURNING``, ``INSERT ... ON
CONFLICT``) or take a row lock first, and a transaction rolled back as a serialization
failure or a deadlock runs again instead of surfacing.

SQLite runs the same bodies on the stdlib driver, one unit of work per call, without
aiosqlite's thread hops for every step of every statement. A read runs on the event loop
(WAL readers never wait for a lock, and a read of a few rows costs less than a hop). A
write transaction first runs on the event loop too, on a connection that never waits
(busy timeout 0): this process's writers already queue on ``_write_lock``, so it waits
only when another process holds SQLite's write lock, and then BEGIN IMMEDIATE fails at
once, nothing done, and the transaction runs whole in the store's one writer thread,
which waits on the busy timeout. Commits in WAL mode do not sync (synchronous NORMAL);
the loop's connections never checkpoint, the writer thread does, every
``CHECKPOINT_EVERY`` commits. A body sees an ``AsyncConnection`` either way; on SQLite
its ``execute`` returns at once, so a body that awaits anything else is a bug, refused
with RuntimeError.

PostgreSQL: a read of one statement (``_read_one``) and a write of one statement
(``_transaction(..., one_statement=True)``) run in autocommit, with no BEGIN, COMMIT or
ROLLBACK round trips around them: one statement is atomic by itself. A unit of work
first takes one of as many slots as the pool has connections, waiting at most
``POOL_QUEUE_S`` (well under the pool's own timeout and a client's), and past that is
shed as Overloaded (503 ``overloaded``, retry later): a burst is refused before the pool
runs dry, so that a pool timeout (StorageUnavailable) keeps meaning a database that does
not answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    CursorResult,
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
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from authgate.errors import Overloaded
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
# PostgreSQL: the longest wait for a free connection before a unit of work is shed.
POOL_QUEUE_S: Final = 1.0
# SQLite: a WAL checkpoint (in the writer thread) after this many commits on the loop.
CHECKPOINT_EVERY: Final = 256

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


class Prefixed:
    """A row's columns named ``prefix + name``, read as attribute ``name`` (one table's
    columns in a statement that reads several, for ``record_of``)."""

    __slots__ = ("_mapping", "_prefix")

    def __init__(self, row: Row[Any], prefix: str) -> None:
        self._mapping = row._mapping
        self._prefix = prefix

    def __getattr__(self, name: str) -> Any:
        try:
            return self._mapping[self._prefix + name]
        except KeyError:
            raise AttributeError(name) from None


@functools.cache
def _field_names(cls: type[DataclassInstance]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def record_of(cls: type[_R], row: Row[Any] | Prefixed, **overrides: Any) -> _R:
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


class _UnitOfWork:
    """What a store body needs of an ``AsyncConnection`` (``execute``), on a blocking
    SQLite connection: each statement runs at once, in the thread that drives the body."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[Any]:
        return self._conn.execute(statement, parameters)


def _as_async(conn: Connection) -> AsyncConnection:
    # The bodies are typed for AsyncConnection and use only its ``execute``.
    return cast(AsyncConnection, _UnitOfWork(conn))


def _drive(work: Coroutine[Any, Any, _T]) -> _T:
    """Run a body whose only awaits are ``_UnitOfWork.execute`` (they never suspend) to
    its end, here, in this thread."""
    try:
        work.send(None)
    except StopIteration as done:
        return cast(_T, done.value)
    work.close()
    raise RuntimeError("a SQLite unit of work awaited something other than its connection")


class _LoopReader:
    """SQLite: the event loop's kept read connection, and whether a block is using it."""

    __slots__ = ("busy", "conn")

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self.busy = False

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()


class _LoopRead:
    """SQLite: a read connection on the event loop for one ``async with`` block, with the
    driver's errors translated (what ``_read`` yields; a class, since it runs for every
    read and a generator-based context manager costs several times more).

    The block gets the loop's kept connection (a pool checkout and return cost as much as
    a small SELECT), or a pooled one while another block holds it (a block that awaited
    something else). After an error the kept connection is closed; the next block opens a
    fresh one."""

    __slots__ = ("_conn", "_errors", "_kept", "_reader", "_sync")

    def __init__(
        self, sync: Engine, errors: tuple[type[BaseException], ...], reader: _LoopReader
    ) -> None:
        self._sync = sync
        self._errors = errors
        self._reader = reader
        self._conn: Connection | None = None
        self._kept = False

    async def __aenter__(self) -> AsyncConnection:
        reader = self._reader
        try:
            if reader.busy:
                self._conn = self._sync.connect()
            else:
                conn = reader.conn
                if conn is None:
                    conn = reader.conn = self._sync.connect()
                reader.busy = self._kept = True
                self._conn = conn
        except self._errors as e:
            raise _engine.translate(e) from e
        return _as_async(self._conn)

    async def __aexit__(self, kind: object, error: BaseException | None, tb: object) -> bool:
        conn, self._conn = self._conn, None
        try:
            if self._kept:
                self._reader.busy = self._kept = False
                if error is None:
                    assert conn is not None
                    conn.rollback()  # ends the block's (autocommit) transaction
                else:
                    self._reader.close()
            elif conn is not None:
                conn.close()
        except self._errors as e:
            self._reader.close()
            if error is None:
                raise _engine.translate(e) from e
        if error is not None and isinstance(error, self._errors):
            raise _engine.translate(error) from error
        return False


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
        # SQLite: the blocking engine each unit of work runs on, and the one writer thread
        # (writes are one at a time anyway: the lock above).
        self._sync_engine: Engine | None = None
        self._sync: Engine | None = None
        self._sync_write: Engine | None = None
        self._sync_write_now: Engine | None = None
        self._sync_loop_engine: Engine | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._loop_commits = 0
        self._loop_writer: Connection | None = None  # see ``_write_on_loop``
        self._loop_reader = _LoopReader()  # see ``_LoopRead``
        if self._sqlite:
            self._sync_engine = _engine.sqlite_sync_engine(engine)
            self._sync_write = self._sync_engine.execution_options(**_engine.WRITE_OPTIONS)
            self._sync = self._sync_engine.execution_options(**{_engine.BEGIN_OPTION: "NONE"})
            self._sync_loop_engine = _engine.sqlite_sync_engine(engine, wait=False)
            self._sync_write_now = self._sync_loop_engine.execution_options(**_engine.WRITE_OPTIONS)
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="authgate-sqlite")
        # PostgreSQL: one slot per connection the pool may open, less the one kept for
        # the key lock's own connection (see ``_slot``).
        self._slots: asyncio.Semaphore | None = None
        if self._postgresql:
            pool = engine.sync_engine.pool
            capacity = int(getattr(pool, "size", lambda: 5)())
            capacity += max(0, int(getattr(pool, "_max_overflow", 0)))
            self._slots = asyncio.Semaphore(max(1, capacity - 1))
        self.shed = 0

    @property
    def engine(self) -> AsyncEngine:
        """The underlying engine (for tests and migrations)."""
        return self._engine

    @property
    def sqlite_engines(self) -> tuple[Engine, ...]:
        """SQLite: the blocking engines that run the store's reads and writes (the one
        that waits for locks, and the event loop's that never does), for tests: their
        events see every statement. None on PostgreSQL."""
        return tuple(e for e in (self._sync_engine, self._sync_loop_engine) if e is not None)

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
    async def _slot(self) -> AsyncIterator[None]:
        """Hold one of the pool's connections' slots for the block (PostgreSQL); Overloaded
        when none frees up within ``POOL_QUEUE_S``. ``shed`` counts those refusals."""
        slots = self._slots
        if slots is None:
            yield
            return
        if slots.locked():
            try:
                async with asyncio.timeout(POOL_QUEUE_S):
                    await slots.acquire()
            except TimeoutError:
                self.shed += 1
                raise Overloaded("every database connection is busy", retry_after=1) from None
        else:
            await slots.acquire()
        try:
            yield
        finally:
            slots.release()

    @asynccontextmanager
    async def _translated(self) -> AsyncIterator[None]:
        try:
            yield
        except self._errors as e:
            raise _engine.translate(e) from e

    def _read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection for reads (autocommit on SQLite: each SELECT on its own)."""
        if self._sync is not None and self._held() is None:
            return _LoopRead(self._sync, self._errors, self._loop_reader)  # no generator
        return self._read_async()

    def _read_one(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection for a read of ONE statement (one snapshot by itself): on
        PostgreSQL it runs in autocommit, without the BEGIN and ROLLBACK round trips of a
        transaction; on SQLite it is ``_read``."""
        if not self._postgresql or self._held() is not None:
            return self._read()
        return self._read_autocommit()

    @asynccontextmanager
    async def _read_autocommit(self) -> AsyncIterator[AsyncConnection]:
        async with self._translated(), self._autocommit() as conn:
            yield conn

    @asynccontextmanager
    async def _autocommit(self) -> AsyncIterator[AsyncConnection]:
        """PostgreSQL: a connection (holding a slot) on which each statement is its own
        transaction. Set on the connection itself, after the engine's own options (an
        ``isolation_level`` there would win over an option engine's AUTOCOMMIT); the pool
        resets it when the connection goes back."""
        async with self._slot(), self._engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    @asynccontextmanager
    async def _read_async(self) -> AsyncIterator[AsyncConnection]:
        held = self._held()
        async with self._translated():
            if held is not None:
                yield held
                return
            async with self._slot(), self._read_engine.connect() as conn:
                yield conn

    async def _transaction(
        self, body: Callable[[AsyncConnection], Awaitable[_T]], *, one_statement: bool = False
    ) -> _T:
        """Run ``body`` in one write transaction and return its result.

        A transaction that PostgreSQL rolls back as a serialization failure or a deadlock
        runs again, as a whole, after a short random pause (up to ``WRITE_ATTEMPTS``
        times); only then does the error surface, as StorageUnavailable.

        ``one_statement``: the body runs ONE statement, which is atomic by itself. On
        PostgreSQL it then runs in autocommit, without the BEGIN and COMMIT round trips.
        """
        held = self._held()
        if self._sync_write_now is not None and held is None:  # SQLite: no retries
            try:
                async with self._write_lock:
                    return await self._write_sqlite(body)
            except self._errors as e:
                raise _engine.translate(e) from e
        async with self._translated():
            if held is not None:
                async with held.begin_nested():
                    return await body(held)
            attempt = 1
            while True:
                try:
                    if one_statement and self._postgresql:
                        async with self._autocommit() as conn:
                            return await body(conn)
                    async with self._slot(), self._write_engine.begin() as conn:
                        return await body(conn)
                except exc.DBAPIError as e:
                    if attempt >= WRITE_ATTEMPTS or not _engine.is_retryable(e):
                        raise
                    self.retries += 1
                # Random and growing, so that the transactions that collided spread out.
                pause = min(RETRY_PAUSE_S * 2 ** (attempt - 1), MAX_RETRY_PAUSE_S)
                await asyncio.sleep(pause * secrets.randbelow(1001) / 1000)
                attempt += 1

    async def _write_sqlite(self, body: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
        """SQLite, holding ``_write_lock``: ``body`` in one BEGIN IMMEDIATE transaction, on
        the loop unless another process holds the write lock, else in the writer thread."""
        assert self._writer is not None
        loop = asyncio.get_running_loop()
        try:
            result = self._write_on_loop(body)
        except exc.OperationalError as e:
            if not _engine.is_sqlite_busy(e):
                raise
        else:
            self._loop_commits += 1
            if self._loop_commits % CHECKPOINT_EVERY == 0:
                loop.run_in_executor(self._writer, self._checkpoint)
            return result
        # Rolled back, nothing done: run it again where it may wait for the lock.
        return await loop.run_in_executor(self._writer, self._write_sync, body, self._sync_write)

    def _write_on_loop(self, body: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
        """``body`` in one BEGIN IMMEDIATE transaction of the loop's write connection, here
        and now (holding ``_write_lock``). The connection stays open between transactions
        (a pool checkout and return cost more than the statements of a small transaction);
        after any error it is closed, and the next transaction opens a fresh one."""
        conn = self._loop_writer
        if conn is None:
            assert self._sync_write_now is not None
            conn = self._loop_writer = self._sync_write_now.connect()
        try:
            with conn.begin():
                return _drive(cast(Coroutine[Any, Any, _T], body(_as_async(conn))))
        except BaseException:
            self._loop_writer = None
            conn.close()
            raise

    @staticmethod
    def _write_sync(body: Callable[[AsyncConnection], Awaitable[_T]], engine: Engine | None) -> _T:
        """``body`` in one BEGIN IMMEDIATE transaction of ``engine``, here and now."""
        assert engine is not None
        with engine.begin() as conn:
            return _drive(cast(Coroutine[Any, Any, _T], body(_as_async(conn))))

    def _checkpoint(self) -> None:
        """SQLite, in the writer thread: move the WAL's pages into the database file (what
        the loop's connections never do by themselves). A failure waits for the next."""
        assert self._sync is not None
        try:
            with self._sync.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except exc.SQLAlchemyError:  # busy or closing: the next checkpoint catches up
            pass

    async def _execute(self, statement: Executable) -> int:
        """Run one write statement in its own transaction; the number of rows it matched."""

        async def _body(conn: AsyncConnection) -> int:
            return (await conn.execute(statement)).rowcount

        return await self._transaction(_body, one_statement=True)

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
        writer, self._loop_writer = self._loop_writer, None
        if writer is not None:
            writer.close()
        self._loop_reader.close()
        await self._engine.dispose()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
        for sync_engine in (self._sync_engine, self._sync_loop_engine):
            if sync_engine is not None:
                sync_engine.dispose()
