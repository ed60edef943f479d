"""Counters on SQL: fixed-window counters, each step one atomic statement.

The statements are built once, with bound parameters (the hot path of every login and
client authentication): a call only binds its values (named ``b_*``: SQLAlchemy keeps
the column names for the VALUES and SET clauses).
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import Float, String, bindparam, case, delete, select, update
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from authgate.storage.base import CounterState
from authgate.storage.sql._base import SqlBase
from authgate.storage.sql.tables import counters

_KEY = bindparam("b_key", type_=String(512))
_NOW = bindparam("b_now", type_=Float)
_WINDOW = bindparam("b_window", type_=Float)


def _hit_statement(insert: Any) -> Any:
    """The upsert of ``hit`` in a dialect's INSERT ... ON CONFLICT."""
    passed = counters.c.window_start + _WINDOW <= _NOW
    return (
        insert(counters)
        .values(key=_KEY, count=1, window_start=_NOW)
        .on_conflict_do_update(
            index_elements=[counters.c.key],
            set_={
                "count": case((passed, 1), else_=counters.c.count + 1),
                "window_start": case((passed, _NOW), else_=counters.c.window_start),
            },
        )
        .returning(counters.c.count, counters.c.window_start)
    )


_HIT_PG: Final = _hit_statement(pg_dialect.insert)
_HIT_SQLITE: Final = _hit_statement(sqlite_dialect.insert)
_PEEK: Final = select(counters.c.count, counters.c.window_start).where(counters.c.key == _KEY)
_RESET: Final = delete(counters).where(counters.c.key == _KEY)
_RELEASE: Final = (
    update(counters)
    .where(
        counters.c.key == _KEY,
        counters.c.window_start == bindparam("b_window_start", type_=Float),
        counters.c.count > 0,
    )
    .values(count=counters.c.count - 1)
)


class SqlCounters(SqlBase):
    """Counters: a count and the start of its window, per key."""

    async def hit(self, key: str, *, now: float, window: float) -> CounterState:
        """Add one to ``key``'s window, starting a new window at ``now`` if the old one
        has passed (``window_start + window <= now``); return it. One atomic upsert."""
        stmt = _HIT_PG if self._postgresql else _HIT_SQLITE
        params = {"b_key": key, "b_now": now, "b_window": window}

        async def _body(conn: AsyncConnection) -> CounterState:
            row = (await conn.execute(stmt, params)).one()
            # Row is a tuple: ``row.count`` would be tuple.count, so index it.
            return CounterState(count=int(row[0]), window_start=float(row[1]))

        return await self._transaction(_body)

    async def peek(self, key: str, *, now: float, window: float) -> CounterState:
        """The current window of ``key``; count 0 (and a window starting at ``now``) if
        there is none or it has passed."""
        async with self._read() as conn:
            row = (await conn.execute(_PEEK, {"b_key": key})).first()
        if row is None or row[1] + window <= now:
            return CounterState(count=0, window_start=now)
        return CounterState(count=int(row[0]), window_start=float(row[1]))

    async def reset(self, key: str) -> None:
        """Forget ``key``."""

        async def _body(conn: AsyncConnection) -> None:
            await conn.execute(_RESET, {"b_key": key})

        await self._transaction(_body)

    async def release(self, key: str, *, window_start: float) -> None:
        """Take back one hit from ``key`` if its window still starts at ``window_start``,
        never below zero. One conditional UPDATE."""

        async def _body(conn: AsyncConnection) -> None:
            await conn.execute(_RELEASE, {"b_key": key, "b_window_start": window_start})

        await self._transaction(_body)
