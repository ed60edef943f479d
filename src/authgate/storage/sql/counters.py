"""Counters on SQL: fixed-window counters, each step one atomic statement."""

from __future__ import annotations

from sqlalchemy import case, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from authgate.storage.base import CounterState
from authgate.storage.sql._base import SqlBase
from authgate.storage.sql.tables import counters


class SqlCounters(SqlBase):
    """Counters: a count and the start of its window, per key."""

    async def hit(self, key: str, *, now: float, window: float) -> CounterState:
        """Add one to ``key``'s window, starting a new window at ``now`` if the old one
        has passed (``window_start + window <= now``); return it. One atomic upsert."""
        passed = counters.c.window_start + window <= now
        stmt = self._insert(counters).values(key=key, count=1, window_start=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=[counters.c.key],
            set_={
                "count": case((passed, 1), else_=counters.c.count + 1),
                "window_start": case((passed, now), else_=counters.c.window_start),
            },
        )

        async def _body(conn: AsyncConnection) -> CounterState:
            row = (
                await conn.execute(stmt.returning(counters.c.count, counters.c.window_start))
            ).one()
            # Row is a tuple: ``row.count`` would be tuple.count, so index it.
            return CounterState(count=int(row[0]), window_start=float(row[1]))

        return await self._transaction(_body)

    async def peek(self, key: str, *, now: float, window: float) -> CounterState:
        """The current window of ``key``; count 0 (and a window starting at ``now``) if
        there is none or it has passed."""
        async with self._read() as conn:
            row = (
                await conn.execute(
                    select(counters.c.count, counters.c.window_start).where(counters.c.key == key)
                )
            ).first()
        if row is None or row[1] + window <= now:
            return CounterState(count=0, window_start=now)
        return CounterState(count=int(row[0]), window_start=float(row[1]))

    async def reset(self, key: str) -> None:
        """Forget ``key``."""
        await self._execute(delete(counters).where(counters.c.key == key))

    async def release(self, key: str, *, window_start: float) -> None:
        """Take back one hit from ``key`` if its window still starts at ``window_start``,
        never below zero. One conditional UPDATE."""
        await self._execute(
            update(counters)
            .where(
                counters.c.key == key,
                counters.c.window_start == window_start,
                counters.c.count > 0,
            )
            .values(count=counters.c.count - 1)
        )
