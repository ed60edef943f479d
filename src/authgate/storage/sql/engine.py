"""Engines for the SQL backend, and the one place that maps driver errors to authgate's.

SQLite runs in WAL mode with a busy timeout and foreign keys on. The sqlite3 driver's own
transaction handling is turned off and SQLAlchemy's ``begin`` event emits ``BEGIN``
itself: ``BEGIN IMMEDIATE`` for writes, so that concurrent writers queue on the busy
timeout instead of failing on a lock upgrade.

PostgreSQL URLs may carry ``?search_path=SCHEMA`` (one schema, or a comma-separated
list): every connection of the engine then uses it, so that one database can hold several
authgate schemas. The schema must exist; the migrations create their tables in the first
one.

A SQLite database holds password hashes, emails and addresses: authgate creates its file
0600 before SQLite opens it, and SQLite gives the -wal and -shm files the mode of the
database file. An existing file keeps its owner and group bits (an operator may share it
with a group on purpose), but loses any permission for others.
"""

from __future__ import annotations

import importlib
import logging
import os
import stat
from typing import Any, Final

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from authgate.errors import ConfigurationError, Conflict, StorageError, StorageUnavailable

# An execution option read by the SQLite ``begin`` listener: how to BEGIN.
BEGIN_OPTION: Final = "authgate_begin"
WRITE_OPTIONS: Final = {BEGIN_OPTION: "IMMEDIATE"}
CONNECT_TIMEOUT_S: Final = 3.0
COMMAND_TIMEOUT_S: Final = 4.0
POOL_TIMEOUT_S: Final = 3.0
_BEGIN_MODES: Final = frozenset({"DEFERRED", "IMMEDIATE", "NONE"})
# "NONE" is for reads: each SELECT is atomic on its own, and every read of the store that
# spans statements tolerates seeing writes committed between them.

SQLITE_BUSY_TIMEOUT_MS: Final = 5000

# A URL query option (PostgreSQL only), sent as a server setting on every connection.
SEARCH_PATH_OPTION: Final = "search_path"

# SQLSTATEs after which a transaction may simply run again: serialization_failure and
# deadlock_detected (PostgreSQL rolls the transaction back; nothing was written).
RETRYABLE_SQLSTATES: Final = frozenset({"40001", "40P01"})

log = logging.getLogger("authgate.storage")

# The database file and the files SQLite keeps beside it.
SQLITE_FILE_MODE: Final = 0o600
SQLITE_SIDE_FILES: Final = ("-wal", "-shm", "-journal")

_DRIVERS: Final = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


def async_url(url: str) -> URL:
    """The async driver URL for a ``sqlite:///...`` or ``postgresql://...`` URL.

    Raises ConfigurationError for another scheme, or an in-memory SQLite database (each
    connection would see its own empty database).
    """
    try:
        parsed = make_url(url)
    except exc.ArgumentError as e:
        raise ConfigurationError("the database URL cannot be parsed") from e
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ConfigurationError(
            f"unsupported database URL scheme {parsed.drivername!r}: "
            "use sqlite:///PATH or postgresql://...",
            scheme=parsed.drivername,
        )
    if driver.startswith("sqlite") and parsed.database in (None, "", ":memory:"):
        raise ConfigurationError("an in-memory SQLite database is not supported: give a file")
    return parsed.set(drivername=driver)


def _connect_args(target: URL) -> tuple[URL, dict[str, Any]]:
    """Move authgate's own URL options out of ``target`` into driver connect arguments."""
    if SEARCH_PATH_OPTION not in target.query:
        return target, {}
    value = target.query[SEARCH_PATH_OPTION]
    if not target.drivername.startswith("postgresql"):
        raise ConfigurationError("the search_path URL option is for PostgreSQL only")
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError("the search_path URL option needs one non-empty value")
    stripped = target.difference_update_query([SEARCH_PATH_OPTION])
    return stripped, {"server_settings": {"search_path": value}}


