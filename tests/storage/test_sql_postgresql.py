"""What is particular to the PostgreSQL backend: the search_path URL option (one schema per
deployment, or per test), key_lock as an advisory lock across engines, and transactions
that PostgreSQL rolls back (deadlock, serialization failure) running again inside the
store instead of surfacing. Skipped without a server (see conftest)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from authgate.errors import Overloaded, StorageError, StorageUnavailable
from authgate.storage.base import AuditEntry, KeyRecord, RoleRecord
from authgate.storage.sql import SqlStorage, migrate, open_storage
from authgate.storage.sql import _base as sql_base
from authgate.storage.sql.engine import make_engine
from authgate.storage.sql.locks import PG_AUDIT_LOCK, PG_MIGRATE_LOCK
from authgate.storage.sql.store import PG_KEY_LOCK

from ._postgres import (
    asyncpg,
    postgres_dsn,
    postgres_schema,
    require_postgres,
    with_search_path,
)
from ._records import T0, digest, refresh, session, user
from ._stores import closed_after, opened

pytestmark = pytest.mark.anyio

WAIT_S = 10.0  # an upper bound for a condition that should hold within milliseconds


@pytest.fixture
def backend() -> str:
    """Every test here runs on PostgreSQL only."""
    return "postgresql"


@pytest.fixture
async def store(sql_storage: SqlStorage) -> SqlStorage:
    return sql_storage


def _schema(url: str) -> str:
    value = make_url(url).query["search_path"]
    assert isinstance(value, str)
    return value


async def _connect(url: str) -> Any:
    """A raw asyncpg connection in the schema of ``url``: another client of the server."""
    return await asyncpg().connect(
        postgres_dsn(url), server_settings={"search_path": _schema(url)}, timeout=5
    )


async def _until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll the server until ``condition`` holds (it reports lock waits, which cannot be
    awaited directly)."""

    async def poll() -> None:
        while not await condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), WAIT_S)


def _key(kid: str) -> KeyRecord:
    return KeyRecord(kid, "ES256", "next", "{}", b"ciphertext", T0)


@pytest.fixture
async def observer(database_url: str) -> AsyncIterator[Any]:
    async with closed_after(_connect(database_url)) as conn:
        yield conn


# -- search_path -------------------------------------------------------------------------


async def test_tables_live_in_the_url_schema_only(
    database_url: str, store: SqlStorage, observer: Any
) -> None:
    schema = _schema(database_url)
    assert await observer.fetchval("SELECT current_schema()") == schema
    async with store.engine.connect() as conn:
        assert (await conn.execute(text("SELECT current_schema()"))).scalar() == schema
    rows = await observer.fetch(
        "SELECT DISTINCT table_schema FROM information_schema.tables "
        "WHERE table_name IN ('users', 'clients', 'alembic_version')"
    )
    # Other runs may have schemas of their own, but never public: each test has its own.
    assert schema in {r[0] for r in rows}
    assert "public" not in {r[0] for r in rows}


async def test_two_schemas_of_one_database_are_independent(database_url: str) -> None:
    async with postgres_schema() as other_url:
        await migrate(other_url)
        async with opened(database_url) as here, opened(other_url) as there:
            await here.create_user(user("alice"))
            await there.create_user(user("alice"))  # no conflict: another schema
            await there.create_user(user("bob"))
            assert [u.id for u in await here.list_users(after=None, limit=10)] == ["alice"]
            assert [u.id for u in await there.list_users(after=None, limit=10)] == [
                "alice",
                "bob",
            ]


async def test_migrating_into_a_missing_schema_is_a_storage_error() -> None:
    url = with_search_path(require_postgres(), "ag_missing_" + secrets.token_hex(4))
    with pytest.raises(StorageError) as info:
        await migrate(url)
    assert type(info.value) is StorageError
    assert info.value.code == "storage_error"


