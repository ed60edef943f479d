"""Contract: Counters.release, the "give it back" half of a throttle reservation, on every
backend (SQLite, PostgreSQL, and Redis over each as its fallback).

A throttle counts an attempt with ``hit`` before the secret is checked, and gives the hit
back with ``release`` when the attempt was not a failure; the window it names must be the
one the hit landed in, exactly."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from _support.services import redis_url, require_redis
from authgate.storage.base import Counters, CounterState, Storage
from authgate.storage.redis import RedisCounters, connect

from ._records import T0

pytestmark = pytest.mark.anyio

REDIS_URL = redis_url(15)


@pytest.fixture(params=["database", "redis"])
async def counters(request: pytest.FixtureRequest, storage: Storage) -> AsyncIterator[Counters]:
    """The backend's own counters, or Redis counters falling back to it."""
    if request.param == "database":
        yield storage
        return
    client = connect(require_redis(REDIS_URL))
    try:
        yield RedisCounters(client, fallback=storage)
    finally:
        await client.aclose()


@pytest.fixture
def key() -> str:
    """A counter name no other run uses (Redis is shared)."""
    return "test:release:" + secrets.token_hex(8)


async def test_release_takes_back_one_hit_of_the_same_window(counters: Counters, key: str) -> None:
    for _ in range(3):
        state = await counters.hit(key, now=T0, window=60)
    await counters.release(key, window_start=state.window_start)
    assert await counters.peek(key, now=T0 + 1, window=60) == CounterState(2, T0)
    assert await counters.hit(key, now=T0 + 2, window=60) == CounterState(3, T0)


async def test_release_never_goes_below_zero(counters: Counters, key: str) -> None:
    state = await counters.hit(key, now=T0, window=60)
    for _ in range(3):
        await counters.release(key, window_start=state.window_start)
    assert await counters.peek(key, now=T0, window=60) == CounterState(0, T0)
    assert await counters.hit(key, now=T0 + 1, window=60) == CounterState(1, T0)


async def test_release_of_a_passed_window_leaves_the_new_one_alone(
    counters: Counters, key: str
) -> None:
    old = await counters.hit(key, now=T0, window=60)
    assert await counters.hit(key, now=T0 + 60, window=60) == CounterState(1, T0 + 60)
    await counters.release(key, window_start=old.window_start)
    assert await counters.peek(key, now=T0 + 61, window=60) == CounterState(1, T0 + 60)


async def test_release_of_an_unknown_counter_creates_nothing(counters: Counters, key: str) -> None:
    await counters.release(key, window_start=T0)
    assert await counters.peek(key, now=T0, window=60) == CounterState(0, T0)
    assert await counters.hit(key, now=T0, window=60) == CounterState(1, T0)


async def test_release_names_a_window_that_started_at_a_fractional_time(
    counters: Counters, key: str
) -> None:
    """A real clock's time has 16 or 17 significant digits; the window start comes back
    exactly as stored, so that release finds it."""
    now = 1_712_345_678.123_456_7
    first = await counters.hit(key, now=now, window=60)
    second = await counters.hit(key, now=now + 1, window=60)
    assert first.window_start == second.window_start == now
    await counters.release(key, window_start=second.window_start)
    assert await counters.peek(key, now=now + 2, window=60) == CounterState(1, now)


async def test_concurrent_hits_and_releases_add_up(counters: Counters, key: str) -> None:
    states = await asyncio.gather(*(counters.hit(key, now=T0, window=60) for _ in range(30)))
    assert sorted(s.count for s in states) == list(range(1, 31))
    await asyncio.gather(
        *(counters.release(key, window_start=T0) for _ in range(20)),
        *(counters.hit(key, now=T0, window=60) for _ in range(5)),
    )
    assert await counters.peek(key, now=T0, window=60) == CounterState(15, T0)
