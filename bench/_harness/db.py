"""The databases of the benches: a fresh PostgreSQL schema per run (dropped afterwards), and
read-only looks at what a server stored, the same way for SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from authgate.storage.sql.engine import make_engine

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
SEARCH_PATH = "search_path"  # authgate's URL option that selects a PostgreSQL schema
CHUNK = 500  # values per IN (...) list


def is_postgresql(url: str) -> bool:
    """True for a ``postgresql://`` (or ``postgres://``) URL."""
    return make_url(url).drivername.split("+")[0] in ("postgresql", "postgres")


def postgres_dsn(url: str) -> str:
    """``url`` as a plain libpq DSN for asyncpg (no driver, no authgate options)."""
    target = make_url(url).set(drivername="postgresql").difference_update_query([SEARCH_PATH])
    return target.render_as_string(hide_password=False)


def shown(url: str) -> str:
    """``url`` fit to print: without its password."""
    return make_url(url).render_as_string(hide_password=True)


async def pg_connect(url: str, *, timeout: float = 10.0) -> Any:
    """An asyncpg connection to ``url``, in the schema its ``search_path`` option names."""
    import asyncpg

    schema = make_url(url).query.get(SEARCH_PATH)
    settings = {SEARCH_PATH: str(schema)} if schema else None
    return await asyncpg.connect(postgres_dsn(url), server_settings=settings, timeout=timeout)


async def pg_execute(url: str, sql: str) -> None:
    """Run one statement on its own connection."""
    conn = await pg_connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def postgres_problem(url: str) -> str | None:
    """Why PostgreSQL at ``url`` cannot be used (None if it can)."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        return "asyncpg is not installed"
    try:
        await pg_execute(url, "SELECT 1")
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@asynccontextmanager
async def postgres_schema(url: str, *, prefix: str = "ag_bench_") -> AsyncIterator[str]:
    """A fresh, empty schema on the PostgreSQL server of ``url``: yields the URL that
    selects it (authgate's ``?search_path=``), and drops it with all it holds afterwards."""
    schema = prefix + secrets.token_hex(5)
    await pg_execute(url, f"CREATE SCHEMA {schema}")
    try:
        target = make_url(url).update_query_dict({SEARCH_PATH: schema})
        yield target.render_as_string(hide_password=False)
    finally:
        await pg_execute(url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@asynccontextmanager
async def fresh_database(url: str | None) -> AsyncIterator[str | None]:
    """For a PostgreSQL ``url``: a fresh schema on that server (see ``postgres_schema``).
    For None: None (``serve`` then makes a fresh SQLite file). Raises ValueError for any
    other URL (a bench needs an empty database)."""
    if url is None:
        yield None
        return
    if not is_postgresql(url):
        raise ValueError(f"not a PostgreSQL URL: {shown(url)}")
    async with postgres_schema(url) as fresh:
        yield fresh


class Database:
    """One connection to a server's database, for reading what it stored."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        """The rows of ``sql`` with ``:name`` parameters. A list parameter fills an
        ``IN :name`` (it is sent in chunks, so the rows of each chunk are joined: fit for
        a filter, not for an aggregate)."""
        lists = [k for k, v in params.items() if isinstance(v, list | tuple)]
        statement = text(sql).bindparams(*(bindparam(k, expanding=True) for k in lists))
        if not lists:
            return [tuple(r) for r in await self.conn.execute(statement, params)]
        (name,) = lists  # one list at the most
        values: Sequence[Any] = params[name]
        out: list[tuple[Any, ...]] = []
        for i in range(0, len(values), CHUNK):
            part = {**params, name: list(values[i : i + CHUNK])}
            out.extend(tuple(r) for r in await self.conn.execute(statement, part))
        return out

    async def column(self, sql: str, **params: Any) -> set[Any]:
        """The first column of :meth:`rows`, as a set."""
        return {row[0] for row in await self.rows(sql, **params)}

    async def value(self, sql: str, **params: Any) -> Any:
        """The one value ``sql`` selects (None for no row)."""
        found = await self.rows(sql, **params)
        return found[0][0] if found else None


@asynccontextmanager
async def database(url: str) -> AsyncIterator[Database]:
    """A connection to the database at ``url`` (SQLite or PostgreSQL, as authgate opens it)."""
    engine = make_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            yield Database(conn)
    finally:
        await engine.dispose()
