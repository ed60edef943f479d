"""The whole guard against a scripted issuer: discovery, start-up refusals, revocation,
fail-closed staleness, last good keys, the unknown-kid cooldown, metrics, restart."""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from authgate.clock import FixedClock
from authgate.errors import (
    AlgorithmNotAllowed,
    AuthgateError,
    ConfigurationError,
    InvalidAudience,
    InvalidToken,
    TokenRevoked,
    UnknownKey,
)
from authgate.guard import Guard
from authgate.jose import Key

from ._fake import NOW, FakeIssuer, fake_guard, forged_kid, run_on, token
from ._support import eventually


@pytest.fixture(scope="module")
def key() -> Key:
    return Key.generate("ES256", kid="k1")


@pytest.fixture(scope="module")
def key2() -> Key:
    return Key.generate("EdDSA", kid="k2")


@pytest.fixture
def fake(key: Key) -> FakeIssuer:
    return FakeIssuer([key])


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def guard(fake: FakeIssuer, clock: FixedClock) -> Iterator[Guard]:
    g = fake_guard(fake, clock, feed_wait=0, feed_interval=0.05)
    with g:
        yield g


def refused(cls: type[AuthgateError], code: str, guard: Guard, tok: str) -> AuthgateError:
    with pytest.raises(AuthgateError) as info:
        guard.verify_sync(tok)
    assert type(info.value) is cls, repr(info.value)
    assert info.value.code == code
    return info.value


def test_discovery_then_keys_then_the_feed(guard: Guard, fake: FakeIssuer, key: Key) -> None:
    assert guard.ready
    assert guard.metadata is not None
    assert guard.metadata["jwks_uri"] == "https://auth.test/jwks.json"
    assert fake.requests["/.well-known/oauth-authorization-server"] == 1
    assert fake.requests["/jwks.json"] == 1
    assert fake.requests["/feed"] >= 1
    p = guard.verify_sync(token(key))
    assert (p.sub, p.sid) == ("usr_1", "sid_1")
    assert guard.revocation_staleness == 0.0


@pytest.mark.anyio
async def test_the_async_api_and_context_manager(
    fake: FakeIssuer, clock: FixedClock, key: Key
) -> None:
    async with fake_guard(fake, clock, feed_wait=0) as g:
        assert (await g.verify(token(key))).sub == "usr_1"
        assert await g.sync() == 0
    assert not g.ready


@pytest.mark.parametrize(
    ("path", "status", "match"),
    [
        ("/feed", 401, "revocation feed"),
        ("/feed", 403, "revocation feed"),
        ("/.well-known/oauth-authorization-server", 404, "discovery"),
    ],
)
def test_refused_configuration_fails_the_start(
    fake: FakeIssuer, clock: FixedClock, path: str, status: int, match: str
) -> None:
    fake.status[path] = status
    g = fake_guard(fake, clock)
    with pytest.raises(ConfigurationError, match=match) as info:
        g.start_sync(10)
    assert info.value.code == "invalid_configuration"
    assert info.value.context["status"] == status
    g.close_sync()


@pytest.mark.parametrize(
    ("member", "value", "match"),
    [
        ("issuer", "https://evil.test", "names issuer"),
        ("jwks_uri", None, "jwks_uri"),
        ("authgate_revocation_feed_endpoint", None, "authgate_revocation_feed_endpoint"),
        ("jwks_uri", "file:///etc/passwd", "jwks_uri"),
    ],
)
def test_metadata_must_match_and_be_complete(
    fake: FakeIssuer, clock: FixedClock, member: str, value: str | None, match: str
) -> None:
    if value is None:
        del fake.metadata[member]
    else:
        fake.metadata[member] = value
    g = fake_guard(fake, clock)
    with pytest.raises(ConfigurationError, match=match):
        g.start_sync(10)
    g.close_sync()


