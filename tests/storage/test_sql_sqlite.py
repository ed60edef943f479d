"""What is particular to the SQLite backend: URL mapping, PRAGMAs, BEGIN IMMEDIATE for
writers, key_lock as a held write transaction, and driver errors mapped to ours."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, exc, text

from authgate.errors import (
    ConfigurationError,
    Conflict,
    StorageError,
    StorageUnavailable,
)
from authgate.storage.base import KeyRecord
from authgate.storage.sql import SqlStorage, async_url, migrate, open_storage
from authgate.storage.sql import _base as sql_base
from authgate.storage.sql import engine as sql_engine

from ._records import T0, user
from ._stores import opened

pytestmark = pytest.mark.anyio


@pytest.fixture
async def url(tmp_path: Path, anyio_backend: str) -> str:
    database = f"sqlite:///{tmp_path / 'authgate.db'}"
    await migrate(database)
    return database


@pytest.fixture
async def store(url: str) -> AsyncIterator[SqlStorage]:
    async with opened(url) as s:
        yield s


@pytest.fixture
async def settle_worker_threads(anyio_backend: str) -> AsyncIterator[None]:
    """aiosqlite stops the worker thread of a connection that failed to open without
    waiting for it; wait here, or it reports to an event loop that pytest has closed."""
    before = set(threading.enumerate())
    yield
    for _ in range(500):
        if not any(t.is_alive() for t in threading.enumerate() if t not in before):
            break
        await asyncio.sleep(0.01)


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections opened from now on give up on a lock after 100 ms, not 5 s."""
    monkeypatch.setattr(sql_engine, "SQLITE_BUSY_TIMEOUT_MS", 100)


@contextlib.contextmanager
def listening(store: SqlStorage, fn: Callable[..., None]) -> Iterator[None]:
    """``fn`` on ``before_cursor_execute`` of every engine the store runs statements on."""
    engines = store.sqlite_engines
    assert engines
    for engine in engines:
        event.listen(engine, "before_cursor_execute", fn)
    try:
        yield
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", fn)


def _file(url: str) -> str:
    return url.removeprefix("sqlite:///")


def _key(kid: str) -> KeyRecord:
    return KeyRecord(kid, "ES256", "next", "{}", b"ciphertext", T0)


# -- URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///./authgate.db", "sqlite+aiosqlite:///./authgate.db"),
        ("sqlite:////var/lib/authgate/a.db", "sqlite+aiosqlite:////var/lib/authgate/a.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u:p@db.example:5432/auth", "postgresql+asyncpg://u:p@db.example:5432/auth"),
        ("postgres://u:p@db/auth", "postgresql+asyncpg://u:p@db/auth"),
        ("postgresql+asyncpg://u@db/auth", "postgresql+asyncpg://u@db/auth"),
    ],
)
def test_async_url(given: str, expected: str) -> None:
    assert async_url(given).render_as_string(hide_password=False) == expected