def make_engine(url: str, *, pool_size: int = 5) -> AsyncEngine:
    """An AsyncEngine for ``url``; it connects lazily. Raises ConfigurationError."""
    target, connect_args = _connect_args(async_url(url))
    options: dict[str, Any] = {
        "pool_size": pool_size,
        "max_overflow": 2 * pool_size,
        "hide_parameters": True,  # parameters hold password hashes and key material
    }
    if connect_args:
        options["connect_args"] = connect_args
    if target.drivername.startswith("postgresql"):
        # No pool_pre_ping: its asyncpg ping is three round trips (BEGIN, ";", ROLLBACK);
        # ``_ping_on_checkout`` makes the same check in one.
        # A stalled database (a partition: connections accepted, nothing answered) must
        # surface as StorageUnavailable (503) in seconds, never as a hung request.
        options["pool_timeout"] = POOL_TIMEOUT_S
        options["connect_args"] = {
            **options.get("connect_args", {}),
            "timeout": CONNECT_TIMEOUT_S,
            "command_timeout": COMMAND_TIMEOUT_S,
        }
    try:
        engine = create_async_engine(target, **options)
    except ImportError as e:
        raise ConfigurationError(
            f"the driver for {target.drivername} is not installed "
            "(PostgreSQL needs the 'postgres' extra: pip install 'authgate[postgres]')"
        ) from e
    if is_sqlite(engine):
        _configure_sqlite(engine.sync_engine, engine.url)
    elif is_postgresql(engine):
        event.listen(engine.sync_engine, "checkout", _ping_on_checkout)
    return engine