def test_without_revocation_the_feed_is_not_needed(
    fake: FakeIssuer, clock: FixedClock, key: Key
) -> None:
    del fake.metadata["authgate_revocation_feed_endpoint"]
    with fake_guard(fake, clock, revocation="off") as g:
        assert g.verify_sync(token(key)).sub == "usr_1"
        assert g.revocation_staleness is None
    assert fake.requests["/feed"] == 0


def test_an_unreachable_server_at_start_is_retried_in_the_background(
    fake: FakeIssuer, clock: FixedClock, key: Key, caplog: pytest.LogCaptureFixture
) -> None:
    fake.down = True
    g = fake_guard(fake, clock, startup_timeout=0.2, feed_wait=0)
    with caplog.at_level(logging.WARNING, logger="authgate.guard"):
        g.start_sync(10)
    try:
        assert not g.ready
        assert "not ready" in caplog.text
        err = refused(InvalidToken, "invalid_token", g, token(key))
        assert err.context["condition"] == "keys_unavailable"
        fake.down = False
        eventually(lambda: g.ready)
        assert g.verify_sync(token(key)).sub == "usr_1"
    finally:
        g.close_sync()


# --- revocation --------------------------------------------------------------------------


def test_each_kind_of_event_revokes(guard: Guard, fake: FakeIssuer, key: Key) -> None:
    a = token(key, jti="a", sid="s-a")
    b = token(key, jti="b", sid="s-b")
    c = token(key, jti="c", sid="s-c", sub="usr_2", iat=NOW - 5)
    d = token(key, jti="d", sid="s-d", sub="usr_2", iat=NOW)
    for t in (a, b, c, d):
        guard.verify_sync(t)  # all cached
    fake.revoke("jti", "a", expires_at=NOW + 600)
    fake.revoke("sid", "s-b", expires_at=NOW + 600)
    fake.revoke("user", "usr_2", expires_at=NOW + 600, not_before=NOW - 1)
    assert run_on(guard, lambda: guard.feed.sync()) == 3  # type: ignore[union-attr]
    assert refused(TokenRevoked, "token_revoked", guard, a).context["by"] == "jti"
    assert refused(TokenRevoked, "token_revoked", guard, b).context["by"] == "sid"
    assert refused(TokenRevoked, "token_revoked", guard, c).context["by"] == "user"
    assert guard.verify_sync(d).jti == "d"  # issued after the epoch
    # Unrelated tokens live on; a client token (no sid) is only hit by jti or its sub.
    client_token = token(key, jti="e", sid=None, sub="cli_1", client_id="cli_1")
    assert guard.verify_sync(client_token).sid is None
    fake.revoke("user", "cli_1", expires_at=NOW + 600, not_before=NOW + 1)
    run_on(guard, lambda: guard.feed.sync())  # type: ignore[union-attr]
    assert refused(TokenRevoked, "token_revoked", guard, client_token).context["by"] == "user"


def test_the_follower_picks_up_events_by_itself(guard: Guard, fake: FakeIssuer, key: Key) -> None:
    t = token(key, jti="later")
    guard.verify_sync(t)
    fake.revoke("jti", "later", expires_at=NOW + 600)

    def dead() -> bool:
        try:
            guard.verify_sync(t)
        except TokenRevoked:
            return True
        return False

    eventually(dead)


def test_fail_closed_after_the_feed_is_stale(
    guard: Guard, fake: FakeIssuer, clock: FixedClock, key: Key, caplog: pytest.LogCaptureFixture
) -> None:
    t = token(key)
    guard.verify_sync(t)
    fake.down = True
    clock.advance(30)
    assert guard.revocation_staleness == 30
    assert guard.verify_sync(t).sub == "usr_1"  # exactly at the bound: still accepted
    clock.advance(0.001)
    for tok in (t, token(key, jti="fresh")):  # cached or not
        err = refused(InvalidToken, "invalid_token", guard, tok)
        assert err.context["condition"] == "revocation_unavailable"
        assert err.context["staleness"] == pytest.approx(30.001)
    with caplog.at_level(logging.ERROR, logger="authgate.guard"):
        guard._runtime.log_staleness(clock.now())
    assert "refusing every token" in caplog.text
    # The server answers again: tokens pass again at once.
    fake.down = False
    run_on(guard, lambda: guard.feed.sync())  # type: ignore[union-attr]
    assert guard.revocation_staleness == 0
    assert guard.verify_sync(t).sub == "usr_1"


