"""Redis counters and revocation fan-out against the real Redis at 127.0.0.1:6379,
and their fallbacks when Redis is unreachable."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from _support.services import redis_url, require_redis
from authgate.storage.redis import RedisCounters, RevocationFanout, connect
from authgate.storage.sql import migrate, open_storage
from authgate.storage.sql.store import SqlStorage

REDIS_URL = redis_url(15)
DOWN_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def sql(tmp_path: Path) -> AsyncIterator[SqlStorage]:
    url = f"sqlite:///{tmp_path / 'fallback.db'}"
    await migrate(url)
    storage = await open_storage(url)
    yield storage
    await storage.close()


@pytest.mark.anyio
async def test_counters_share_windows_across_clients(sql: SqlStorage) -> None:
    require_redis(REDIS_URL)
    key = "test:" + secrets.token_hex(8)
    a, b = connect(REDIS_URL), connect(REDIS_URL)
    try:
        first, second = RedisCounters(a, fallback=sql), RedisCounters(b, fallback=sql)
        assert (await first.hit(key, now=1000.0, window=60)).count == 1
        state = await second.hit(key, now=1010.0, window=60)
        assert (state.count, state.window_start) == (2, 1000.0)
        assert (await first.peek(key, now=1020.0, window=60)).count == 2
        # the window has passed at start + window: a new one starts
        fresh = await second.hit(key, now=1060.0, window=60)
        assert (fresh.count, fresh.window_start) == (1, 1060.0)
        assert (await first.peek(key, now=1200.0, window=60)).count == 0
        await first.reset(key)
        assert (await second.peek(key, now=1061.0, window=60)).count == 0
        assert (await sql.peek(key, now=1061.0, window=60)).count == 0  # nothing went to SQL
    finally:
        await a.aclose()
        await b.aclose()


@pytest.mark.anyio
async def test_counters_fall_back_to_the_database_when_redis_is_down(sql: SqlStorage) -> None:
    fallbacks: list[str] = []
    down = connect(DOWN_URL)
    counters = RedisCounters(down, fallback=sql, on_fallback=fallbacks.append)
    assert (await counters.hit("k", now=100.0, window=60)).count == 1
    assert (await counters.hit("k", now=101.0, window=60)).count == 2
    assert (await counters.peek("k", now=102.0, window=60)).count == 2
    assert (await sql.peek("k", now=102.0, window=60)).count == 2
    await counters.reset("k")
    assert (await sql.peek("k", now=103.0, window=60)).count == 0
    assert fallbacks == ["counters"] * 4
    await down.aclose()


@pytest.mark.anyio
async def test_fanout_wakes_other_instances() -> None:
    require_redis(REDIS_URL)
    woken = asyncio.Event()
    a, b = connect(REDIS_URL), connect(REDIS_URL)
    listener = RevocationFanout(b, on_message=woken.set)
    publisher = RevocationFanout(a, on_message=lambda: None)
    listener.start()
    try:
        for _ in range(100):  # the subscription is asynchronous: wait until it is live
            if listener.connected:
                break
            await asyncio.sleep(0.02)
        assert listener.connected
        await asyncio.sleep(0.05)
        woken.clear()
        await publisher.publish()
        await asyncio.wait_for(woken.wait(), timeout=5)
    finally:
        await listener.close()
        await publisher.close()


@pytest.mark.anyio
async def test_fanout_survives_an_unreachable_redis() -> None:
    fallbacks: list[str] = []
    wakes: list[int] = []
    down = connect(DOWN_URL)
    fanout = RevocationFanout(
        down, on_message=lambda: wakes.append(1), on_fallback=fallbacks.append, retry_interval=0.05
    )
    await fanout.publish()  # no exception: logged and counted
    fanout.start()
    for _ in range(100):
        if len(wakes) >= 2:
            break
        await asyncio.sleep(0.02)
    await fanout.close()
    assert "fanout" in fallbacks
    assert not fanout.connected
    assert len(wakes) >= 2  # each failed attempt makes local long polls re-read the database
