"""Redis for the scaled-out deployment: shared throttling counters and revocation fan-out.

Redis is an accelerator, never the source of truth: when it is down, counters fall back to
the database and long polls fall back to re-reading the database every second. Each
fallback is logged and counted; none of them fails a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from authgate.storage.base import Counters, CounterState

log = logging.getLogger("authgate.redis")
CHANNEL = "authgate:revocations"
_PREFIX = "authgate:counter:"

# KEYS[1] = counter; ARGV = now, window. A fixed window: starts anew once it has passed.
# The start goes back as stored (tostring would round it to 14 digits), so that release
# can name the window exactly.
_HIT = """
local raw = redis.call('HGET', KEYS[1], 'start')
local start = tonumber(raw)
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
if start == nil or start + window <= now then
  redis.call('HSET', KEYS[1], 'start', ARGV[1], 'count', 1)
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
  return {ARGV[1], '1'}
end
local count = redis.call('HINCRBY', KEYS[1], 'count', 1)
return {raw, tostring(count)}
"""

# KEYS[1] = counter; ARGV = the window start the hit was counted in. One less, never below
# zero, and only while that window is still the current one.
_RELEASE = """
local start = redis.call('HGET', KEYS[1], 'start')
if start and tonumber(start) == tonumber(ARGV[1]) then
  local count = tonumber(redis.call('HGET', KEYS[1], 'count'))
  if count and count > 0 then
    redis.call('HINCRBY', KEYS[1], 'count', -1)
  end
end
return 0
"""

# KEYS[1] = the guard, KEYS[2] = the counter; ARGV = now, window, limit. The guard's hit,
# taken back when it is over the limit, else the counter's too: each as _HIT does it.
_HIT_GUARDED = """
local function hit(key, now, window)
  local raw = redis.call('HGET', key, 'start')
  local start = tonumber(raw)
  if start == nil or start + window <= tonumber(now) then
    redis.call('HSET', key, 'start', now, 'count', 1)
    redis.call('PEXPIRE', key, math.ceil(window * 1000))
    return {now, '1'}
  end
  return {raw, tostring(redis.call('HINCRBY', key, 'count', 1))}
end
local window = tonumber(ARGV[2])
local guard = hit(KEYS[1], ARGV[1], window)
if tonumber(guard[2]) > tonumber(ARGV[3]) then
  redis.call('HINCRBY', KEYS[1], 'count', -1)
  return guard
end
local counted = hit(KEYS[2], ARGV[1], window)
return {guard[1], guard[2], counted[1], counted[2]}
"""

# KEYS = the counters to release, then those to reset; ARGV[1] = how many to release,
# ARGV[1 + i] = the window start of the i-th: each release as _RELEASE does it, then DEL.
_SETTLE = """
local n = tonumber(ARGV[1])
for i = 1, n do
  local start = redis.call('HGET', KEYS[i], 'start')
  if start and tonumber(start) == tonumber(ARGV[i + 1]) then
    local count = tonumber(redis.call('HGET', KEYS[i], 'count'))
    if count and count > 0 then
      redis.call('HINCRBY', KEYS[i], 'count', -1)
    end
  end
end
for i = n + 1, #KEYS do
  redis.call('DEL', KEYS[i])