async def test_unreachable_server_is_storage_unavailable() -> None:
    pytest.importorskip("asyncpg")
    url = "postgresql://postgres@127.0.0.1:1/test"  # nothing listens on port 1
    async with opened(url) as store:
        with pytest.raises(StorageUnavailable) as info:
            await store.ping()
        assert info.value.code == "storage_unavailable"
        with pytest.raises(StorageUnavailable):
            await store.create_user(user("u1"))
    with pytest.raises(StorageUnavailable) as info:
        await migrate(url)
    assert info.value.code == "storage_unavailable"


# -- key_lock ----------------------------------------------------------------------------


async def _key_lock_waiters(observer: Any) -> int:
    """Backends of this database waiting for key_lock's advisory lock."""
    value = await observer.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 1",
        PG_KEY_LOCK >> 32,
        PG_KEY_LOCK & 0xFFFFFFFF,
    )
    return int(value)


async def test_key_lock_holders_on_two_engines_serialise(database_url: str, observer: Any) -> None:
    first, second = await open_storage(database_url), await open_storage(database_url)
    entered = asyncio.Event()

    async def contender() -> None:
        async with second.key_lock():
            entered.set()
            assert [k.kid for k in await second.list_keys()] == ["k1"]  # sees the first's
            await second.insert_key(_key("k2"))

    try:
        async with first.key_lock():
            before = await _key_lock_waiters(observer)
            task = asyncio.create_task(contender())
            await _until(lambda: _pred_more_waiters(observer, before))
            assert not entered.is_set()  # it waits on the server, not in this process
            await first.insert_key(_key("k1"))
        await asyncio.wait_for(task, WAIT_S)
        assert entered.is_set()
        assert [k.kid for k in await first.list_keys()] == ["k1", "k2"]
    finally:
        await first.close()
        await second.close()


async def _pred_more_waiters(observer: Any, before: int) -> bool:
    return await _key_lock_waiters(observer) > before


# -- advisory locks ----------------------------------------------------------------------


async def _holding_lock(
    database_url: str, lock_id: int, work: Callable[[], Awaitable[object]]
) -> None:
    """Run ``work`` while another client of the server holds the advisory lock
    ``lock_id``; it must finish without waiting for that lock."""
    other = await _connect(database_url)
    try:
        tx = other.transaction()
        await tx.start()
        await other.execute("SELECT pg_advisory_xact_lock($1)", lock_id)
        try:
            await asyncio.wait_for(work(), WAIT_S)
        finally:
            await tx.rollback()
    finally:
        await other.close()


async def test_advisory_lock_collision_an_audit_append_does_not_wait_for_a_migration(
    database_url: str, store: SqlStorage
) -> None:
    await _holding_lock(
        database_url, PG_MIGRATE_LOCK, lambda: store.append_audit(AuditEntry(event="login", at=T0))
    )
    assert [e.event for e in await store.query_audit()] == ["login"]


async def test_advisory_lock_collision_a_migration_does_not_wait_for_an_audit_append(
    database_url: str,
) -> None:
    await _holding_lock(database_url, PG_AUDIT_LOCK, lambda: migrate(database_url))


# -- transactions that PostgreSQL rolls back run again ------------------------------------


async def _blocked_by(observer: Any, pid: int) -> list[int]:
    rows = await observer.fetch(
        "SELECT pid FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid))", pid
    )
    return [int(r[0]) for r in rows]


async def _waiting_behind(observer: Any, pid: int) -> int:
    """How many backends wait, directly or in a queue, for ``pid``'s locks."""
    value = await observer.fetchval(
        "WITH RECURSIVE chain(pid) AS ("
        " SELECT pid FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid))"
        " UNION SELECT a.pid FROM pg_stat_activity a JOIN chain c"
        " ON c.pid = ANY(pg_blocking_pids(a.pid))"
        ") SELECT count(*) FROM chain",
        pid,
    )
    return int(value)


