"""Contract: SessionStore (sessions are refresh families; tokens are stored as digests)."""

from __future__ import annotations

import dataclasses

import pytest

from authgate.errors import Conflict
from authgate.storage.base import AuditEntry, RoleRecord, Storage

from ._records import DAY, T0, digest, refresh, session, user

pytestmark = pytest.mark.anyio


@pytest.fixture
async def alice(storage: Storage) -> str:
    await storage.create_user(user("alice"))
    return "alice"


async def test_create_session_round_trip(storage: Storage, alice: str) -> None:
    s = dataclasses.replace(session("s1", alice), scope=None, ip=None, user_agent=None)
    first = refresh("t1", "s1")
    await storage.create_session(s, first, password_hash=None)
    assert await storage.get_session("s1") == s
    assert await storage.get_refresh(first.digest) == first
    assert await storage.get_session("nope") is None
    assert await storage.get_refresh(digest("nope")) is None

    full = session("s2", alice)
    await storage.create_session(full, refresh("t2", "s2"), password_hash=None)
    assert await storage.get_session("s2") == full


async def test_create_session_reads_the_live_user_in_the_same_transaction(
    storage: Storage,
) -> None:
    await storage.put_role(RoleRecord("editor", ("posts:write",), T0))
    await storage.create_user(user("u1", roles=("editor",)))
    assert await storage.set_roles("u1", ["editor"]) == 1
    live = await storage.create_session(
        session("s1", "u1"), refresh("t1", "s1"), password_hash=None
    )
    assert live is not None
    assert (live.user.id, live.user.ver, live.user.roles) == ("u1", 1, ("editor",))
    assert live.permissions == ("posts:write",)
    # A disabled or deleted user gets no session, and nothing is written.
    assert await storage.set_disabled("u1", True) == 2
    assert (
        await storage.create_session(session("s2", "u1"), refresh("t2", "s2"), password_hash=None)
        is None
    )
    assert await storage.get_session("s2") is None
    assert await storage.get_refresh(digest("t2")) is None
    assert (
        await storage.create_session(
            session("s3", "ghost"), refresh("t3", "s3"), password_hash=None
        )
        is None
    )
    assert await storage.get_session("s3") is None


async def test_claim_replay_is_a_compare_and_set_once_per_family(
    storage: Storage, alice: str
) -> None:
    first = refresh("t1", "s1")
    await storage.create_session(session("s1", alice), first, password_hash=None)
    await storage.create_session(session("s2", alice), refresh("x1", "s2"), password_hash=None)
    assert await storage.claim_replay("s1", now=T0 + 2) is True
    assert await storage.claim_replay("s1", now=T0 + 3) is False
    got = await storage.get_session("s1")
    assert got is not None
    assert got.replayed_at == T0 + 2
    assert await storage.claim_replay("s2", now=T0 + 4) is True  # another family's own
    assert await storage.claim_replay("unknown", now=T0) is False


async def test_create_session_refuses_a_password_hash_that_changed(
    storage: Storage, alice: str
) -> None:
    """A login checks the password, then opens the session: if the password changed in
    between, nothing opens, and the change revoked whatever was open."""
    checked = (await storage.get_user(alice)).password_hash  # type: ignore[union-attr]
    live = await storage.create_session(
        session("s1", alice), refresh("t1", "s1"), password_hash=checked
    )
    assert live is not None
    assert await storage.change_password(alice, "new-hash", keep_sid=None, now=T0 + 1) == ["s1"]
    assert (
        await storage.create_session(
            session("s2", alice), refresh("t2", "s2"), password_hash=checked
        )
        is None
    )
    assert await storage.get_session("s2") is None
    revoked = await storage.get_session("s1")
    assert revoked is not None
    assert revoked.revoked_at == T0 + 1
    assert await storage.change_password("ghost", "x", keep_sid=None, now=T0) is None