end
return 0
"""


def connect(url: str) -> aioredis.Redis:
    """A client with short timeouts, so that an outage turns into a fallback quickly."""
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        health_check_interval=5,
        retry_on_timeout=False,
    )


class RedisCounters:
    """Counters shared by every instance through Redis, falling back to ``fallback``."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        fallback: Counters,
        on_fallback: Callable[[str], None] | None = None,
    ) -> None:
        self._redis = client
        self._fallback = fallback
        self._on_fallback = on_fallback
        self._hit = client.register_script(_HIT)
        self._release = client.register_script(_RELEASE)
        self._hit_guarded = client.register_script(_HIT_GUARDED)
        self._settle = client.register_script(_SETTLE)

    def _failed(self, op: str, exc: Exception) -> None:
        log.warning("redis %s failed (%s); using the database", op, type(exc).__name__)
        if self._on_fallback is not None:
            self._on_fallback("counters")

    async def hit(self, key: str, *, now: float, window: float) -> CounterState:
        """Add one to ``key``'s window."""
        try:
            start, count = await self._hit(keys=[_PREFIX + key], args=[repr(now), repr(window)])
            return CounterState(count=int(count), window_start=float(start))
        except (RedisError, OSError) as exc:
            self._failed("hit", exc)
            return await self._fallback.hit(key, now=now, window=window)

    async def peek(self, key: str, *, now: float, window: float) -> CounterState:
        """The current window of ``key``."""
        try:
            start, count = await self._redis.hmget(_PREFIX + key, ["start", "count"])
        except (RedisError, OSError) as exc:
            self._failed("peek", exc)
            return await self._fallback.peek(key, now=now, window=window)
        if start is None or float(start) + window <= now:
            return CounterState(count=0, window_start=now)
        return CounterState(count=int(count or 0), window_start=float(start))

    async def reset(self, key: str) -> None:
        """Forget ``key`` (in Redis and in the fallback, which may hold outage-time hits)."""
        try:
            await self._redis.delete(_PREFIX + key)
        except (RedisError, OSError) as exc:
            self._failed("reset", exc)
        await self._fallback.reset(key)

    async def release(self, key: str, *, window_start: float) -> None:
        """Take back one hit from ``key``'s window starting at ``window_start``."""
        try:
            await self._release(keys=[_PREFIX + key], args=[repr(window_start)])
        except (RedisError, OSError) as exc:
            self._failed("release", exc)
            await self._fallback.release(key, window_start=window_start)

    async def peek_many(
        self, keys: Sequence[str], *, now: float, window: float
    ) -> tuple[CounterState, ...]:
        """The current window of each of ``keys``: one round trip."""
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.hmget(_PREFIX + key, ["start", "count"])
            replies = await pipe.execute()
        except (RedisError, OSError) as exc:
            self._failed("peek", exc)
            return await self._fallback.peek_many(keys, now=now, window=window)
        return tuple(
            CounterState(count=0, window_start=now)
            if start is None or float(start) + window <= now
            else CounterState(count=int(count or 0), window_start=float(start))
            for start, count in replies
        )

    async def hit_guarded(
        self, guard: str, key: str, *, limit: int, now: float, window: float
    ) -> tuple[CounterState, CounterState | None]:
        """``guard``'s hit, taken back over ``limit``, else ``key``'s too: one script."""
        try:
            reply = await self._hit_guarded(
                keys=[_PREFIX + guard, _PREFIX + key], args=[repr(now), repr(window), limit]
            )
        except (RedisError, OSError) as exc:
            self._failed("hit", exc)
            return await self._fallback.hit_guarded(guard, key, limit=limit, now=now, window=window)
        first = CounterState(count=int(reply[1]), window_start=float(reply[0]))
        if len(reply) == 2:
            return first, None
        return first, CounterState(count=int(reply[3]), window_start=float(reply[2]))

    async def settle(
        self, *, release: Sequence[tuple[str, float]] = (), reset: Sequence[str] = ()
    ) -> None:
        """The releases, then the resets: one script (the resets in the fallback too,
        which may hold outage-time hits)."""
        if not release and not reset:
            return
        keys = [_PREFIX + key for key, _ in release] + [_PREFIX + key for key in reset]
        try:
            await self._settle(
                keys=keys, args=[len(release), *(repr(start) for _, start in release)]
            )
        except (RedisError, OSError) as exc:
            self._failed("settle", exc)
            await self._fallback.settle(release=release, reset=reset)
            return
        if reset:
            await self._fallback.settle(reset=reset)


class RevocationFanout:
    """Publishes "a revocation was written" and wakes local long polls when any instance
    publishes. While Redis is down, long polls still re-read the database every second."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        on_message: Callable[[], None],
        on_fallback: Callable[[str], None] | None = None,
        retry_interval: float = 1.0,
    ) -> None:
        self._redis = client
        self._on_message = on_message
        self._on_fallback = on_fallback
        self._retry = retry_interval
        self._task: asyncio.Task[None] | None = None
        self.connected = False

    async def publish(self) -> None:
        """Tell every instance that the feed moved."""
        try:
            await self._redis.publish(CHANNEL, b"1")
        except (RedisError, OSError) as exc:
            log.warning("redis publish failed (%s); guards will poll", type(exc).__name__)
            if self._on_fallback is not None:
                self._on_fallback("fanout")

    async def ping(self) -> bool:
        """True if Redis answers a PING now (within the client's short timeouts)."""
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    def start(self) -> None:
        """Subscribe in the background, reconnecting after an outage."""
        self._task = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        while True:
            pubsub: Any = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                self.connected = True
                async for _message in pubsub.listen():
                    self._on_message()
            except (RedisError, OSError) as exc:
                if self.connected:
                    log.warning("redis subscription lost (%s); polling", type(exc).__name__)
                self.connected = False
                if self._on_fallback is not None:
                    self._on_fallback("fanout")
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            self._on_message()  # whatever was missed meanwhile: re-read the database
            await asyncio.sleep(self._retry)

    async def close(self) -> None:
        """Stop listening and close the client."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()
