"""The SQL backend beyond the Protocol contract: migrations, atomic rotation under
concurrency (one engine, and two engines as two processes would have), error mapping.
These run against every SQL backend in BACKENDS."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Integer, MetaData, String, func, inspect, select, text
from sqlalchemy.engine import Connection

from authgate.errors import Conflict
from authgate.storage.base import ClientRecord
from authgate.storage.sql import SqlStorage, alembic_config, metadata, migrate, open_storage
from authgate.storage.sql.tables import client_assertions, refresh_tokens

from ._records import T0, digest, refresh, session, user
from ._stores import at_revision, opened

pytestmark = pytest.mark.anyio


def _diff(connection: Connection, target: MetaData = metadata) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, target))


def _flat(diff: list[Any]) -> list[tuple[Any, ...]]:
    """Column changes come grouped in lists; flatten them."""
    out: list[tuple[Any, ...]] = []
    for entry in diff:
        out.extend(entry if isinstance(entry, list) else [entry])
    return out


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


# -- migrations --------------------------------------------------------------------------


async def test_migrated_schema_equals_tables_py(sql_storage: SqlStorage) -> None:
    async with sql_storage.engine.connect() as conn:
        assert await conn.run_sync(_diff) == []
        assert await conn.run_sync(_revision) == _head()
        # The comparison is not vacuous: against an empty MetaData every table differs.
        removed = {
            d[1].name for d in await conn.run_sync(_diff, MetaData()) if d[0] == "remove_table"
        }
    assert removed == set(metadata.tables)
    assert _head() == "0008"


async def test_schema_comparison_checks_column_types(sql_storage: SqlStorage) -> None:
    """The no-diff test above would miss a wrong type if types were not compared."""
    changed = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["clients"].c.client_id.type = String(64)
    changed.tables["client_assertions"].c.expires_at.type = Integer()
    async with sql_storage.engine.connect() as conn:
        diff = _flat(await conn.run_sync(_diff, changed))
    assert sorted((d[0], d[2], d[3]) for d in diff) == [
        ("modify_type", "client_assertions", "expires_at"),
        ("modify_type", "clients", "client_id"),
    ]


async def test_upgrade_from_0001_keeps_the_data(empty_database_url: str) -> None:
    async with at_revision(empty_database_url, "0001") as store:
        async with store.engine.connect() as conn:
            assert await conn.run_sync(_revision) == "0001"
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert "users" in tables
        assert not tables & {"clients", "client_assertions"}
        # Rows in the shape of revision 0001 (users.epoch, no users.ver).
        alice, s1, t0 = user("alice"), session("s1", "alice"), refresh("t0", "s1")
        async with store.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, name, disabled, epoch,"
                    " created_at) VALUES (:id, :email, :password_hash, :name, :disabled,"
                    " 0, :created_at)"
                ),
                {
                    "id": alice.id,
                    "email": alice.email,
                    "password_hash": alice.password_hash,
                    "name": alice.name,
                    "disabled": False,
                    "created_at": alice.created_at,
                },
            )
            await conn.execute(
                text(
                    "INSERT INTO sessions (sid, user_id, client_id, created_at, last_used_at,"
                    " expires_at, ip, user_agent, scope) VALUES (:sid, :user_id, :client_id,"
                    " :created_at, :last_used_at, :expires_at, :ip, :user_agent, :scope)"
                ),
                {
                    f.name: getattr(s1, f.name)
                    for f in dataclasses.fields(s1)
                    if f.name != "revoked_at"
                },
            )
            await conn.execute(
                text(
                    "INSERT INTO refresh_tokens (digest, sid, created_at, idle_expires_at)"
                    " VALUES (:digest, :sid, :created_at, :idle_expires_at)"
                ),
                {
                    "digest": t0.digest,
                    "sid": t0.sid,
                    "created_at": t0.created_at,
                    "idle_expires_at": t0.idle_expires_at,
                },
            )

        await migrate(empty_database_url)
        async with store.engine.connect() as conn:
            assert await conn.run_sync(_revision) == _head()
            assert await conn.run_sync(_diff) == []
        assert await store.get_user("alice") == user("alice")
        assert await store.get_refresh(digest("t0")) == refresh("t0", "s1")
        client = ClientRecord("cli_a", "a", ("x",), T0, secret_hash="h")
        await store.create_client(client)
        assert await store.list_clients() == [client]
        assert await store.use_assertion_id("cli_a", "j", expires_at=T0 + 1) is True


async def test_migrate_is_idempotent(database_url: str) -> None:
    await migrate(database_url)
    await migrate(database_url)
    async with opened(database_url) as store, store.engine.connect() as conn:
        assert await conn.run_sync(_diff) == []
        assert await conn.run_sync(_revision) == _head()


async def test_concurrent_migrations_queue(empty_database_url: str) -> None:
    await asyncio.gather(*(migrate(empty_database_url) for _ in range(3)))
    async with opened(empty_database_url) as store:
        async with store.engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
        await store.create_user(user("u1"))


async def test_downgrade_to_base_and_upgrade_again(database_url: str) -> None:
    store = await open_storage(database_url)

    def downgrade(connection: Connection) -> list[str]:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
        return [t for t in inspect(connection).get_table_names() if t != "alembic_version"]

    try:
        async with store.engine.begin() as conn:
            assert await conn.run_sync(downgrade) == []
        await migrate(database_url)
        async with store.engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await store.close()


# -- rotate_refresh: the atomic compare-and-set ------------------------------------------


async def _family(store: SqlStorage) -> str:
    await store.create_user(user("alice"))
    await store.create_session(session("s1", "alice"), refresh("t0", "s1"), password_hash=None)
    return digest("t0")


async def _successor_rows(store: SqlStorage, parent: str) -> list[str]:
    async with store.engine.connect() as conn:
        result = await conn.execute(
            select(refresh_tokens.c.digest).where(refresh_tokens.c.parent == parent)
        )
        return list(result.scalars())


async def _assert_one_winner(store: SqlStorage, parent: str, results: list[bool]) -> None:
    assert results.count(True) == 1
    assert results.count(False) == len(results) - 1
    winner = digest(f"succ-{results.index(True)}")
    assert await _successor_rows(store, parent) == [winner]
    rotated = await store.get_refresh(parent)
    assert rotated is not None
    assert rotated.successor == winner
    assert rotated.rotated_at == T0 + 1
    async with store.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(refresh_tokens))).scalar() == 2


async def test_50_concurrent_rotations_on_one_store_have_one_winner(
    sql_storage: SqlStorage,
) -> None:
    parent = await _family(sql_storage)
    results = await asyncio.gather(
        *(
            sql_storage.rotate_refresh(
                parent, refresh(f"succ-{i}", "s1", parent=parent), now=T0 + 1
            )
            for i in range(50)
        )
    )
    await _assert_one_winner(sql_storage, parent, list(results))


async def test_50_concurrent_rotations_from_two_engines_have_one_winner(
    database_url: str,
) -> None:
    async with opened(database_url) as first, opened(database_url) as second:
        parent = await _family(first)
        await asyncio.gather(first.ping(), second.ping())
        stores = [first, second]
        results = await asyncio.gather(
            *(
                stores[i % 2].rotate_refresh(
                    parent, refresh(f"succ-{i}", "s1", parent=parent), now=T0 + 1
                )
                for i in range(50)
            )
        )
        await _assert_one_winner(second, parent, list(results))


async def test_writers_on_two_engines_queue_instead_of_failing(database_url: str) -> None:
    async with opened(database_url) as first, opened(database_url) as second:
        stores = [first, second]
        await first.create_user(user("shared"))
        # set_roles reads before it writes: the case where a deferred BEGIN fails at once
        # ("database is locked" on the lock upgrade) instead of waiting.
        hits = asyncio.gather(*(stores[i % 2].hit("k", now=T0, window=60) for i in range(40)))
        others = asyncio.gather(
            *(stores[i % 2].create_user(user(f"u{i}")) for i in range(20)),
            *(stores[i % 2].set_roles("shared", [f"r{i}"]) for i in range(20)),
        )
        states, _ = await asyncio.gather(hits, others)
        assert sorted(s.count for s in states) == list(range(1, 41))
        assert len(await first.list_users(after=None, limit=100)) == 21
        shared = await second.get_user("shared")
        assert shared is not None
        assert len(shared.roles) == 1


async def test_20_concurrent_assertion_uses_from_two_engines_have_one_winner(
    database_url: str,
) -> None:
    async with opened(database_url) as first, opened(database_url) as second:
        await asyncio.gather(first.ping(), second.ping())
        stores = [first, second]
        results = await asyncio.gather(
            *(
                stores[i % 2].use_assertion_id("cli_a", "jti-1", expires_at=T0 + 60)
                for i in range(20)
            )
        )
        assert results.count(True) == 1
        async with first.engine.connect() as conn:
            rows = (await conn.execute(select(client_assertions))).all()
        # Stored by digest: the client's jti has no length limit in the column.
        assert [tuple(r) for r in rows] == [("cli_a", _sha256("jti-1"), T0 + 60)]


# -- error mapping -----------------------------------------------------------------------


async def test_unknown_user_for_a_session_gets_none_and_writes_nothing(
    sql_storage: SqlStorage,
) -> None:
    assert (
        await sql_storage.create_session(
            session("s1", "ghost"), refresh("t1", "s1"), password_hash=None
        )
        is None
    )
    assert await sql_storage.get_session("s1") is None
    assert await sql_storage.get_refresh(digest("t1")) is None


async def test_a_conflict_rolls_back_the_whole_transaction(sql_storage: SqlStorage) -> None:
    await sql_storage.create_user(user("alice"))
    await sql_storage.create_session(
        session("s1", "alice"), refresh("t1", "s1"), password_hash=None
    )
    await sql_storage.create_session(
        session("s2", "alice"), refresh("t2", "s2"), password_hash=None
    )
    # The successor's digest exists: the claim on t1 must be undone too.
    with pytest.raises(Conflict) as info:
        await sql_storage.rotate_refresh(digest("t1"), refresh("t2", "s1"), now=T0 + 1)
    assert info.value.code == "conflict"
    t1 = await sql_storage.get_refresh(digest("t1"))
    assert t1 is not None
    assert t1.rotated_at is None
    assert t1.successor is None
