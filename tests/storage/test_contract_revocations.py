"""Contract: RevocationStore (the revocation feed)."""

from __future__ import annotations

import pytest

from authgate.storage.base import RevocationEvent, Storage

from ._records import T0

pytestmark = pytest.mark.anyio


async def test_add_revocation_returns_the_event_with_increasing_ids(storage: Storage) -> None:
    a = await storage.add_revocation("jti", "j1", now=T0, expires_at=T0 + 600)
    b = await storage.add_revocation("sid", "s1", now=T0 + 1, expires_at=T0 + 700)
    c = await storage.add_revocation(
        "user", "u1", now=T0 + 2, expires_at=T0 + 800, not_before=T0 + 2
    )
    assert a == RevocationEvent(a.id, "jti", "j1", T0, T0 + 600, None)
    assert b == RevocationEvent(b.id, "sid", "s1", T0 + 1, T0 + 700, None)
    assert c == RevocationEvent(c.id, "user", "u1", T0 + 2, T0 + 800, T0 + 2)
    assert 0 < a.id < b.id < c.id


async def test_revocations_after_in_id_order_with_cursor_and_limit(storage: Storage) -> None:
    events = [
        await storage.add_revocation("jti", f"j{i}", now=T0 + i, expires_at=T0 + 1000)
        for i in range(5)
    ]
    assert await storage.revocations_after(None, now=T0, limit=100) == events
    assert await storage.revocations_after(events[1].id, now=T0, limit=100) == events[2:]
    assert await storage.revocations_after(events[1].id, now=T0, limit=2) == events[2:4]
    assert await storage.revocations_after(events[-1].id, now=T0, limit=100) == []
    assert await storage.revocations_after(0, now=T0, limit=100) == events


async def test_revocations_after_skips_expired_events(storage: Storage) -> None:
    short = await storage.add_revocation("jti", "short", now=T0, expires_at=T0 + 10)
    long = await storage.add_revocation("jti", "long", now=T0, expires_at=T0 + 1000)
    assert await storage.revocations_after(None, now=T0 + 9.5, limit=10) == [short, long]
    # An event is expired at its expires_at.
    assert await storage.revocations_after(None, now=T0 + 10, limit=10) == [long]
    assert await storage.revocations_after(None, now=T0 + 1000, limit=10) == []


async def test_is_revoked_matches_kind_value_and_expiry(storage: Storage) -> None:
    await storage.add_revocation("sid", "abc", now=T0, expires_at=T0 + 60)
    assert await storage.is_revoked("sid", "abc", now=T0) is True
    assert await storage.is_revoked("sid", "abc", now=T0 + 59.9) is True
    assert await storage.is_revoked("sid", "abc", now=T0 + 60) is False
    assert await storage.is_revoked("jti", "abc", now=T0) is False
    assert await storage.is_revoked("user", "abc", now=T0) is False
    assert await storage.is_revoked("sid", "abcd", now=T0) is False
    assert await storage.is_revoked("sid", "ab", now=T0) is False


async def test_is_revoked_with_several_events_for_one_value(storage: Storage) -> None:
    await storage.add_revocation("user", "u1", now=T0, expires_at=T0 + 10, not_before=T0)
    await storage.add_revocation("user", "u1", now=T0 + 5, expires_at=T0 + 100, not_before=T0 + 5)
    assert await storage.is_revoked("user", "u1", now=T0 + 50) is True
    assert await storage.is_revoked("user", "u1", now=T0 + 100) is False


async def test_latest_revocation_id(storage: Storage) -> None:
    assert await storage.latest_revocation_id() == 0
    a = await storage.add_revocation("jti", "a", now=T0, expires_at=T0 + 10)
    assert await storage.latest_revocation_id() == a.id
    b = await storage.add_revocation("jti", "b", now=T0, expires_at=T0 + 10)
    assert await storage.latest_revocation_id() == b.id


async def test_purge_revocations_deletes_expired_ones(storage: Storage) -> None:
    old1 = await storage.add_revocation("jti", "old1", now=T0, expires_at=T0 + 10)
    keep = await storage.add_revocation("jti", "keep", now=T0, expires_at=T0 + 1000)
    old2 = await storage.add_revocation("jti", "old2", now=T0, expires_at=T0 + 20)
    newest = await storage.add_revocation("sid", "newest", now=T0, expires_at=T0 + 2000)

    assert await storage.purge_revocations(now=T0 + 20) == 2
    assert await storage.revocations_after(None, now=T0, limit=10) == [keep, newest]
    assert await storage.is_revoked("jti", "old1", now=T0) is False
    assert await storage.is_revoked("jti", "old2", now=T0) is False
    assert await storage.purge_revocations(now=T0 + 20) == 0
    assert old1.id < keep.id < old2.id


async def test_ids_are_never_reused_after_a_purge(storage: Storage) -> None:
    # Feed cursors rely on it: a guard at cursor N must see every later event.
    events = [
        await storage.add_revocation("jti", f"j{i}", now=T0, expires_at=T0 + 10) for i in range(3)
    ]
    highest = events[-1].id
    await storage.purge_revocations(now=T0 + 10)
    assert await storage.revocations_after(None, now=T0 + 10, limit=10) == []
    assert await storage.latest_revocation_id() == highest

    later = await storage.add_revocation("jti", "later", now=T0 + 11, expires_at=T0 + 100)
    assert later.id > highest
    assert await storage.revocations_after(highest, now=T0 + 11, limit=10) == [later]
    assert await storage.latest_revocation_id() == later.id