async def test_change_password_keeps_one_session_and_rehash_is_a_compare_and_set(
    storage: Storage, alice: str
) -> None:
    for sid in ("keep", "a", "b"):
        await storage.create_session(
            session(sid, alice), refresh(f"t-{sid}", sid), password_hash=None
        )
    assert await storage.change_password(alice, "h2", keep_sid="keep", now=T0 + 1) == ["a", "b"]
    kept = await storage.get_session("keep")
    assert kept is not None
    assert kept.revoked_at is None
    # A rehash from a stale read never undoes the change.
    assert await storage.rehash_password(alice, old_hash="h1", new_hash="h1-rehashed") is False
    assert await storage.rehash_password(alice, old_hash="h2", new_hash="h2-rehashed") is True
    got = await storage.get_user(alice)
    assert got is not None
    assert got.password_hash == "h2-rehashed"


async def test_duplicate_sid_is_a_conflict(storage: Storage, alice: str) -> None:
    await storage.create_session(session("s1", alice), refresh("t1", "s1"), password_hash=None)
    with pytest.raises(Conflict) as info:
        await storage.create_session(session("s1", alice), refresh("t2", "s1"), password_hash=None)
    assert info.value.code == "conflict"
    assert await storage.get_refresh(digest("t2")) is None


async def test_create_session_is_one_transaction(storage: Storage, alice: str) -> None:
    await storage.create_session(session("s1", alice), refresh("t1", "s1"), password_hash=None)
    # The first token's digest is taken: the new session must not be stored either.
    with pytest.raises(Conflict) as info:
        await storage.create_session(session("s2", alice), refresh("t1", "s2"), password_hash=None)
    assert info.value.code == "conflict"
    assert await storage.get_session("s2") is None
    got = await storage.get_refresh(digest("t1"))
    assert got is not None
    assert got.sid == "s1"


async def test_list_sessions_newest_first_and_only_the_users(storage: Storage, alice: str) -> None:
    await storage.create_user(user("bob"))
    for i, sid in enumerate(["s-old", "s-mid", "s-new"]):
        await storage.create_session(
            session(sid, alice, created_at=T0 + i),
            refresh(f"t-{sid}", sid, created_at=T0 + i),
            password_hash=None,
        )
    await storage.create_session(
        session("s-bob", "bob"), refresh("t-bob", "s-bob"), password_hash=None
    )

    listed = await storage.list_sessions(alice, live_at=None)
    assert [s.sid for s in listed] == ["s-new", "s-mid", "s-old"]
    assert listed[0] == session("s-new", alice, created_at=T0 + 2)
    assert [s.sid for s in await storage.list_sessions("bob", live_at=None)] == ["s-bob"]
    assert await storage.list_sessions("nobody", live_at=None) == []


async def test_list_sessions_live_at_drops_revoked_and_expired(
    storage: Storage, alice: str
) -> None:
    await storage.create_session(
        session("live", alice, created_at=T0), refresh("a", "live"), password_hash=None
    )
    await storage.create_session(
        session("revoked", alice, created_at=T0 + 1), refresh("b", "revoked"), password_hash=None
    )
    await storage.create_session(
        session("expiring", alice, created_at=T0 + 2, expires_at=T0 + DAY),
        refresh("c", "expiring"),
        password_hash=None,
    )
    assert await storage.revoke_session("revoked", now=T0 + 10)

    everything = await storage.list_sessions(alice, live_at=None)
    assert [s.sid for s in everything] == ["expiring", "revoked", "live"]
    assert everything[1].revoked_at == T0 + 10

    just_before = await storage.list_sessions(alice, live_at=T0 + DAY - 1)
    assert [s.sid for s in just_before] == ["expiring", "live"]
    # At its absolute expiry a session is no longer live.
    at_expiry = await storage.list_sessions(alice, live_at=T0 + DAY)
    assert [s.sid for s in at_expiry] == ["live"]


