"""The revocation state and the feed follower (against a scripted feed)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import tracemalloc
from typing import Any

import httpx
import pytest

from authgate.clock import FixedClock
from authgate.guard import Event, FeedFollower, RevocationState
from authgate.guard._http import FetchError

from ._fake import CLIENT, NOW, FakeIssuer

# --- events ----------------------------------------------------------------------------------


def test_an_event_parses() -> None:
    ev = Event.parse({"id": 3, "kind": "user", "value": "usr_1", "not_before": 5, "expires_at": 9})
    assert ev == Event(3, "user", "usr_1", 9.0, 5.0)
    assert Event.parse({"id": 1, "kind": "jti", "value": "j", "expires_at": 1.5}).not_before is None


@pytest.mark.parametrize(
    "raw",
    [
        [],
        {"id": -1, "kind": "jti", "value": "j", "expires_at": 1},
        {"id": "1", "kind": "jti", "value": "j", "expires_at": 1},
        {"id": True, "kind": "jti", "value": "j", "expires_at": 1},
        {"id": 1, "kind": "JTI", "value": "j", "expires_at": 1},
        {"id": 1, "kind": "email", "value": "j", "expires_at": 1},
        {"id": 1, "kind": "jti", "value": "", "expires_at": 1},
        {"id": 1, "kind": "jti", "value": 5, "expires_at": 1},
        {"id": 1, "kind": "jti", "value": "x" * 513, "expires_at": 1},
        {"id": 1, "kind": "jti", "value": "j"},
        {"id": 1, "kind": "jti", "value": "j", "expires_at": "1"},
        {"id": 1, "kind": "jti", "value": "j", "expires_at": math.inf},
        {"id": 1, "kind": "jti", "value": "j", "expires_at": 1, "not_before": "0"},
        {"id": 1, "kind": "user", "value": "u", "expires_at": 1},
        {"id": 1, "kind": "user", "value": "u", "expires_at": 1, "ver": "3"},
        {"id": 1, "kind": "user", "value": "u", "expires_at": 1, "ver": -1},
        {"id": 1, "kind": "user", "value": "u", "expires_at": 1, "ver": 3.0},
        {"id": 1, "kind": "user", "value": "u", "expires_at": 1, "ver": True},
        {"id": 1, "kind": "user", "value": "u", "expires_at": 1, "ver": None},
        {"id": 1, "kind": "user", "value": "u", "expires_at": 1, "ver": [3], "not_before": 0},
        {"id": 1, "kind": "jti", "value": "j", "expires_at": 1, "ver": "3"},
    ],
    ids=repr,
)
def test_a_malformed_event_is_refused(raw: Any) -> None:
    with pytest.raises(ValueError, match=r"event|kind"):
        Event.parse(raw)


# --- the state -------------------------------------------------------------------------------


def test_each_kind_revokes_what_it_names() -> None:
    state = RevocationState()
    state.apply(
        [
            Event(1, "jti", "j1", NOW + 600),
            Event(2, "sid", "s1", NOW + 600),
            Event(3, "user", "u1", NOW + 600, not_before=NOW),
        ],
        now=NOW,
    )
    assert len(state) == 3
    assert state.reason(jti="j1", sid="s9", sub="u9", iat=NOW) == "jti"
    assert state.reason(jti="j9", sid="s1", sub="u9", iat=NOW) == "sid"
    assert state.reason(jti="j9", sid=None, sub="u9", iat=NOW) is None
    # user: only tokens issued before the epoch.
    assert state.reason(jti="j9", sid=None, sub="u1", iat=NOW - 0.001) == "user"
    assert state.reason(jti="j9", sid=None, sub="u1", iat=NOW) is None
    assert state.reason(jti="j9", sid=None, sub="u1", iat=NOW + 1) is None


def test_a_later_user_epoch_wins_and_an_earlier_one_does_not_undo_it() -> None:
    state = RevocationState()
    state.apply([Event(1, "user", "u", NOW + 600, not_before=NOW + 10)], now=NOW)
    state.apply([Event(2, "user", "u", NOW + 500, not_before=NOW + 5)], now=NOW)
    assert state.user["u"] == NOW + 10
    assert state.reason(jti="j", sid=None, sub="u", iat=NOW + 7) == "user"


def test_entries_drop_when_their_tokens_have_expired() -> None:
    state = RevocationState()
    state.apply(
        [
            Event(1, "jti", "j1", NOW + 10),
            Event(2, "sid", "s1", NOW + 20),
            Event(3, "user", "u1", NOW + 30, not_before=NOW),
            Event(4, "jti", "already-gone", NOW),
        ],
        now=NOW,
    )
    assert len(state) == 3  # the expired one was never recorded
    assert state.purge(NOW + 9.999) == 0
    assert state.purge(NOW + 10) == 1
    assert "j1" not in state.jti
    assert state.purge(NOW + 25) == 1
    assert not state.sid
    assert state.purge(NOW + 30) == 1
    assert not state.user
    assert len(state) == 0


def test_an_extended_entry_survives_the_purge_of_its_first_expiry() -> None:
    state = RevocationState()
    state.apply([Event(1, "sid", "s", NOW + 10)], now=NOW)
    state.apply([Event(2, "sid", "s", NOW + 100)], now=NOW)
    assert state.purge(NOW + 50) == 0
    assert "s" in state.sid
    assert state.purge(NOW + 100) == 1


def test_applying_is_idempotent() -> None:
    state = RevocationState()
    events = [Event(i, "jti", f"j{i}", NOW + 60) for i in range(100)]
    state.apply(events, now=NOW)
    state.apply(events, now=NOW)
    assert len(state) == 100
    assert state.purge(NOW + 60) == 100


def test_memory_estimate_is_close_to_what_is_held() -> None:
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        state = RevocationState()
        kinds = ("jti", "sid", "user")
        state.apply(
            (
                Event(i, kinds[i % 3], f"value-{i:022d}", NOW + 60 + i, NOW if i % 3 == 2 else None)
                for i in range(30_000)
            ),
            now=NOW,
        )
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(state) == 30_000
    assert 100 < held / 30_000 < 400
    assert 0.75 < state.approx_bytes() / held < 1.33, (state.approx_bytes(), held)


# --- the follower ----------------------------------------------------------------------------


def follower(fake: FakeIssuer, client: httpx.AsyncClient, clock: FixedClock) -> FeedFollower:
    return FeedFollower(
        "https://auth.test/feed",
        http=lambda: client,
        client_id=CLIENT[0],
        client_secret=CLIENT[1],
        clock=clock,
        wait=10.0,
    )


@pytest.mark.anyio
async def test_the_first_sync_takes_every_live_event_then_follows_the_cursor() -> None:
    fake = FakeIssuer([])
    fake.revoke("jti", "j1", expires_at=NOW + 60)
    fake.revoke("sid", "s1", expires_at=NOW + 60)
    clock = FixedClock(NOW)
    seen: list[list[Event]] = []
    async with httpx.AsyncClient(transport=fake.transport) as client:
        feed = follower(fake, client, clock)
        feed._on_events = seen.append
        assert feed.staleness(NOW) == math.inf
        assert await feed.sync(wait=10) == 2
        assert fake.feed_params[-1] == {}  # no cursor, no wait: every live event
        assert feed.cursor == 2
        # One page is not the whole feed: synced only once a page says there is no more.
        assert (feed.caught_up, feed.synced_at) == (False, -math.inf)
        assert await feed.sync() == 0
        assert fake.feed_params[-1] == {"after": "2"}
        assert (feed.caught_up, feed.synced_at) == (True, NOW)
        assert set(feed.state.jti) == {"j1"}
        clock.advance(3)
        assert feed.staleness(clock.now()) == 3
        fake.revoke("user", "u1", expires_at=NOW + 60, not_before=NOW + 1)
        assert await feed.sync(wait=10) == 1
        assert fake.feed_params[-1] == {"after": "2", "wait": "10"}
        assert feed.cursor == 3
        assert feed.staleness(clock.now()) == 0
        assert await feed.sync(wait=0) == 0
        assert fake.feed_params[-1] == {"after": "3"}
        assert [[e.id for e in batch] for batch in seen] == [[1, 2], [3]]


@pytest.mark.anyio
async def test_stale_revocations_a_feed_that_does_not_advance_is_a_failed_poll() -> None:
    """A page after the cursor must move forward: the same page again (or one whose ids
    are not past the cursor) used to keep a guard's first sync looping forever."""
    fake = FakeIssuer([])
    fake.revoke("jti", "j1", expires_at=NOW + 60)
    clock = FixedClock(NOW)
    async with httpx.AsyncClient(transport=fake.transport) as client:
        feed = follower(fake, client, clock)
        assert await feed.sync() == 1
        fake.replay_from = 0  # answer every event again, whatever the cursor
        with pytest.raises(FetchError, match="does not advance"):
            await feed.sync()
        assert (feed.caught_up, feed.synced_at) == (False, -math.inf)
        assert feed.failures == 1