def _ping_on_checkout(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
    """PostgreSQL: check a connection as the pool hands it out, with one empty query
    (command_timeout bounds it). A connection that fails it (the server restarted, the
    backend was terminated, the network cut) is thrown away, and the pool hands out a
    fresh one: DisconnectionError is the pool's signal for that."""
    try:
        dbapi_connection.run_async(lambda conn: conn.fetchrow(";"))
    except Exception as error:
        raise exc.DisconnectionError(
            f"the pooled connection is dead ({type(error).__name__})"
        ) from error


def sqlite_sync_engine(engine: AsyncEngine, *, wait: bool = True) -> Engine:
    """A blocking engine (the stdlib ``sqlite3`` driver) on the same SQLite file as
    ``engine``, configured alike (WAL, busy timeout, foreign keys, the BEGIN modes) and
    pooled alike. The store runs each unit of work on it in one call (a read on the event
    loop, a write transaction in its writer thread) instead of one thread hop per step of
    every statement, as aiosqlite does. Its connections may move between those two threads
    (``check_same_thread`` off): the pool hands each to one caller at a time.

    With ``wait=False`` its connections never wait for a lock (busy timeout 0: SQLITE_BUSY
    at once) and never checkpoint by themselves (``wal_autocheckpoint`` 0): they are for
    the event loop, which must not block; the caller checkpoints elsewhere."""
    pool = engine.sync_engine.pool
    size = pool.size() if hasattr(pool, "size") else 5
    sync = create_engine(
        engine.url.set(drivername="sqlite"),
        pool_size=size,
        max_overflow=2 * size,
        hide_parameters=True,
        connect_args={"check_same_thread": False},
    )
    _configure_sqlite(sync, sync.url, wait=wait)
    return sync


def is_sqlite(engine: AsyncEngine) -> bool:
    """True for the SQLite backend."""
    return engine.dialect.name == "sqlite"


def is_postgresql(engine: AsyncEngine) -> bool:
    """True for the PostgreSQL backend."""
    return engine.dialect.name == "postgresql"


def prepare_sqlite_file(path: str) -> None:
    """Create the database file ``path`` with mode 0600 if it does not exist; take every
    permission for others off it and off its -wal/-shm/-journal files if they have any.
    Where the file cannot be created, SQLite's own open fails and reports why."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SQLITE_FILE_MODE)
    except OSError:  # it exists (most often), or SQLite's open will say what is wrong
        pass
    else:
        os.close(fd)
    for name in (path, *(path + suffix for suffix in SQLITE_SIDE_FILES)):
        try:
            mode = stat.S_IMODE(os.stat(name).st_mode)
            if mode & 0o007:
                os.chmod(name, mode & ~0o007)
                log.warning("took the permissions for others off %s", name)
        except FileNotFoundError:
            continue
        except PermissionError:  # not ours to change: SQLite reports what it cannot open
            continue


def _sqlite_path(target: URL) -> str | None:
    """The file of a SQLite URL; None for a ``file:`` URI, which names its own options."""
    database = target.database
    if not database or database.startswith("file:") or target.query.get("uri"):
        return None
    return database


def _configure_sqlite(engine: Engine, url: URL, *, wait: bool = True) -> None:
    path = _sqlite_path(url)

    @event.listens_for(engine, "do_connect")
    def _create_file(*_: Any) -> None:
        # Before SQLite opens (and would create) the file with the process umask.
        if path is not None:
            prepare_sqlite_file(path)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # The driver must not BEGIN by itself: the "begin" listener below does it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS if wait else 0}")
            if not wait:
                cursor.execute("PRAGMA wal_autocheckpoint = 0")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            # With WAL, NORMAL keeps every commit across a process crash (kill -9); only
            # an OS crash or power loss may lose the last ones.
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(BEGIN_OPTION, "DEFERRED")
        if mode not in _BEGIN_MODES:
            raise ValueError(f"unknown SQLite BEGIN mode {mode!r}")
        if mode != "NONE":
            conn.exec_driver_sql(f"BEGIN {mode}")


# What a driver may raise when SQLAlchemy does not wrap it (mostly while connecting).
_RAW_DRIVER_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError)


def driver_errors(engine: AsyncEngine) -> tuple[type[BaseException], ...]:
    """The exception classes that ``translate`` handles for this engine."""
    errors: list[type[BaseException]] = [exc.SQLAlchemyError, *_RAW_DRIVER_ERRORS]
    dbapi_error = getattr(engine.dialect.loaded_dbapi, "Error", None)
    if isinstance(dbapi_error, type) and issubclass(dbapi_error, BaseException):
        errors.append(dbapi_error)
    if is_postgresql(engine):
        try:
            asyncpg = importlib.import_module("asyncpg")  # optional: the 'postgres' extra
        except ImportError:  # pragma: no cover - the engine could not exist without it
            pass
        else:
            errors.extend([asyncpg.PostgresError, asyncpg.InterfaceError])
    return tuple(errors)


def _sqlstate(error: BaseException) -> str | None:
    orig: BaseException = error
    if isinstance(error, exc.DBAPIError) and error.orig is not None:
        orig = error.orig
    state = getattr(orig, "sqlstate", None)
    return state if isinstance(state, str) else None


def is_sqlite_busy(error: BaseException) -> bool:
    """True for SQLite's SQLITE_BUSY (another connection holds the lock; nothing done)."""
    orig = error.orig if isinstance(error, exc.DBAPIError) and error.orig is not None else error
    name = getattr(orig, "sqlite_errorname", None)
    return isinstance(name, str) and name.startswith("SQLITE_BUSY")


def is_retryable(error: BaseException) -> bool:
    """True for a serialization failure or a deadlock: the transaction was rolled back and
    may run again as a whole."""
    return _sqlstate(error) in RETRYABLE_SQLSTATES


def translate(error: BaseException) -> StorageError:
    """Map a driver or SQLAlchemy error to Conflict, StorageUnavailable or StorageError.

    The reason is the driver's message only: never the SQL parameters.
    """
    orig: BaseException = error
    if isinstance(error, exc.DBAPIError) and error.orig is not None:
        orig = error.orig
    reason = f"{type(orig).__name__}: {orig}"
    if is_retryable(error):  # still failing after the store's retries: contention, transient
        return StorageUnavailable(reason)
    if isinstance(error, exc.IntegrityError):
        if _is_unique_violation(orig):
            return Conflict(reason)
        return StorageError(reason)
    if isinstance(error, exc.TimeoutError | OSError | TimeoutError):
        return StorageUnavailable(reason)
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return StorageUnavailable(reason)
        if isinstance(error, exc.OperationalError | exc.InterfaceError) and not _is_sql_error(orig):
            return StorageUnavailable(reason)
        return StorageError(reason)
    if isinstance(error, exc.SQLAlchemyError):
        return StorageError(reason)
    # A raw driver error that SQLAlchemy did not wrap.
    state = getattr(orig, "sqlstate", None)
    if state == "23505":
        return Conflict(reason)
    if isinstance(state, str) and state.startswith(("08", "53", "57P")):
        return StorageUnavailable(reason)
    if type(orig).__name__ in ("InterfaceError", "OperationalError", "ConnectionError"):
        return StorageUnavailable(reason)
    return StorageError(reason)


def _is_unique_violation(orig: BaseException) -> bool:
    name = getattr(orig, "sqlite_errorname", None)
    if name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"):
        return True
    return getattr(orig, "sqlstate", None) == "23505"


def _is_sql_error(orig: BaseException) -> bool:
    """An error in the statement or the schema (no such table), not in reaching the server."""
    if getattr(orig, "sqlite_errorname", None) == "SQLITE_ERROR":
        return True
    state = getattr(orig, "sqlstate", None)
    return isinstance(state, str) and state.startswith("42")