@pytest.mark.parametrize(
    "given",
    [
        "mysql://u:p@db/auth",
        "sqlite://",
        "sqlite:///:memory:",
        "not a url",
        "postgresql+psycopg://db/a",
        "sqlite:///x.db?search_path=authgate",  # a PostgreSQL option
        "postgresql://u@db/auth?search_path=%20",
        "postgresql://u@db/auth?search_path=a&search_path=b",
    ],
)
async def test_unsupported_urls_are_configuration_errors(given: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        await open_storage(given)
    assert info.value.code == "invalid_configuration"


def test_search_path_is_not_passed_to_the_driver_as_a_keyword() -> None:
    """asyncpg.connect() has no such keyword: it becomes a server setting (its effect is
    tested against a server in test_sql_postgresql.py)."""
    pytest.importorskip("asyncpg")
    engine = sql_engine.make_engine("postgresql://u@db.example/auth?search_path=tenant_1")
    try:
        assert "search_path" not in engine.url.query
        _, kwargs = engine.dialect.create_connect_args(engine.url)
        assert "search_path" not in kwargs
        assert kwargs["database"] == "auth"
    finally:
        engine.sync_engine.dispose()


async def test_missing_postgres_driver_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # as if it were not installed
    with pytest.raises(ConfigurationError) as info:
        await open_storage("postgresql://u:p@localhost/auth")
    assert info.value.code == "invalid_configuration"
    assert "postgres" in info.value.reason


# -- connection settings and transactions ------------------------------------------------


async def test_pragmas(store: SqlStorage) -> None:
    async with store.engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
        assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 5000
        assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 1  # NORMAL


async def test_writes_begin_immediate_and_reads_take_no_transaction(store: SqlStorage) -> None:
    statements: list[str] = []

    def capture(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    with listening(store, capture):
        await store.create_user(user("u1"))
        assert statements[0] == "BEGIN IMMEDIATE"
        assert statements[1].startswith("INSERT INTO users")
        statements.clear()
        await store.get_user("u1")
        # A read runs its SELECTs on their own: no BEGIN, so no write lock is ever taken.
        assert statements
        assert all(st.startswith("SELECT") for st in statements)
        statements.clear()
        await store.hit("k", now=T0, window=1)
        assert statements[0] == "BEGIN IMMEDIATE"


async def test_a_read_then_write_waits_for_another_writer(url: str, store: SqlStorage) -> None:
    """set_roles reads, then writes. Under a deferred BEGIN its read snapshot would be
    stale once the other writer commits, and SQLite would refuse the upgrade at once."""
    await store.create_user(user("u1"))
    await store.ping()
    begun = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_begin(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # The write waits in the store's writer thread: wake the loop from there.
        if statement.startswith("BEGIN"):
            loop.call_soon_threadsafe(begun.set)

    other = sqlite3.connect(_file(url), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO counters VALUES ('other-process', 1, 0)")
        with listening(store, on_begin):
            task = asyncio.create_task(store.set_roles("u1", ["editor"]))
            await asyncio.wait_for(begun.wait(), 5)
            await asyncio.sleep(0.2)  # let it reach the lock (a wrong BEGIN would get further)
            assert not task.done()
            other.execute("COMMIT")
            assert await asyncio.wait_for(task, 10) == 1
    finally:
        other.close()
    got = await store.get_user("u1")
    assert got is not None
    assert got.roles == ("editor",)


async def test_reads_go_on_while_another_process_writes(url: str, store: SqlStorage) -> None:
    await store.create_user(user("u1"))
    other = sqlite3.connect(_file(url), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE users SET name = 'uncommitted'")
        got = await store.get_user("u1")  # WAL: readers do not wait for the writer
        assert got is not None
        assert got.name == "User u1"
    finally:
        other.execute("ROLLBACK")
        other.close()


# -- key_lock ----------------------------------------------------------------------------


async def test_key_lock_commits_on_exit_and_rolls_back_on_error(
    url: str, store: SqlStorage
) -> None:
    async with opened(url) as observer:
        async with store.key_lock():
            await store.insert_key(_key("k1"))
            assert [k.kid for k in await store.list_keys()] == ["k1"]
            assert await observer.list_keys() == []  # not committed yet
        assert [k.kid for k in await observer.list_keys()] == ["k1"]

        async def rotate_then_fail() -> None:
            async with store.key_lock():
                await store.insert_key(_key("k2"))
                await store.update_key("k1", state="current", activated_at=T0)
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await rotate_then_fail()
        assert [(k.kid, k.state) for k in await observer.list_keys()] == [("k1", "next")]


async def test_key_lock_is_reentrant_for_its_task(store: SqlStorage) -> None:
    async with store.key_lock(), store.key_lock():
        await store.insert_key(_key("k1"))
    assert [k.kid for k in await store.list_keys()] == ["k1"]


async def test_key_lock_excludes_another_engine(url: str, short_busy_timeout: None) -> None:
    async with opened(url) as first, opened(url) as second:
        async with first.key_lock():
            await first.insert_key(_key("k1"))
            with pytest.raises(StorageUnavailable) as info:
                async with second.key_lock():
                    pytest.fail("two engines held key_lock at once")
            assert info.value.code == "storage_unavailable"
        async with second.key_lock():
            assert [k.kid for k in await second.list_keys()] == ["k1"]
            await second.insert_key(_key("k2"))
        assert [k.kid for k in await first.list_keys()] == ["k1", "k2"]


async def test_other_tasks_writes_wait_for_key_lock(store: SqlStorage) -> None:
    async with store.key_lock():
        writer = asyncio.create_task(store.create_user(user("u1")))
        reader = asyncio.create_task(store.list_keys())
        for _ in range(20):
            await asyncio.sleep(0)
        assert await reader == []  # reads are not blocked
        assert not writer.done()
        await store.insert_key(_key("k1"))
    await asyncio.wait_for(writer, 5)
    assert await store.get_user("u1") is not None


# -- errors ------------------------------------------------------------------------------


async def test_locked_database_is_storage_unavailable(url: str, short_busy_timeout: None) -> None:
    store = await open_storage(url)
    other = sqlite3.connect(_file(url), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageUnavailable) as info:
            await store.create_user(user("u1"))
        assert info.value.code == "storage_unavailable"
        assert isinstance(info.value.__cause__, exc.OperationalError)
        other.execute("ROLLBACK")
        await store.create_user(user("u1"))  # and it recovers
    finally:
        other.close()
        await store.close()


@pytest.mark.usefixtures("settle_worker_threads")
async def test_unreachable_database_is_storage_unavailable(tmp_path: Path) -> None:
    async with opened(f"sqlite:///{tmp_path / 'missing-dir' / 'a.db'}") as store:
        with pytest.raises(StorageUnavailable) as info:
            await store.ping()
        assert info.value.code == "storage_unavailable"
        with pytest.raises(StorageUnavailable):
            await store.get_user("u1")
        with pytest.raises(StorageUnavailable):
            await store.create_user(user("u1"))


@pytest.mark.usefixtures("settle_worker_threads")
async def test_migrate_unreachable_database_is_storage_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StorageUnavailable) as info:
        await migrate(f"sqlite:///{tmp_path / 'missing-dir' / 'a.db'}")
    assert info.value.code == "storage_unavailable"


async def test_unmigrated_database_is_a_storage_error(tmp_path: Path) -> None:
    async with opened(f"sqlite:///{tmp_path / 'empty.db'}") as store:
        await store.ping()  # reachable
        with pytest.raises(StorageError) as info:
            await store.get_user("u1")
        assert type(info.value) is StorageError
        assert info.value.code == "storage_error"


class _DriverError(Exception):
    """A stand-in for an asyncpg error: it carries a SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def _wrapped(cls: type[exc.DBAPIError], sqlstate: str, **kw: Any) -> exc.DBAPIError:
    params = {"password_hash": "SECRET-HASH"}
    return cls("INSERT INTO users VALUES (...)", params, _DriverError(sqlstate), **kw)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_wrapped(exc.IntegrityError, "23505"), Conflict),
        (_wrapped(exc.IntegrityError, "23503"), StorageError),  # foreign key
        (_wrapped(exc.OperationalError, "08006"), StorageUnavailable),
        (_wrapped(exc.OperationalError, "57P01"), StorageUnavailable),
        (_wrapped(exc.OperationalError, "42P01"), StorageError),  # no such table
        (_wrapped(exc.InterfaceError, "08003"), StorageUnavailable),
        (_wrapped(exc.ProgrammingError, "42601"), StorageError),
        (_wrapped(exc.DBAPIError, "XX000", connection_invalidated=True), StorageUnavailable),
        (exc.TimeoutError("QueuePool limit reached"), StorageUnavailable),
        (ConnectionRefusedError(111, "refused"), StorageUnavailable),
        (TimeoutError(), StorageUnavailable),
        (_DriverError("23505"), Conflict),
        (_DriverError("53300"), StorageUnavailable),  # too many connections
        (_DriverError("22P02"), StorageError),
        (exc.NoSuchTableError("users"), StorageError),
        # Serialization failure and deadlock: the store retries; past its retries they
        # are contention, which passes.
        (_wrapped(exc.DBAPIError, "40001"), StorageUnavailable),
        (_wrapped(exc.OperationalError, "40P01"), StorageUnavailable),
        (_DriverError("40001"), StorageUnavailable),
    ],
)
def test_translate(error: BaseException, expected: type[StorageError]) -> None:
    mapped = sql_engine.translate(error)
    assert type(mapped) is expected
    assert mapped.code == expected.code
    assert "SECRET-HASH" not in mapped.reason


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_wrapped(exc.DBAPIError, "40001"), True),
        (_wrapped(exc.OperationalError, "40P01"), True),
        (_DriverError("40P01"), True),
        (_wrapped(exc.IntegrityError, "23505"), False),
        (_wrapped(exc.OperationalError, "40003"), False),  # statement_completion_unknown
        (_wrapped(exc.OperationalError, "08006"), False),
        (exc.OperationalError("BEGIN", {}, sqlite3.OperationalError("database is locked")), False),
        (TimeoutError(), False),
    ],
)
def test_only_serialization_failures_and_deadlocks_are_retryable(
    error: BaseException, expected: bool
) -> None:
    assert sql_engine.is_retryable(error) is expected


# -- one unit of work per call ---------------------------------------------------------


async def test_the_loop_connections_checkpoint_through_the_writer_thread(
    store: SqlStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event loop's write connections never checkpoint by themselves (that could sync
    the file on the loop): every CHECKPOINT_EVERY commits the writer thread does it."""
    monkeypatch.setattr(sql_base, "CHECKPOINT_EVERY", 3)
    done = threading.Event()
    calls: list[str] = []
    checkpoint = store._checkpoint

    def counted() -> None:
        checkpoint()
        calls.append(threading.current_thread().name)
        done.set()

    monkeypatch.setattr(store, "_checkpoint", counted)
    for i in range(3):
        await store.hit(f"k{i}", now=T0, window=1)
    assert await asyncio.to_thread(done.wait, 10)
    assert len(calls) == 1
    assert calls[0].startswith("authgate-sqlite")


async def test_a_unit_of_work_that_awaits_anything_else_is_refused(store: SqlStorage) -> None:
    """On SQLite a body runs to its end in one call; one that awaits anything but its
    connection is a bug, refused, with nothing written."""

    async def body(conn: Any) -> None:
        await conn.execute(text("INSERT INTO counters VALUES ('half-done', 1, 0)"))
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="awaited something other"):
        await store._transaction(body)
    assert (await store.peek("half-done", now=T0, window=60)).count == 0