async def test_rotate_refresh_wins_once(storage: Storage, alice: str) -> None:
    first = refresh("t1", "s1")
    await storage.create_session(session("s1", alice), first, password_hash=None)
    second = refresh("t2", "s1", created_at=T0 + 5, parent=first.digest)

    assert await storage.rotate_refresh(first.digest, second, now=T0 + 5) is True

    assert await storage.get_refresh(first.digest) == dataclasses.replace(
        first, rotated_at=T0 + 5, successor=second.digest
    )
    assert await storage.get_refresh(second.digest) == second
    s1 = await storage.get_session("s1")
    assert s1 is not None
    assert s1.last_used_at == T0 + 5

    # Rotating the same token again loses and changes nothing.
    other = refresh("t2-other", "s1", created_at=T0 + 6, parent=first.digest)
    assert await storage.rotate_refresh(first.digest, other, now=T0 + 6) is False
    assert await storage.get_refresh(other.digest) is None
    got = await storage.get_refresh(first.digest)
    assert got is not None
    assert got.successor == second.digest
    assert got.rotated_at == T0 + 5
    s1 = await storage.get_session("s1")
    assert s1 is not None
    assert s1.last_used_at == T0 + 5

    # The successor rotates in turn.
    third = refresh("t3", "s1", created_at=T0 + 7, parent=second.digest)
    assert await storage.rotate_refresh(second.digest, third, now=T0 + 7) is True
    got = await storage.get_refresh(second.digest)
    assert got is not None
    assert got.successor == third.digest


async def test_rotate_unknown_digest_is_false(storage: Storage, alice: str) -> None:
    await storage.create_session(session("s1", alice), refresh("t1", "s1"), password_hash=None)
    successor = refresh("t2", "s1", parent=digest("ghost"))
    assert await storage.rotate_refresh(digest("ghost"), successor, now=T0 + 1) is False
    assert await storage.get_refresh(successor.digest) is None
    s1 = await storage.get_session("s1")
    assert s1 is not None
    assert s1.last_used_at == T0


async def test_rotate_refresh_refuses_a_revoked_session(storage: Storage, alice: str) -> None:
    first = refresh("t1", "s1")
    await storage.create_session(session("s1", alice), first, password_hash=None)
    assert await storage.revoke_session("s1", now=T0 + 1) is True

    successor = refresh("t2", "s1", parent=first.digest)
    assert await storage.rotate_refresh(first.digest, successor, now=T0 + 2) is False

    assert await storage.get_refresh(first.digest) == first  # not marked rotated
    assert await storage.get_refresh(successor.digest) is None
    s1 = await storage.get_session("s1")
    assert s1 is not None
    assert s1.last_used_at == T0


async def test_revoke_session(storage: Storage, alice: str) -> None:
    await storage.create_session(session("s1", alice), refresh("t1", "s1"), password_hash=None)
    assert await storage.revoke_session("s1", now=T0 + 3) is True
    assert await storage.revoke_session("s1", now=T0 + 4) is False  # already revoked
    s1 = await storage.get_session("s1")
    assert s1 is not None
    assert s1.revoked_at == T0 + 3  # the first revocation time stays
    assert await storage.revoke_session("ghost", now=T0 + 4) is False


async def test_revoke_user_sessions_keeps_one_and_skips_dead_ones(
    storage: Storage, alice: str
) -> None:
    await storage.create_user(user("bob"))
    for sid in ["s1", "s2", "s3", "keep"]:
        await storage.create_session(
            session(sid, alice), refresh(f"t-{sid}", sid), password_hash=None
        )
    await storage.create_session(
        session("expired", alice, expires_at=T0 + 10),
        refresh("t-exp", "expired"),
        password_hash=None,
    )
    await storage.create_session(
        session("gone", alice), refresh("t-gone", "gone"), password_hash=None
    )
    await storage.revoke_session("gone", now=T0 + 1)
    await storage.create_session(
        session("bob-s", "bob"), refresh("t-bob", "bob-s"), password_hash=None
    )

    revoked = await storage.revoke_user_sessions(alice, now=T0 + 20, keep="keep")

    assert revoked == ["s1", "s2", "s3"]
    live = await storage.list_sessions(alice, live_at=T0 + 20)
    assert [s.sid for s in live] == ["keep"]
    for sid in ["s1", "s2", "s3"]:
        got = await storage.get_session(sid)
        assert got is not None
        assert got.revoked_at == T0 + 20
    gone = await storage.get_session("gone")
    assert gone is not None
    assert gone.revoked_at == T0 + 1
    bob = await storage.get_session("bob-s")
    assert bob is not None
    assert bob.revoked_at is None

    assert await storage.revoke_user_sessions(alice, now=T0 + 30) == ["keep"]
    assert await storage.revoke_user_sessions(alice, now=T0 + 40) == []
    assert await storage.revoke_user_sessions("nobody", now=T0 + 40) == []


