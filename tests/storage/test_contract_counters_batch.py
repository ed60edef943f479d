"""Contract: the batched Counters steps a throttle takes per attempt (peek_many,
hit_guarded, settle) on every backend (SQLite, PostgreSQL, and Redis over each as its
fallback): each is what the single steps would do, in one read or one atomic write."""

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
def keys() -> tuple[str, str, str]:
    """Counter names no other run uses (Redis is shared)."""
    run = secrets.token_hex(8)
    return f"test:batch:{run}:a", f"test:batch:{run}:b", f"test:batch:{run}:c"


async def test_peek_many_reads_each_window_in_order(
    counters: Counters, keys: tuple[str, str, str]
) -> None:
    a, b, c = keys
    await counters.hit(a, now=T0, window=60)
    await counters.hit(a, now=T0 + 1, window=60)
    await counters.hit(b, now=T0 - 60, window=60)  # passed by T0 + 1
    assert await counters.peek_many((c, a, b), now=T0 + 1, window=60) == (
        CounterState(0, T0 + 1),
        CounterState(2, T0),
        CounterState(0, T0 + 1),
    )
    assert await counters.peek_many((a,), now=T0 + 1, window=60) == (CounterState(2, T0),)
    assert await counters.peek(a, now=T0 + 1, window=60) == CounterState(2, T0)


async def test_hit_guarded_counts_both_within_the_limit(
    counters: Counters, keys: tuple[str, str, str]
) -> None:
    guard, key, _ = keys
    assert await counters.hit_guarded(guard, key, limit=2, now=T0, window=60) == (
        CounterState(1, T0),
        CounterState(1, T0),
    )
    assert await counters.hit_guarded(guard, key, limit=2, now=T0 + 1, window=60) == (
        CounterState(2, T0),
        CounterState(2, T0),
    )
    # Over the limit: the guard's hit is taken back and the key is not counted.
    assert await counters.hit_guarded(guard, key, limit=2, now=T0 + 2, window=60) == (
        CounterState(3, T0),
        None,
    )
    assert await counters.peek_many((guard, key), now=T0 + 3, window=60) == (
        CounterState(2, T0),
        CounterState(2, T0),
    )
    # A passed window starts anew, on each counter alike.
    assert await counters.hit_guarded(guard, key, limit=2, now=T0 + 60, window=60) == (
        CounterState(1, T0 + 60),
        CounterState(1, T0 + 60),
    )


async def test_concurrent_guarded_hits_never_pass_the_limit(
    counters: Counters, keys: tuple[str, str, str]
) -> None:
    guard, key, _ = keys
    results = await asyncio.gather(
        *(counters.hit_guarded(guard, key, limit=5, now=T0, window=60) for _ in range(20))
    )
    # Five within the limit; each later one sees itself over it, and takes itself back.
    assert sorted(g.count for g, _ in results) == [1, 2, 3, 4, 5] + [6] * 15
    assert sum(1 for _, counted in results if counted is not None) == 5
    assert await counters.peek_many((guard, key), now=T0, window=60) == (
        CounterState(5, T0),
        CounterState(5, T0),
    )


async def test_settle_releases_then_resets(counters: Counters, keys: tuple[str, str, str]) -> None:
    a, b, c = keys
    for _ in range(3):
        sa = await counters.hit(a, now=T0, window=60)
        await counters.hit(b, now=T0, window=60)
        await counters.hit(c, now=T0, window=60)
    await counters.settle(release=[(a, sa.window_start), (b, T0 - 1)], reset=[c])
    assert await counters.peek_many((a, b, c), now=T0 + 1, window=60) == (
        CounterState(2, T0),  # released
        CounterState(3, T0),  # another window named: left alone
        CounterState(0, T0 + 1),  # reset
    )
    await counters.settle()  # nothing to do
    await counters.settle(release=[(c, T0)])  # an unknown counter: nothing created
    assert await counters.hit(c, now=T0 + 2, window=60) == CounterState(1, T0 + 2)


async def test_settle_never_goes_below_zero(counters: Counters, keys: tuple[str, str, str]) -> None:
    a, _, _ = keys
    state = await counters.hit(a, now=T0, window=60)
    await counters.settle(release=[(a, state.window_start)] * 3)
    assert await counters.peek(a, now=T0, window=60) == CounterState(0, T0)
    assert await counters.hit(a, now=T0 + 1, window=60) == CounterState(1, T0)