@pytest.mark.anyio
async def test_client_credentials_go_as_http_basic_form_encoded() -> None:
    fake = FakeIssuer([])
    async with httpx.AsyncClient(transport=fake.transport) as client:
        await follower(fake, client, FixedClock(NOW)).sync()
    assert fake.authorizations == [fake.basic()]


@pytest.mark.anyio
async def test_a_cursor_that_goes_back_means_a_new_feed() -> None:
    fake = FakeIssuer([])
    for i in range(5):
        fake.revoke("jti", f"old{i}", expires_at=NOW + 60)
    clock = FixedClock(NOW)
    async with httpx.AsyncClient(transport=fake.transport) as client:
        feed = follower(fake, client, clock)
        await feed.sync()
        assert feed.cursor == 5
        fake.events = []  # the server's database was replaced
        fake.revoke("jti", "new1", expires_at=NOW + 60)
        fake.clamp_cursor = True  # it answers its own latest id, below our cursor
        await feed.sync()
        assert feed.cursor == 1
        assert "new1" in feed.state.jti
        # Read again from the start, page after page, until a page is empty.
        assert fake.feed_params[-2:] == [{}, {"after": "1"}]


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "permanent"), [(401, True), (403, True), (500, False)])
async def test_refusals_and_failures(status: int, permanent: bool) -> None:
    fake = FakeIssuer([])
    fake.status["/feed"] = status
    clock = FixedClock(NOW)
    async with httpx.AsyncClient(transport=fake.transport) as client:
        feed = follower(fake, client, clock)
        with pytest.raises(FetchError) as info:
            await feed.sync()
    assert info.value.permanent is permanent
    assert info.value.status == status
    assert feed.failures == 1
    assert feed.synced_at == -math.inf