def test_fail_open_only_when_asked(fake: FakeIssuer, clock: FixedClock, key: Key) -> None:
    with fake_guard(fake, clock, fail_closed_after=None, feed_wait=0) as g:
        fake.down = True
        clock.advance(3600)
        assert g.verify_sync(token(key, exp=NOW + 7200, iat=NOW + 3000)).sub == "usr_1"
        assert g.revocation_staleness == 3600


def test_the_guard_keeps_its_last_good_keys_for_a_bounded_time(
    fake: FakeIssuer, clock: FixedClock, key: Key
) -> None:
    with fake_guard(fake, clock, revocation="off", jwks_stale_for=600) as g:
        fake.down = True
        clock.advance(300 + 599)
        run_on(g, lambda: g.jwks.maintain())  # type: ignore[union-attr]
        t = token(key, iat=clock.now(), exp=clock.now() + 600, jti=uuid.uuid4().hex)
        assert g.verify_sync(t).sub == "usr_1"
        clock.advance(1)
        run_on(g, lambda: g.jwks.maintain())  # type: ignore[union-attr]
        err = refused(InvalidToken, "invalid_token", g, t)
        assert err.context["condition"] == "keys_unavailable"
        assert not g.ready


# --- keys ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_random_kids_cause_at_most_one_fetch_per_cooldown(
    fake: FakeIssuer, clock: FixedClock, key: Key, key2: Key
) -> None:
    async with fake_guard(fake, clock, feed_wait=0) as g:
        assert fake.requests["/jwks.json"] == 1
        flood = [forged_kid(key, uuid.uuid4().hex) for _ in range(1000)]

        async def attempt(tok: str) -> str:
            try:
                await g.verify(tok)
            except UnknownKey as exc:
                return exc.code
            return "accepted"

        assert set(await asyncio.gather(*map(attempt, flood))) == {"unknown_key"}
        assert fake.requests["/jwks.json"] == 1  # within the start's cooldown
        clock.advance(30)
        await g.sync()
        assert set(await asyncio.gather(*map(attempt, flood))) == {"unknown_key"}
        assert fake.requests["/jwks.json"] == 2  # one fetch for the whole flood
        # A real new key (of another algorithm) verifies after the cooldown, no restart.
        fake.publish(key, key2)
        new = token(key2, jti="new")
        with pytest.raises(AlgorithmNotAllowed):  # no fetched key has EdDSA yet
            await g.verify(new)
        clock.advance(30)
        await g.sync()
        assert (await g.verify(new)).jti == "new"
        assert fake.requests["/jwks.json"] == 3


def test_the_same_flood_through_verify_sync(fake: FakeIssuer, clock: FixedClock, key: Key) -> None:
    with fake_guard(fake, clock, revocation="off") as g:
        clock.advance(30)
        for _ in range(300):
            with pytest.raises(UnknownKey):
                g.verify_sync(forged_kid(key, uuid.uuid4().hex))
        assert fake.requests["/jwks.json"] == 2


def test_fast_path_io_verify_cached_answers_from_memory_only(
    fake: FakeIssuer, clock: FixedClock, key: Key
) -> None:
    # verify_cached never starts the guard and never fetches: None says only I/O can decide.
    g = fake_guard(fake, clock, revocation="off")
    t = token(key)
    assert g.verify_cached(t) is None  # not started
    assert sum(fake.requests.values()) == 0
    with g:
        fetches = fake.requests["/jwks.json"]
        first, again = g.verify_cached(t), g.verify_cached(t)
        assert first is not None
        assert again is first  # the cache
        assert g.cache_stats() == (1, 1, 1)
        with pytest.raises(InvalidAudience):
            g.verify_cached(token(key, aud="other"))
        unknown = forged_kid(key, "not-yet")
        with pytest.raises(UnknownKey):  # within the start's cooldown: no fetch can help
            g.verify_cached(unknown)
        clock.advance(30)
        assert g.verify_cached(unknown) is None  # a fetch may bring it: verify() decides
        assert fake.requests["/jwks.json"] == fetches
        with pytest.raises(UnknownKey):
            g.verify_sync(unknown)
        assert fake.requests["/jwks.json"] == fetches + 1
    assert g.verify_cached(t) is None  # closed