async def _is_superuser(conn: Any) -> bool:
    return bool(await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"))


async def test_a_deadlocked_rotation_runs_again_and_wins(
    database_url: str, store: SqlStorage, observer: Any
) -> None:
    """The rotation locks its token, then waits (the successor's foreign key) for the
    session that another client holds; that client then asks for the token: a deadlock.
    PostgreSQL aborts the rotation, which waited first; the store runs it again."""
    if await _is_superuser(observer):
        # Detect sooner (the default is 1 s); still long after the cycle closes.
        @event.listens_for(store.engine.sync_engine, "connect")
        def _fast_detection(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("SET deadlock_timeout = '300ms'")
            cursor.close()

        await observer.execute("SET deadlock_timeout = '60s'")

    await store.create_user(user("alice"))
    await store.create_session(session("s1", "alice"), refresh("t0", "s1"), password_hash=None)
    parent = digest("t0")
    other = await _connect(database_url)
    try:
        if await _is_superuser(other):
            await other.execute("SET deadlock_timeout = '60s'")
        tx = other.transaction()
        await tx.start()
        await other.execute("SELECT sid FROM sessions WHERE sid = 's1' FOR UPDATE")
        rotation = asyncio.create_task(
            store.rotate_refresh(parent, refresh("t1", "s1", parent=parent), now=T0 + 1)
        )
        other_pid = other.get_server_pid()

        async def rotation_waits() -> bool:
            return len(await _blocked_by(observer, other_pid)) == 1

        await _until(rotation_waits)
        # Close the cycle: this waits for the rotation, which waits for us.
        got = await asyncio.wait_for(
            other.fetchval(
                "SELECT digest FROM refresh_tokens WHERE digest = $1 FOR UPDATE", parent
            ),
            WAIT_S,
        )
        assert got == parent  # we got the row: the rotation was the one aborted
        assert not rotation.done()  # its rerun waits for our lock on the token
        await tx.commit()
        assert await asyncio.wait_for(rotation, WAIT_S) is True
    finally:
        await other.close()
    assert store.retries == 1
    rotated = await store.get_refresh(parent)
    assert rotated is not None
    assert rotated.successor == digest("t1")
    assert await store.get_refresh(digest("t1")) == refresh("t1", "s1", parent=parent)


def _serializable_store(database_url: str) -> SqlStorage:
    """A store whose every transaction is SERIALIZABLE twice over: the engine's option
    (BEGIN ISOLATION LEVEL SERIALIZABLE) and the server's default for the session
    (``default_transaction_isolation``, which a one-statement write in autocommit gets)."""
    engine = make_engine(database_url).execution_options(isolation_level="SERIALIZABLE")

    @event.listens_for(engine.sync_engine, "connect")
    def _serializable_by_default(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.run_async(
            lambda conn: conn.execute("SET default_transaction_isolation TO 'serializable'")
        )

    return SqlStorage(engine)


async def test_50_serializable_rotations_retry_and_have_one_winner(
    database_url: str, observer: Any
) -> None:
    """Under SERIALIZABLE (a server's default_transaction_isolation may say so) the losers
    fail with a serialization error when the winner commits; they must run again and
    find the token rotated, never see the error."""
    store = _serializable_store(database_url)
    other = await _connect(database_url)
    try:
        await store.create_user(user("alice"))
        await store.create_session(session("s1", "alice"), refresh("t0", "s1"), password_hash=None)
        parent = digest("t0")
        # Hold the session so the first claimant waits after locking the token, while
        # the others queue on the token: then they overlap for certain.
        tx = other.transaction()
        await tx.start()
        await other.execute("SELECT sid FROM sessions WHERE sid = 's1' FOR UPDATE")
        rotations = asyncio.gather(
            *(
                store.rotate_refresh(parent, refresh(f"succ-{i}", "s1", parent=parent), now=T0 + 1)
                for i in range(50)
            )
        )

        async def losers_wait() -> bool:
            # The claimant that locked the token, and at least two queued behind it.
            return await _waiting_behind(observer, other.get_server_pid()) >= 3

        await _until(losers_wait)
        await tx.commit()
        results = await asyncio.wait_for(rotations, WAIT_S * 3)
        assert results.count(True) == 1
        assert store.retries >= 2  # each waiting loser failed once and ran again
        winner = digest(f"succ-{results.index(True)}")
        rotated = await store.get_refresh(parent)
        assert rotated is not None
        assert rotated.successor == winner
        assert await store.get_refresh(winner) is not None
        assert (
            await observer.fetchval("SELECT count(*) FROM refresh_tokens WHERE parent = $1", parent)
            == 1
        )
    finally:
        await other.close()
        await store.close()


async def test_one_statement_writes_commit_whatever_isolation_the_engine_sets(
    database_url: str, observer: Any
) -> None:
    """The one-statement writes run in autocommit set on the connection itself: an
    engine's own ``isolation_level`` option must not turn them into a transaction that is
    rolled back when the connection goes back to the pool."""
    engine = make_engine(database_url).execution_options(isolation_level="REPEATABLE READ")
    store = SqlStorage(engine)
    try:
        await store.create_user(user("alice"))
        await store.create_session(session("s1", "alice"), refresh("t0", "s1"), password_hash=None)
        parent = digest("t0")
        assert await store.rotate_refresh(parent, refresh("t1", "s1", parent=parent), now=T0 + 1)
        assert await store.revoke_session("s1", now=T0 + 2)
        seen = await observer.fetchrow(
            "SELECT (SELECT successor FROM refresh_tokens WHERE digest = $1) AS successor,"
            " (SELECT revoked_at FROM sessions WHERE sid = 's1') AS revoked_at",
            parent,
        )
        assert (seen["successor"], seen["revoked_at"]) == (digest("t1"), T0 + 2)
        # And a second claim of the same token loses: the first one's write is there.
        assert not await store.rotate_refresh(
            parent, refresh("t2", "s1", parent=parent), now=T0 + 3
        )
    finally:
        await store.close()


async def test_serializable_writes_of_every_kind_do_not_surface_errors(
    database_url: str,
) -> None:
    store = _serializable_store(database_url)
    try:
        await store.create_user(user("shared"))
        hits = asyncio.gather(*(store.hit("k", now=T0, window=60) for _ in range(30)))
        await asyncio.gather(
            hits,
            *(store.set_roles("shared", [f"r{i}"]) for i in range(15)),
            *(store.add_revocation("jti", f"j{i}", now=T0, expires_at=T0 + 60) for i in range(15)),
            *(store.use_assertion_id("c", "j", expires_at=T0 + 60) for _ in range(10)),
        )
        assert sorted(s.count for s in hits.result()) == list(range(1, 31))
        shared = await store.get_user("shared")
        assert shared is not None
        assert len(shared.roles) == 1
        events = await store.revocations_after(None, now=T0, limit=100)
        assert sorted(e.value for e in events) == sorted(f"j{i}" for i in range(15))
        assert [e.id for e in events] == sorted(e.id for e in events)
    finally:
        await store.close()


# -- privilege races that READ COMMITTED would let through -------------------------------


async def test_stale_privileges_a_grant_waits_for_a_role_edit_in_flight(
    database_url: str, store: SqlStorage, observer: Any
) -> None:
    """An edit of role R's permissions in flight (another transaction holds R's row and has
    moved the ``ver`` of R's holders, as ``put_role`` does) makes a grant of R wait. Without
    that, the grant commits first: a login between the two commits reads R's old
    permissions with the user's new ``ver``, and the edit, which never saw this holder,
    leaves that token alive."""
    await store.put_role(RoleRecord("r", ("posts:delete",), T0))
    await store.create_user(user("u1"))
    other = await _connect(database_url)
    try:
        tx = other.transaction()
        await tx.start()
        await other.execute("UPDATE roles SET permissions = '[\"posts:read\"]' WHERE name = 'r'")
        await other.execute(
            "UPDATE users SET ver = ver + 1"
            " WHERE id IN (SELECT user_id FROM user_roles WHERE role = 'r')"
        )
        grant = asyncio.create_task(store.set_roles("u1", ["r"]))
        other_pid = other.get_server_pid()

        async def grant_waits() -> bool:
            return len(await _blocked_by(observer, other_pid)) == 1

        await _until(grant_waits)
        assert not grant.done()
        await tx.commit()
        assert await asyncio.wait_for(grant, WAIT_S) == 1
    finally:
        await other.close()
    live = await store.create_session(session("s1", "u1"), refresh("t1", "s1"), password_hash=None)
    assert live is not None
    assert live.permissions == ("posts:read",)


async def test_stale_credential_session_insert_waits_for_a_password_change_in_flight(
    database_url: str, store: SqlStorage, observer: Any
) -> None:
    """A password change in flight holds the user's row: a login's session, checked
    against the old hash, waits for it, then finds the new hash and opens nothing."""
    await store.create_user(user("u1"))
    checked = (await store.get_user("u1")).password_hash  # type: ignore[union-attr]
    other = await _connect(database_url)
    try:
        tx = other.transaction()
        await tx.start()
        await other.execute("UPDATE users SET password_hash = 'new' WHERE id = 'u1'")
        opening = asyncio.create_task(
            store.create_session(session("s1", "u1"), refresh("t1", "s1"), password_hash=checked)
        )
        other_pid = other.get_server_pid()

        async def opening_waits() -> bool:
            return len(await _blocked_by(observer, other_pid)) == 1

        await _until(opening_waits)
        await tx.commit()
        assert await asyncio.wait_for(opening, WAIT_S) is None
    finally:
        await other.close()
    assert await store.get_session("s1") is None


async def test_a_unit_of_work_past_the_pool_is_shed_not_timed_out(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every connection of the pool taken, the next unit of work waits POOL_QUEUE_S
    for one and is then refused as Overloaded (503 overloaded): a burst is shed before the
    pool runs dry, and the pool's timeout (StorageUnavailable) keeps meaning an outage."""
    monkeypatch.setattr(sql_base, "POOL_QUEUE_S", 0.05)
    async with closed_after(open_storage(database_url, pool_size=1)) as store:
        await store.create_user(user("u1"))
        busy = asyncio.Event()
        release = asyncio.Event()

        async def hold() -> None:
            async with store._read():
                busy.set()
                await release.wait()

        # pool_size 1: 1 + 2 overflow connections, one kept back for the key lock.
        holders = [asyncio.create_task(hold()) for _ in range(2)]
        await asyncio.wait_for(busy.wait(), WAIT_S)
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await store.get_user("u1")
        assert store.shed == 1
        release.set()
        await asyncio.gather(*holders)
        got = await store.get_user("u1")  # the slots came back
        assert got is not None


async def test_a_pooled_connection_whose_backend_died_is_replaced_on_checkout(
    database_url: str, observer: Any
) -> None:
    """The pool checks each connection it hands out with one empty query: after the
    server ended every backend of the pool (a restart, a failover, an idle reaper), the
    next reads still answer, on fresh connections, and none surfaces as an error."""
    async with closed_after(open_storage(database_url, pool_size=2)) as store:
        await store.create_user(user("u1"))
        pids: set[int] = set()

        async def pooled_pid() -> None:
            async with store.engine.connect() as conn:
                pids.add((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
                await asyncio.sleep(0.05)  # held together: three distinct connections

        await asyncio.gather(*(pooled_pid() for _ in range(3)))
        assert pids, "the pool holds no connection"
        for pid in pids:
            await observer.execute("SELECT pg_terminate_backend($1)", pid)
        for _ in range(4):
            got = await store.get_user("u1")
            assert got is not None