@pytest.mark.anyio
@pytest.mark.parametrize(
    "page",
    [
        {"cursor": "1", "events": []},
        {"cursor": 1},
        {"cursor": -1, "events": []},
        {"cursor": 1, "events": [{"id": 1, "kind": "jti"}]},
        {
            "cursor": 2,
            "events": [
                {"id": 1, "kind": "jti", "value": "j", "expires_at": NOW + 60},
                {"id": 2, "kind": "user", "value": "u", "expires_at": NOW + 60, "ver": "7"},
            ],
        },
    ],
    ids=repr,
)
async def test_a_malformed_page_is_a_failed_poll(page: dict[str, Any]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=page)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        feed = FeedFollower(
            "https://auth.test/feed",
            http=lambda: client,
            client_id="c",
            client_secret="s",
            clock=FixedClock(NOW),
        )
        with pytest.raises(FetchError, match="malformed"):
            await feed.sync()
    assert len(feed.state) == 0
    assert feed.synced_at == -math.inf  # no answer counted: staleness grows, fail closed


@pytest.mark.anyio
@pytest.mark.parametrize("held", [10.0, 0.0])
async def test_clock_bypass_long_poll_timing_reads_the_injected_clock(held: float) -> None:
    # Whether the server long-polls is judged on the follower's clock: a poll it held for
    # `wait` s on that clock is followed at once; an answer at once waits `interval` (600 s
    # here, which this test never waits for).
    clock = FixedClock(NOW)
    count = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        await asyncio.sleep(0)  # a poll yields, as a real one does
        clock.advance(held)
        return httpx.Response(200, json={"cursor": 0, "events": []})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        feed = FeedFollower(
            "https://auth.test/feed",
            http=lambda: client,
            client_id="c",
            client_secret="s",
            clock=clock,
            wait=10.0,
            interval=600.0,
        )
        task = asyncio.ensure_future(feed.run())
        try:
            for _ in range(500):  # loop turns, not time
                await asyncio.sleep(0)
                if count >= 5:
                    break
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if held:
        assert count >= 5  # back to back
        assert feed.synced_at >= NOW + 4 * held
    else:
        assert count == 1  # then it waits its interval
        assert feed.synced_at == NOW