def test_fast_path_io_verify_cached_checks_revocation_in_memory(
    guard: Guard, fake: FakeIssuer, key: Key
) -> None:
    t = token(key, jti="fast")
    principal = guard.verify_cached(t)
    assert principal is not None
    assert principal.jti == "fast"
    fake.revoke("jti", "fast", expires_at=NOW + 600)
    run_on(guard, lambda: guard.feed.sync())  # type: ignore[union-attr]
    with pytest.raises(TokenRevoked):
        guard.verify_cached(t)


def test_a_key_that_leaves_the_jwks_takes_its_cached_tokens_along(
    fake: FakeIssuer, clock: FixedClock, key: Key
) -> None:
    key2 = Key.generate("ES256", kid="k3")
    fake.publish(key, key2)
    with fake_guard(fake, clock, revocation="off") as g:
        old, new = token(key, jti="old"), token(key2, jti="new")
        g.verify_sync(old)
        g.verify_sync(new)
        assert g.cache_stats()[0] == 2
        fake.publish(key2)
        assert run_on(g, lambda: g.jwks.refresh())  # type: ignore[union-attr]
        assert g.cache_stats()[0] == 0
        refused(UnknownKey, "unknown_key", g, old)
        assert g.verify_sync(new).jti == "new"


def test_hmac_keys_in_a_remote_jwks_are_never_used(
    fake: FakeIssuer, clock: FixedClock, key: Key
) -> None:
    secret = Key.from_secret(b"s" * 32, kid="hs")
    fake.published.append(secret.to_jwk(private=True))
    with fake_guard(fake, clock, revocation="off") as g:
        assert g.jwks is not None
        assert "hs" not in (g.jwks.keys or ())
        with pytest.raises(AuthgateError) as info:
            g.verify_sync(token(secret))
        assert info.value.code == "algorithm_not_allowed"


# --- operations ------------------------------------------------------------------------------


def test_metrics(fake: FakeIssuer, clock: FixedClock, key: Key) -> None:
    registry = CollectorRegistry()
    with fake_guard(fake, clock, metrics=registry, feed_wait=0) as g:
        t = token(key)
        g.verify_sync(t)
        g.verify_sync(t)
        fake.revoke("jti", "x", expires_at=NOW + 60)
        run_on(g, lambda: g.feed.sync())  # type: ignore[union-attr]
        clock.advance(12)
        text = generate_latest(registry).decode()
    assert "authgate_guard_revocation_staleness_seconds 12.0" in text
    assert 'authgate_guard_revoked_entries{kind="jti"} 1.0' in text
    assert "authgate_guard_token_cache_entries 1.0" in text
    assert "authgate_guard_token_cache_hits_total 1.0" in text
    assert "authgate_guard_token_cache_misses_total 1.0" in text
    assert "authgate_guard_jwks_fetches_total 1.0" in text


def test_staleness_is_infinite_before_the_first_answer(fake: FakeIssuer, clock: FixedClock) -> None:
    g = fake_guard(fake, clock)
    assert g.revocation_staleness == math.inf
    assert not g.ready


def test_close_then_start_again(fake: FakeIssuer, clock: FixedClock, key: Key) -> None:
    g = fake_guard(fake, clock, feed_wait=0)
    g.start_sync()
    assert g.verify_sync(token(key)).sub == "usr_1"
    g.close_sync()
    g.close_sync()  # idempotent
    assert not g.ready
    # verify_sync starts it again on first use.
    assert g.verify_sync(token(key, jti="again")).jti == "again"
    assert fake.requests["/.well-known/oauth-authorization-server"] == 2
    g.close_sync()
