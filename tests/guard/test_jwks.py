"""The JWKS cache: Cache-Control, the unknown-kid cooldown, single flight, last good keys."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import httpx
import pytest

from authgate.clock import FixedClock
from authgate.errors import InvalidKey
from authgate.guard.jwks import ASYMMETRIC_ALGORITHMS, JWKSCache, cache_age, keyset_from_jwks
from authgate.jose import Key

from ._fake import NOW, FakeIssuer


@pytest.fixture(scope="module")
def keys() -> dict[str, Key]:
    return {
        "es": Key.generate("ES256", kid="es-1"),
        "es2": Key.generate("ES256", kid="es-2"),
        "ed": Key.generate("EdDSA", kid="ed-1"),
        "hs": Key.from_secret(b"h" * 32, kid="hs-1"),
    }


@pytest.mark.parametrize(
    ("value", "age"),
    [
        (None, 300.0),
        ("", 300.0),
        ("public, max-age=600", 600.0),
        ("max-age=0", 0.0),
        ("MAX-AGE=42, public", 42.0),
        ('max-age="120"', 120.0),
        ("public", 300.0),
        ("no-store", 0.0),
        ("no-cache, max-age=600", 0.0),
        ("public, s-maxage=900", 300.0),
        ("max-age=abc", 300.0),
    ],
)
def test_cache_control_ages(value: str | None, age: float) -> None:
    assert cache_age(value, default=300.0) == age


def test_only_usable_keys_are_kept(keys: dict[str, Key]) -> None:
    es, ed, hs = keys["es"], keys["ed"], keys["hs"]
    doc: dict[str, Any] = {
        "keys": [
            es.to_jwk(private=True),  # a private part is ignored, never used
            ed.public().to_jwk(),
            hs.to_jwk(private=True),  # an HMAC key from a remote JWKS: never
            {"kty": "RSA", "n": "x", "e": "AQAB", "kid": "broken", "alg": "RS256"},
            {**keys["es2"].public().to_jwk(), "use": "enc"},
            "not a key",
        ]
    }
    got = keyset_from_jwks(doc, allowed=ASYMMETRIC_ALGORITHMS)
    assert sorted(k.kid for k in got) == ["ed-1", "es-1"]
    assert all(not k.can_sign for k in got)
    only_ed = keyset_from_jwks(doc, allowed=frozenset({"EdDSA"}))
    assert [k.kid for k in only_ed] == ["ed-1"]


def test_a_repeated_kid_is_dropped_altogether(keys: dict[str, Key]) -> None:
    twin = Key.generate("ES256", kid="es-1")
    doc = {"keys": [keys["es"].public().to_jwk(), twin.public().to_jwk(), keys["ed"].to_jwk()]}
    assert [k.kid for k in keyset_from_jwks(doc, allowed=ASYMMETRIC_ALGORITHMS)] == ["ed-1"]


@pytest.mark.parametrize(
    "doc", [{}, {"keys": "x"}, {"keys": []}, {"keys": [{"kty": "oct", "k": "AAAA"}]}]
)
def test_no_usable_key_is_refused(doc: dict[str, Any]) -> None:
    with pytest.raises(InvalidKey) as info:
        keyset_from_jwks(doc, allowed=ASYMMETRIC_ALGORITHMS)
    assert info.value.code == "invalid_key"


def cache_for(
    fake: FakeIssuer, clock: FixedClock, client: httpx.AsyncClient, **kw: Any
) -> JWKSCache:
    return JWKSCache(
        "https://auth.test/jwks.json",
        http=lambda: client,
        clock=clock,
        allowed=ASYMMETRIC_ALGORITHMS,
        **kw,
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("cache_control", "ttl"),
    [
        ("public, max-age=300", 300.0),
        ("max-age=5", 30.0),  # floored at the cooldown
        ("max-age=999999", 3600.0),  # capped at max_age
        ("no-store", 30.0),
        (None, 300.0),
    ],
)
async def test_freshness_follows_cache_control(
    keys: dict[str, Key], cache_control: str | None, ttl: float
) -> None:
    fake = FakeIssuer([keys["es"]])
    fake.cache_control = cache_control
    clock = FixedClock(NOW)
    async with httpx.AsyncClient(transport=fake.transport) as client:
        cache = cache_for(fake, clock, client)
        assert cache.keys is None
        assert await cache.refresh()
        assert cache.ttl == ttl
        assert cache.expires_at() == NOW + ttl
        assert [k.kid for k in cache.keys or ()] == ["es-1"]
        assert cache.state[1] == frozenset({"ES256"})
        # Within the freshness lifetime, maintenance fetches nothing...
        clock.advance(ttl - 1)
        await cache.maintain()
        assert fake.requests["/jwks.json"] == 1
        # ...and after it, one fetch.
        clock.advance(1)
        await cache.maintain()
        assert fake.requests["/jwks.json"] == 2


@pytest.mark.anyio
async def test_an_unknown_kid_refetches_at_most_once_per_cooldown(keys: dict[str, Key]) -> None:
    fake = FakeIssuer([keys["es"]])
    clock = FixedClock(NOW)
    async with httpx.AsyncClient(transport=fake.transport) as client:
        cache = cache_for(fake, clock, client, cooldown=30.0)
        await cache.refresh()
        assert fake.requests["/jwks.json"] == 1
        for i in range(1000):
            assert await cache.refetch_for(f"random-{i}") is False
        assert fake.requests["/jwks.json"] == 1  # the start counts: still in its cooldown
        clock.advance(29.999)
        assert await cache.refetch_for("random") is False
        assert fake.requests["/jwks.json"] == 1
        clock.advance(0.001)
        for i in range(1000):
            assert await cache.refetch_for(f"random-{i}") is False
        assert fake.requests["/jwks.json"] == 2
        # A real new key is found by the next allowed refetch.
        fake.publish(keys["es"], keys["es2"])
        assert await cache.refetch_for("es-2") is False
        clock.advance(30)
        assert await cache.refetch_for("es-2") is True
        assert fake.requests["/jwks.json"] == 3


@pytest.mark.anyio
async def test_fetches_are_single_flight(keys: dict[str, Key]) -> None:
    fake = FakeIssuer([keys["es"]])
    fake.jwks_gate = asyncio.Event()
    clock = FixedClock(NOW)
    async with httpx.AsyncClient(transport=fake.transport) as client:
        cache = cache_for(fake, clock, client)
        waiters = [asyncio.ensure_future(cache.refetch_for("es-1")) for _ in range(200)]
        waiters += [asyncio.ensure_future(cache.refresh()) for _ in range(50)]
        await asyncio.sleep(0)
        assert cache.fetching
        fake.jwks_gate.set()
        results = await asyncio.gather(*waiters)
        assert all(results)
        assert fake.requests["/jwks.json"] == 1
        assert not cache.fetching


@pytest.mark.anyio
async def test_last_good_keys_are_kept_for_a_bounded_time(keys: dict[str, Key]) -> None:
    fake = FakeIssuer([keys["es"]])
    clock = FixedClock(NOW)
    async with httpx.AsyncClient(transport=fake.transport) as client:
        cache = cache_for(fake, clock, client, stale_for=600.0)
        await cache.refresh()
        fake.down = True
        clock.advance(300)  # stale now: the refresh fails, the keys stay
        await cache.maintain()
        assert cache.failures == 1
        assert cache.keys is not None
        clock.advance(599)
        await cache.maintain()
        assert cache.keys is not None
        assert cache.failures == 2
        clock.advance(1)  # 300 + 600 s after the last good answer
        await cache.maintain()
        assert cache.keys is None
        assert cache.state == (None, frozenset())
        # The server comes back: the next maintenance fetches again.
        fake.down = False
        clock.advance(5)
        await cache.maintain()
        assert cache.keys is not None


@pytest.mark.anyio
async def test_failed_tries_are_spaced(keys: dict[str, Key]) -> None:
    fake = FakeIssuer([keys["es"]])
    fake.down = True
    clock = FixedClock(NOW)
    async with httpx.AsyncClient(transport=fake.transport) as client:
        cache = cache_for(fake, clock, client)
        assert await cache.refresh() is False
        for _ in range(10):
            await cache.maintain()
        assert fake.requests["/jwks.json"] == 1
        clock.advance(5)
        await cache.maintain()
        assert fake.requests["/jwks.json"] == 2
        assert cache.fetched_at == -math.inf


@pytest.mark.anyio
async def test_a_refused_or_odd_answer_keeps_the_old_keys(keys: dict[str, Key]) -> None:
    fake = FakeIssuer([keys["es"]])
    clock = FixedClock(NOW)
    async with httpx.AsyncClient(transport=fake.transport) as client:
        cache = cache_for(fake, clock, client)
        await cache.refresh()
        before = cache.keys
        fake.status["/jwks.json"] = 500
        assert await cache.refresh() is False
        del fake.status["/jwks.json"]
        fake.published = [keys["hs"].to_jwk(private=True)]  # nothing usable
        assert await cache.refresh() is False
        assert cache.keys is before
        assert cache.failures == 2
