"""User revocation by privilege version: a user event with ``ver`` kills every token of that
user whose ``ver`` claim is lower (or absent), decided by ``ver`` alone, never by ``iat``;
an event without ``ver`` (an older server) keeps the ``iat < not_before`` rule. The state,
the guard with its verified-token cache, and end to end over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from authgate.clock import FixedClock
from authgate.errors import InvalidToken, TokenRevoked
from authgate.guard import Event, Guard, RevocationState
from authgate.jose import Key

from ._apps import fastapi_app
from ._fake import NOW, FakeIssuer, fake_guard, run_on, token
from ._issuer import ScriptedIssuer, serve
from ._support import AUDIENCE, AppServer, bearer, eventually

# --- the state -------------------------------------------------------------------------------


def user(ev_id: int, sub: str, *, ver: int | None, not_before: float | None = None) -> Event:
    return Event(ev_id, "user", sub, NOW + 600, not_before=not_before, ver=ver)


def test_user_event_parses_with_ver_with_or_without_not_before() -> None:
    raw = {"id": 4, "kind": "user", "value": "u", "ver": 7, "expires_at": NOW + 60}
    assert Event.parse(raw) == Event(4, "user", "u", NOW + 60, None, 7)
    both = Event.parse({**raw, "not_before": NOW})
    assert (both.ver, both.not_before) == (7, NOW)
    assert Event.parse({**raw, "ver": 0}).ver == 0
    assert Event.parse({**raw, "ver": 2**40}).ver == 2**40


def test_stale_privileges_user_version_decides_alone_never_iat() -> None:
    state = RevocationState()
    # A server sends not_before too; with ver present it must not be used.
    state.apply([user(1, "u", ver=5, not_before=NOW)], now=NOW)
    assert state.user_ver == {"u": 5}
    assert "u" not in state.user
    # Minted during the demotion, in the same (whole) second: old roles, old ver: dead.
    assert state.reason(jti="j", sid=None, sub="u", iat=NOW, ver=4) == "user"
    assert state.reason(jti="j", sid=None, sub="u", iat=NOW + 100, ver=4) == "user"
    # The new version lives, whatever its iat says.
    assert state.reason(jti="j", sid=None, sub="u", iat=NOW - 100, ver=5) is None
    assert state.reason(jti="j", sid=None, sub="u", iat=NOW - 100, ver=6) is None
    # No integer ver claim: dead for a user with a version.
    assert state.reason(jti="j", sid=None, sub="u", iat=NOW + 100) == "user"
    # Other users are untouched.
    assert state.reason(jti="j", sid=None, sub="v", iat=NOW, ver=0) is None
    assert state.reason(jti="j", sid=None, sub="v", iat=NOW) is None


def test_stale_privileges_the_highest_version_is_kept_out_of_order_and_repeated() -> None:
    state = RevocationState()
    state.apply([user(3, "u", ver=7)], now=NOW)
    state.apply([user(1, "u", ver=3), user(2, "u", ver=5), user(3, "u", ver=7)], now=NOW)
    state.apply([user(1, "u", ver=3)], now=NOW)
    assert state.user_ver == {"u": 7}
    assert state.reason(jti="j", sid=None, sub="u", iat=NOW, ver=6) == "user"
    assert state.reason(jti="j", sid=None, sub="u", iat=NOW, ver=7) is None
    assert len(state) == 1
    assert state.users == 1


def test_stale_privileges_an_event_without_ver_keeps_the_iat_rule() -> None:
    state = RevocationState()
    state.apply([user(1, "u", ver=None, not_before=NOW)], now=NOW)
    assert state.user == {"u": NOW}
    assert not state.user_ver
    assert state.reason(jti="j", sid=None, sub="u", iat=NOW - 1, ver=9) == "user"
    assert state.reason(jti="j", sid=None, sub="u", iat=NOW, ver=None) is None
    # A later versioned event for the same user adds its rule; the old epoch stays.
    state.apply([user(2, "u", ver=2)], now=NOW)
    assert state.reason(jti="j", sid=None, sub="u", iat=NOW + 1, ver=1) == "user"
    assert state.reason(jti="j", sid=None, sub="u", iat=NOW - 1, ver=2) == "user"
    assert state.reason(jti="j", sid=None, sub="u", iat=NOW + 1, ver=2) is None


def test_user_versions_drop_when_their_tokens_have_expired() -> None:
    state = RevocationState()
    state.apply([Event(1, "user", "u", NOW + 30, ver=4)], now=NOW)
    assert state.purge(NOW + 29) == 0
    assert state.user_ver == {"u": 4}
    assert state.purge(NOW + 30) == 1
    assert not state.user_ver
    assert len(state) == 0


# --- the guard and its cache -----------------------------------------------------------------


@pytest.fixture(scope="module")
def key() -> Key:
    return Key.generate("ES256", kid="k1")


@pytest.fixture
def fake(key: Key) -> FakeIssuer:
    return FakeIssuer([key])


@pytest.fixture
def guard(fake: FakeIssuer) -> Iterator[Guard]:
    with fake_guard(fake, FixedClock(NOW), feed_wait=0, feed_interval=0.05) as g:
        yield g


def by(guard: Guard, tok: str) -> str | None:
    """How the guard refuses ``tok`` (the revocation grain), or None if it accepts it."""
    try:
        guard.verify_sync(tok)
    except TokenRevoked as exc:
        return str(exc.context["by"])
    return None


def test_stale_privileges_cached_tokens_die_with_their_user_version(
    guard: Guard, fake: FakeIssuer, key: Key
) -> None:
    old = token(key, jti="old", ver=1, iat=NOW - 10)  # issued after not_before below
    unversioned = token(key, jti="none", iat=NOW - 10)
    new = token(key, jti="new", ver=2, iat=NOW - 30)  # issued before not_before below
    other = token(key, jti="other", sub="usr_2", ver=0)
    for tok in (old, unversioned, new, other):
        assert by(guard, tok) is None  # verified once, now cached
    assert guard.cache_stats()[0] == 4
    fake.revoke("user", "usr_1", expires_at=NOW + 600, not_before=NOW - 20, ver=2)
    assert run_on(guard, lambda: guard.feed.sync()) == 1  # type: ignore[union-attr]
    assert guard.cache_stats()[0] == 4  # still cached, and still checked on every call
    assert by(guard, old) == "user"
    assert by(guard, unversioned) == "user"
    assert by(guard, new) is None
    assert by(guard, other) is None
    # A repeated, older event does not bring old tokens back.
    fake.revoke("user", "usr_1", expires_at=NOW + 600, ver=1)
    run_on(guard, lambda: guard.feed.sync())  # type: ignore[union-attr]
    assert by(guard, old) == "user"
    assert by(guard, token(key, jti="fresh-old", ver=1)) == "user"  # uncached too


def test_stale_privileges_a_malformed_ver_fails_the_poll_closed(fake: FakeIssuer, key: Key) -> None:
    clock = FixedClock(NOW)
    with fake_guard(fake, clock, feed_wait=0, feed_interval=0.05) as g:
        tok = token(key, ver=1)
        assert by(g, tok) is None
        fake.revoke("user", "usr_1", expires_at=NOW + 600, ver="2")
        with pytest.raises(InvalidToken, match="malformed"):
            run_on(g, lambda: g.sync())
        clock.advance(30.001)  # the default fail_closed_after passes without an answer
        with pytest.raises(InvalidToken) as info:
            g.verify_sync(tok)
        assert info.value.context["condition"] == "revocation_unavailable"


# --- end to end ------------------------------------------------------------------------------


def test_stale_privileges_end_to_end_over_http(key: Key) -> None:
    with serve(ScriptedIssuer([key])) as issuer:
        guard = Guard(
            issuer=issuer.url,
            audience=AUDIENCE,
            client_id="cli_guard",
            client_secret="guard-secret-value",
            clock=FixedClock(NOW),
            feed_wait=0,
            feed_interval=0.05,
        )
        old = issuer.token(jti="old", ver=3, roles=["admin"])
        new = issuer.token(jti="new", ver=4, iat=NOW - 1)
        with AppServer(fastapi_app(guard)) as http:
            assert http.get("/posts", headers=bearer(old)).status_code == 200
            assert http.get("/posts", headers=bearer(new)).status_code == 200
            # The demotion: the user's version goes to 4 (not_before would spare `old`).
            issuer.revoke_user("usr_1", ver=4, not_before=NOW - 5)

            def refused() -> bool:
                return http.get("/posts", headers=bearer(old)).status_code == 401

            eventually(refused)
            answer = http.get("/posts", headers=bearer(old))
            assert answer.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
            assert http.get("/posts", headers=bearer(new)).status_code == 200


def test_stale_revocations_a_started_guard_holds_every_page_of_the_feed(
    fake: FakeIssuer, key: Key
) -> None:
    """The feed answers at most a page of events; a guard used to be ready after the first
    page, and accepted a token revoked by a later one until its next poll."""
    fake.page_limit = 100
    fake.later_pages_delay = 0.3  # so that the pages after the first are still on the way
    for i in range(250):
        fake.revoke("jti", f"j{i}", expires_at=NOW + 600)
    clock = FixedClock(NOW)
    with fake_guard(fake, clock, feed_wait=0, feed_interval=60) as g:
        assert by(g, token(key, jti="j249")) == "jti"  # on the third page
        assert by(g, token(key, jti="j0")) == "jti"
        assert by(g, token(key, jti="live")) is None


def test_stale_revocations_an_event_outlives_its_tokens_by_the_guards_leeway() -> None:
    """A guard with leeway accepts a token until exp + leeway: it keeps each event that
    much longer than the server says, or a revoked token would come back after exp."""
    state = RevocationState(leeway=30)
    state.apply([Event(1, "jti", "j", NOW + 10, None, None)], now=NOW)
    state.purge(NOW + 20)
    assert state.reason(jti="j", sid=None, sub="u", iat=NOW) == "jti"
    state.purge(NOW + 41)
    assert state.reason(jti="j", sid=None, sub="u", iat=NOW) is None


def test_stale_revocations_a_guard_still_paging_its_feed_fails_closed(
    fake: FakeIssuer, key: Key
) -> None:
    """A guard that goes live after its start-up timeout while its first sync is still
    paging must refuse every token, not check them against the first page only (it used
    to accept a token revoked on a later page and report itself ready)."""
    fake.page_limit = 100
    fake.later_pages_delay = 2.0
    for i in range(250):
        fake.revoke("jti", f"j{i}", expires_at=NOW + 600)
    clock = FixedClock(NOW)
    with fake_guard(fake, clock, feed_wait=0, feed_interval=60, startup_timeout=0.3) as g:
        assert not g.ready
        for jti in ("j249", "live"):
            with pytest.raises(InvalidToken) as refused:
                g.verify_sync(token(key, jti=jti))
            assert refused.value.context.get("condition") == "revocation_unavailable"
