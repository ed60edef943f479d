"""Counters on SQL: fixed-window counters, each step one atomic statement.

The statements are built once, with bound parameters (the hot path of every login and
client authentication): a call only binds its values (named ``b_*``: SQLAlchemy keeps
the column names for the VALUES and SET clauses).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import Float, Select, String, bindparam, case, delete, select, update
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


@functools.lru_cache(maxsize=8)
def _peek_many(n: int) -> Select[Any]:
    """``peek_many``'s SELECT of ``n`` keys (``b_key0``...), one per count (an expanding
    IN would be re-rendered on every call)."""
    keys = [bindparam(f"b_key{i}", type_=String(512)) for i in range(n)]
    return select(counters.c.key, counters.c.count, counters.c.window_start).where(
        counters.c.key.in_(keys)
    )


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


def _state(row: Any) -> CounterState:
    # Row is a tuple: ``row.count`` would be tuple.count, so index it.
    return CounterState(count=int(row[0]), window_start=float(row[1]))


class SqlCounters(SqlBase):
    """Counters: a count and the start of its window, per key."""

    async def hit(self, key: str, *, now: float, window: float) -> CounterState:
        """Add one to ``key``'s window, starting a new window at ``now`` if the old one
        has passed (``window_start + window <= now``); return it. One atomic upsert."""
        stmt = _HIT_PG if self._postgresql else _HIT_SQLITE
        params = {"b_key": key, "b_now": now, "b_window": window}

        async def _body(conn: AsyncConnection) -> CounterState:
            return _state((await conn.execute(stmt, params)).one())

        return await self._transaction(_body)

    async def peek(self, key: str, *, now: float, window: float) -> CounterState:
        """The current window of ``key``; count 0 (and a window starting at ``now``) if
        there is none or it has passed."""
        async with self._read_one() as conn:
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

    async def peek_many(
        self, keys: Sequence[str], *, now: float, window: float
    ) -> tuple[CounterState, ...]:
        """``peek`` of each of ``keys``, in their order: one SELECT."""
        if not keys:
            return ()
        async with self._read_one() as conn:
            params = {f"b_key{i}": key for i, key in enumerate(keys)}
            rows = (await conn.execute(_peek_many(len(keys)), params)).all()
        found = {row[0]: row for row in rows}
        states = []
        for key in keys:
            row = found.get(key)
            if row is None or row[2] + window <= now:
                states.append(CounterState(count=0, window_start=now))
            else:
                states.append(CounterState(count=int(row[1]), window_start=float(row[2])))
        return tuple(states)

    async def hit_guarded(
        self, guard: str, key: str, *, limit: int, now: float, window: float
    ) -> tuple[CounterState, CounterState | None]:
        """``hit`` of ``guard``, then (unless that is over ``limit``, when it is taken back)
        of ``key``: one transaction, in that order (the order ``settle`` keeps, so that two
        PostgreSQL transactions never wait on each other's rows)."""
        stmt = _HIT_PG if self._postgresql else _HIT_SQLITE

        async def _body(conn: AsyncConnection) -> tuple[CounterState, CounterState | None]:
            params = {"b_key": guard, "b_now": now, "b_window": window}
            first = _state((await conn.execute(stmt, params)).one())
            if first.count > limit:
                release = {"b_key": guard, "b_window_start": first.window_start}
                await conn.execute(_RELEASE, release)
                return first, None
            params = {"b_key": key, "b_now": now, "b_window": window}
            return first, _state((await conn.execute(stmt, params)).one())

        return await self._transaction(_body)

    async def settle(
        self, *, release: Sequence[tuple[str, float]] = (), reset: Sequence[str] = ()
    ) -> None:
        """The releases in order, then the resets: one transaction."""
        if not release and not reset:
            return

        async def _body(conn: AsyncConnection) -> None:
            for key, window_start in release:
                await conn.execute(_RELEASE, {"b_key": key, "b_window_start": window_start})
            for key in reset:
                await conn.execute(_RESET, {"b_key": key})

        await self._transaction(_body)