async def test_purge_sessions(storage: Storage, alice: str) -> None:
    await storage.create_session(
        session("live", alice), refresh("t-live", "live"), password_hash=None
    )
    await storage.create_session(
        session("expired", alice, expires_at=T0 + 100),
        refresh("t-expired", "expired"),
        password_hash=None,
    )
    await storage.create_session(
        session("revoked-early", alice), refresh("t-re", "revoked-early"), password_hash=None
    )
    await storage.create_session(
        session("revoked-late", alice), refresh("t-rl", "revoked-late"), password_hash=None
    )
    await storage.revoke_session("revoked-early", now=T0 + 50)
    await storage.revoke_session("revoked-late", now=T0 + 500)
    token = refresh("t-live2", "live", parent=digest("t-live"))
    assert await storage.rotate_refresh(digest("t-live"), token, now=T0 + 1)

    assert await storage.purge_sessions(before=T0 + 200) == 2

    remaining = await storage.list_sessions(alice, live_at=None)
    assert sorted(s.sid for s in remaining) == ["live", "revoked-late"]
    assert await storage.get_refresh(digest("t-expired")) is None
    assert await storage.get_refresh(digest("t-re")) is None
    assert await storage.get_refresh(digest("t-rl")) is not None
    assert await storage.get_refresh(digest("t-live")) is not None
    assert await storage.get_refresh(digest("t-live2")) is not None
    assert await storage.purge_sessions(before=T0 + 200) == 0


async def test_purge_sessions_boundary_is_strict(storage: Storage, alice: str) -> None:
    await storage.create_session(
        session("edge", alice, expires_at=T0 + 100), refresh("t-edge", "edge"), password_hash=None
    )
    assert await storage.purge_sessions(before=T0 + 100) == 0
    assert await storage.purge_sessions(before=T0 + 100.5) == 1


async def test_create_session_appends_its_audit_event_in_the_same_transaction(
    storage: Storage, alice: str
) -> None:
    def entry(n: int) -> AuditEntry:
        return AuditEntry(event="login_ok", at=T0 + n, user_id=alice, ip="192.0.2.1", detail=None)

    live = await storage.create_session(
        session("s1", alice), refresh("t1", "s1"), password_hash=None, audit=entry(1)
    )
    assert live is not None
    # The event is in the chain even when the user was disabled meanwhile (the password
    # was right), and no session opens.
    await storage.set_disabled(alice, True)
    refused = await storage.create_session(
        session("s2", alice), refresh("t2", "s2"), password_hash=None, audit=entry(2)
    )
    assert refused is None
    # A write that fails rolls its event back with it.
    await storage.set_disabled(alice, False)
    with pytest.raises(Conflict):
        await storage.create_session(
            session("s1", alice), refresh("t3", "s1"), password_hash=None, audit=entry(3)
        )
    events = await storage.query_audit(user_id=alice)
    assert [(e.event, e.at, e.ip) for e in events] == [
        ("login_ok", T0 + 1, "192.0.2.1"),
        ("login_ok", T0 + 2, "192.0.2.1"),
    ]
    chain = await storage.audit_chain(after=None, limit=10)
    assert chain[1].prev_hash == chain[0].hash
