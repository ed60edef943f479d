"""The PostgreSQL server the storage tests use (``_support.services``): probed once per
session, and split into schemas of their own (``ag_<random>``), so that concurrent runs
never collide.

Creating and migrating a schema costs a few hundred milliseconds of catalog work, so the
migrated database is one schema per test module, emptied before each test
(``reset_schema``); a test that needs an unmigrated database gets a fresh schema."""

from __future__ import annotations

import functools
import importlib
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Final

from alembic.script import ScriptDirectory
from sqlalchemy import Integer
from sqlalchemy.engine import make_url

from _support.services import (
    POSTGRES_URL_ENV,
    postgres_dsn,
    postgres_url,
    run_in_thread,
    unavailable,
)
from authgate.storage.sql import alembic_config, metadata, migrate

SCHEMA_PREFIX: Final = "ag_"


def with_search_path(url: str, schema: str) -> str:
    """``url`` with authgate's ``search_path`` option set to ``schema``."""
    target = make_url(url).update_query_dict({"search_path": schema})
    return target.render_as_string(hide_password=False)


def asyncpg() -> Any:
    """The asyncpg module (an optional dependency: the 'postgres' extra)."""
    return importlib.import_module("asyncpg")


async def _probe(dsn: str) -> None:
    conn = await asyncpg().connect(dsn, timeout=5)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


@functools.cache
def _postgres_problem(url: str) -> str | None:
    """Why the PostgreSQL tests cannot run (None if they can). Probed once per session,
    in a thread of its own: a test's event loop may be running in this one."""
    try:
        asyncpg()
    except ImportError:
        return "asyncpg is not installed (pip install 'authgate[postgres]')"
    try:
        run_in_thread(_probe(postgres_dsn(url)))
    except Exception as e:
        shown = make_url(url).render_as_string(hide_password=True)
        return f"PostgreSQL at {shown} is unreachable ({type(e).__name__}: {e})"
    return None


def require_postgres() -> str:
    """The server's URL; skip the test if it is unreachable, or fail it when
    AUTHGATE_REQUIRE_SERVICES=1."""
    url = postgres_url()
    problem = _postgres_problem(url)
    if problem is not None:
        unavailable(f"{problem}; set {POSTGRES_URL_ENV}")
    return url


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg().connect(postgres_dsn(url), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _new_schema() -> str:
    return SCHEMA_PREFIX + secrets.token_hex(6)


@asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A fresh, empty schema on the test server; yields the URL that selects it, and
    drops the schema (with everything in it) afterwards."""
    url = require_postgres()
    schema = _new_schema()
    await _admin(url, f"CREATE SCHEMA {schema}")
    try:
        yield with_search_path(url, schema)
    finally:
        await _admin(url, f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def migrated_schema() -> Iterator[str]:
    """A fresh schema, migrated to head, for a whole module (sync: usable from a
    module-scoped fixture whatever the test's event loop)."""
    url = require_postgres()
    schema = _new_schema()
    run_in_thread(_admin(url, f"CREATE SCHEMA {schema}"))
    try:
        schema_url = with_search_path(url, schema)
        run_in_thread(migrate(schema_url))
        yield schema_url
    finally:
        run_in_thread(_admin(url, f"DROP SCHEMA {schema} CASCADE"))


@functools.cache
def _head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@functools.cache
def _empty_every_table() -> str:
    """Delete every row (children first) and restart the id sequences: a schema as
    fresh as a newly migrated one."""
    statements = [f"DELETE FROM {table.name}" for table in reversed(metadata.sorted_tables)]
    for table in metadata.sorted_tables:
        for column in table.primary_key.columns:
            if isinstance(column.type, Integer) and column.autoincrement is not False:
                statements.append(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'),"
                    " 1, false)"
                )
    return ";\n".join(statements)


async def reset_schema(schema_url: str) -> None:
    """Empty the module's schema before a test; migrate it again first if an earlier test
    left it at another revision (the migration tests downgrade it)."""
    schema = make_url(schema_url).query["search_path"]
    conn = await asyncpg().connect(
        postgres_dsn(schema_url), server_settings={"search_path": str(schema)}, timeout=5
    )
    try:
        try:
            version = await conn.fetchval("SELECT version_num FROM alembic_version")
        except asyncpg().PostgresError:
            version = None
        if version != _head():
            await migrate(schema_url)
        await conn.execute(_empty_every_table())
    finally:
        await conn.close()
