"""Contract: LinkTokenStore (single-use tokens mailed as links, stored as digests), and the
parts of UserStore that end them (a password change, a deleted user).

A redemption uses the token and applies it in one transaction: every refusal (unknown,
another purpose, used, ended, expired, an address taken meanwhile) changes nothing, and of
many concurrent redemptions of one token exactly one wins, on every backend.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

import pytest

from authgate.errors import Conflict
from authgate.storage.base import (
    LinkPurpose,
    LinkRedemption,
    LinkTokenRecord,
    SessionRecord,
    Storage,
    UserRecord,
)

from ._records import T0, digest, refresh, session, user
from ._stores import opened

pytestmark = pytest.mark.anyio

RESET_TTL = 1800.0


def link(
    name: str,
    user_id: str,
    purpose: LinkPurpose = "reset_password",
    *,
    email: str | None = None,
    created_at: float = T0,
    ttl: float = RESET_TTL,
) -> LinkTokenRecord:
    """A live token ``name`` (stored by its digest) of ``user_id``, mailed to ``email``
    (the user's address ``<user_id>@example.com`` by default)."""
    return LinkTokenRecord(
        digest=digest(name),
        purpose=purpose,
        user_id=user_id,
        email=email or f"{user_id}@example.com",
        created_at=created_at,
        expires_at=created_at + ttl,
    )


async def issued(storage: Storage, token: LinkTokenRecord) -> LinkTokenRecord:
    assert await storage.issue_link_token(token) is True
    return token


async def token_of(storage: Storage, name: str) -> LinkTokenRecord:
    got = await storage.get_link_token(digest(name))
    assert got is not None, name
    return got


async def user_of(storage: Storage, uid: str) -> UserRecord:
    got = await storage.get_user(uid)
    assert got is not None, uid
    return got


async def open_sessions(storage: Storage, uid: str, sids: Sequence[str]) -> None:
    for sid in sids:
        await storage.create_session(
            session(sid, uid), refresh(f"t-{sid}", sid), password_hash=None
        )


Snapshot = tuple[UserRecord | None, list[SessionRecord], list[LinkTokenRecord | None]]


async def snapshot(storage: Storage, uid: str, names: Sequence[str]) -> Snapshot:
    """What a refused redemption must leave as it was: the user, its sessions, the tokens."""
    return (
        await storage.get_user(uid),
        await storage.list_sessions(uid, live_at=None),
        [await storage.get_link_token(digest(n)) for n in names],
    )


def live(token: LinkTokenRecord | None, now: float) -> bool:
    return (
        token is not None
        and token.used_at is None
        and token.ended_at is None
        and token.expires_at > now
    )


@pytest.fixture
async def alice(storage: Storage) -> str:
    await storage.create_user(user("alice"))
    return "alice"


# -- issue -------------------------------------------------------------------------------


async def test_issue_and_get_round_trip(storage: Storage, alice: str) -> None:
    token = await issued(storage, link("r1", alice))
    assert await storage.get_link_token(token.digest) == token
    assert await storage.get_link_token(digest("nope")) is None


async def test_issue_supersedes_the_older_live_token_of_the_same_user_and_purpose_only(
    storage: Storage, alice: str
) -> None:
    await storage.create_user(user("bob"))
    await issued(storage, link("r1", alice))
    await issued(storage, link("v1", alice, "verify_email", ttl=86_400))
    await issued(storage, link("c1", alice, "change_email", email="new@example.com"))
    await issued(storage, link("bob-r1", "bob"))

    r2 = await issued(storage, link("r2", alice, created_at=T0 + 10))

    assert await token_of(storage, "r1") == dataclasses.replace(
        link("r1", alice), ended_at=T0 + 10, ended_by="superseded"
    )
    assert await token_of(storage, "r2") == r2
    # Another purpose of the same user, and the same purpose of another user, stay live.
    assert await token_of(storage, "v1") == link("v1", alice, "verify_email", ttl=86_400)
    assert await token_of(storage, "c1") == link(
        "c1", alice, "change_email", email="new@example.com"
    )
    assert await token_of(storage, "bob-r1") == link("bob-r1", "bob")

    # A newer verification link supersedes the verification link only.
    await issued(storage, link("v2", alice, "verify_email", created_at=T0 + 20, ttl=86_400))
    v1 = await token_of(storage, "v1")
    assert (v1.ended_at, v1.ended_by) == (T0 + 20, "superseded")
    assert live(await token_of(storage, "r2"), T0 + 20)
    assert live(await token_of(storage, "c1"), T0 + 20)


async def test_issue_leaves_used_and_expired_tokens_as_they_were(
    storage: Storage, alice: str
) -> None:
    await issued(storage, link("used", alice, "verify_email", ttl=86_400))
    assert await storage.redeem_link_token(digest("used"), purpose="verify_email", now=T0 + 1)
    await issued(storage, link("old", alice, ttl=10))  # expired at T0 + 10

    await issued(storage, link("v2", alice, "verify_email", created_at=T0 + 100, ttl=86_400))
    await issued(storage, link("r2", alice, created_at=T0 + 100))

    used = await token_of(storage, "used")
    assert (used.used_at, used.ended_at, used.ended_by) == (T0 + 1, None, None)
    assert await token_of(storage, "old") == link("old", alice, ttl=10)


async def test_issue_for_a_missing_user_is_false_and_writes_nothing(storage: Storage) -> None:
    assert await storage.issue_link_token(link("r1", "ghost")) is False
    assert await storage.get_link_token(digest("r1")) is None


async def test_issue_of_a_taken_digest_is_a_conflict_and_supersedes_nothing(
    storage: Storage, alice: str
) -> None:
    await storage.create_user(user("bob"))
    r1 = await issued(storage, link("r1", alice))
    bob = await issued(storage, link("bob-r1", "bob"))
    # The digest of bob's link, issued for alice: the insert fails, and the whole
    # transaction with it (alice's live link is not superseded).
    with pytest.raises(Conflict) as info:
        await storage.issue_link_token(dataclasses.replace(bob, user_id=alice, created_at=T0 + 1))
    assert info.value.code == "conflict"
    assert await token_of(storage, "r1") == r1
    assert await token_of(storage, "bob-r1") == bob
    # The same digest again, for the same user and purpose.
    with pytest.raises(Conflict):
        await storage.issue_link_token(dataclasses.replace(r1, created_at=T0 + 2))
    assert await token_of(storage, "r1") == r1


# -- verify_email ------------------------------------------------------------------------


async def test_redeem_verify_email_marks_the_address_verified(storage: Storage, alice: str) -> None:
    await open_sessions(storage, alice, ["s1"])
    token = await issued(storage, link("v1", alice, "verify_email", ttl=86_400))
    before = await user_of(storage, alice)
    assert before.email_verified is False

    redeemed = await storage.redeem_link_token(digest("v1"), purpose="verify_email", now=T0 + 5)

    used = dataclasses.replace(token, used_at=T0 + 5)
    assert redeemed == LinkRedemption(token=used, ended_sids=(), ver=None)
    assert await token_of(storage, "v1") == used
    after = await user_of(storage, alice)
    assert after == dataclasses.replace(before, email_verified=True)  # nothing else moved
    [s1] = await storage.list_sessions(alice, live_at=None)
    assert s1.revoked_at is None
    # Single use.
    assert await storage.redeem_link_token(digest("v1"), purpose="verify_email", now=T0 + 6) is None


async def test_redeem_verify_email_for_an_address_no_longer_the_users_changes_nothing(
    storage: Storage, alice: str
) -> None:
    await issued(storage, link("v1", alice, "verify_email", email="old@example.com"))
    before = await snapshot(storage, alice, ["v1"])

    assert await storage.redeem_link_token(digest("v1"), purpose="verify_email", now=T0 + 5) is None

    assert await snapshot(storage, alice, ["v1"]) == before
    assert (await user_of(storage, alice)).email_verified is False


# -- reset_password ----------------------------------------------------------------------


async def test_redeem_reset_password_sets_the_hash_verifies_and_ends_every_session(
    storage: Storage, alice: str
) -> None:
    await storage.create_user(user("bob"))
    await open_sessions(storage, alice, ["s2", "s1"])
    await storage.create_session(
        session("expired", alice, expires_at=T0 + 3),
        refresh("t-expired", "expired"),
        password_hash=None,
    )
    await open_sessions(storage, alice, ["gone"])
    assert await storage.revoke_session("gone", now=T0 + 1)
    await open_sessions(storage, "bob", ["bob-s"])
    token = await issued(storage, link("r1", alice, created_at=T0 + 2))
    await issued(storage, link("v1", alice, "verify_email", ttl=86_400))
    await issued(storage, link("c1", alice, "change_email", email="new@example.com"))
    await issued(storage, link("bob-r1", "bob"))
    before = await user_of(storage, alice)

    redeemed = await storage.redeem_link_token(
        digest("r1"), purpose="reset_password", now=T0 + 10, password_hash="new-hash"
    )

    used = dataclasses.replace(token, used_at=T0 + 10)
    assert redeemed == LinkRedemption(token=used, ended_sids=("s1", "s2"), ver=None)
    assert await token_of(storage, "r1") == used
    after = await user_of(storage, alice)
    assert after == dataclasses.replace(before, password_hash="new-hash", email_verified=True)
    for sid in ("s1", "s2"):
        assert (await storage.get_session(sid)).revoked_at == T0 + 10  # type: ignore[union-attr]
    assert (await storage.get_session("gone")).revoked_at == T0 + 1  # type: ignore[union-attr]
    assert (await storage.get_session("expired")).revoked_at is None  # type: ignore[union-attr]
    assert (await storage.get_session("bob-s")).revoked_at is None  # type: ignore[union-attr]
    # A pending email change ends with the reset (whoever asked for it knew the old
    # password); the verification link and the other user's reset link are left alone.
    c1 = await token_of(storage, "c1")
    assert (c1.used_at, c1.ended_at, c1.ended_by) == (None, T0 + 10, "password_changed")
    assert live(await token_of(storage, "v1"), T0 + 10)
    assert live(await token_of(storage, "bob-r1"), T0 + 10)
    assert (await user_of(storage, "bob")).password_hash == user("bob").password_hash
    # Single use: the same link again changes nothing.
    assert (
        await storage.redeem_link_token(
            digest("r1"), purpose="reset_password", now=T0 + 11, password_hash="again"
        )
        is None
    )
    assert (await user_of(storage, alice)).password_hash == "new-hash"


async def test_redeem_reset_password_for_an_old_address_sets_the_hash_but_verifies_nothing(
    storage: Storage, alice: str
) -> None:
    await open_sessions(storage, alice, ["s1"])
    await issued(storage, link("r1", alice, email="old@example.com"))

    redeemed = await storage.redeem_link_token(
        digest("r1"), purpose="reset_password", now=T0 + 10, password_hash="new-hash"
    )

    assert redeemed is not None
    assert redeemed.ended_sids == ("s1",)
    after = await user_of(storage, alice)
    assert after.password_hash == "new-hash"
    assert after.email_verified is False
    assert after.email == "alice@example.com"


async def test_change_password_ends_the_live_reset_and_email_change_tokens(
    storage: Storage, alice: str
) -> None:
    await storage.create_user(user("bob"))
    await issued(storage, link("r1", alice))
    await issued(storage, link("v1", alice, "verify_email", ttl=86_400))
    await issued(storage, link("c1", alice, "change_email", email="new@example.com"))
    await issued(storage, link("bob-r1", "bob"))

    assert await storage.change_password(alice, "changed", keep_sid=None, now=T0 + 10) == []

    for name in ("r1", "c1"):  # the links that move control of the account
        ended = await token_of(storage, name)
        assert (ended.used_at, ended.ended_at, ended.ended_by) == (
            None,
            T0 + 10,
            "password_changed",
        )
    assert live(await token_of(storage, "v1"), T0 + 10)
    assert live(await token_of(storage, "bob-r1"), T0 + 10)
    # The link mailed before the change cannot undo it.
    assert (
        await storage.redeem_link_token(
            digest("r1"), purpose="reset_password", now=T0 + 11, password_hash="stale"
        )
        is None
    )
    assert (await user_of(storage, alice)).password_hash == "changed"


# -- change_email ------------------------------------------------------------------------


async def test_redeem_change_email_moves_the_address_and_ends_every_other_token(
    storage: Storage, alice: str
) -> None:
    await storage.create_user(user("bob"))
    await open_sessions(storage, alice, ["s1"])
    assert await storage.bump_version(alice) == 1
    await issued(storage, link("r1", alice))
    await issued(storage, link("v1", alice, "verify_email", ttl=86_400))
    token = await issued(
        storage, link("c1", alice, "change_email", email="new@example.com", ttl=3600)
    )
    await issued(storage, link("bob-v1", "bob", "verify_email", ttl=86_400))
    before = await user_of(storage, alice)

    redeemed = await storage.redeem_link_token(digest("c1"), purpose="change_email", now=T0 + 10)

    used = dataclasses.replace(token, used_at=T0 + 10)
    assert redeemed == LinkRedemption(token=used, ended_sids=(), ver=2)
    assert await token_of(storage, "c1") == used
    after = await user_of(storage, alice)
    assert after == dataclasses.replace(before, email="new@example.com", email_verified=True, ver=2)
    assert await storage.get_user_by_email("new@example.com") == after
    assert await storage.get_user_by_email("alice@example.com") is None
    for name in ("r1", "v1"):
        ended = await token_of(storage, name)
        assert (ended.used_at, ended.ended_at, ended.ended_by) == (
            None,
            T0 + 10,
            "email_changed",
        )
    assert live(await token_of(storage, "bob-v1"), T0 + 10)
    # An email change ends no session by itself (the new ver kills the access tokens).
    assert (await storage.get_session("s1")).revoked_at is None  # type: ignore[union-attr]


async def test_redeem_change_email_onto_a_taken_address_is_a_conflict_and_changes_nothing(
    storage: Storage, alice: str
) -> None:
    await storage.create_user(user("bob"))
    await issued(storage, link("r1", alice))
    await issued(storage, link("c1", alice, "change_email", email="bob@example.com"))
    names = ["r1", "c1"]
    before = await snapshot(storage, alice, names)
    bob = await user_of(storage, "bob")

    with pytest.raises(Conflict) as info:
        await storage.redeem_link_token(digest("c1"), purpose="change_email", now=T0 + 10)

    assert info.value.code == "conflict"
    assert await snapshot(storage, alice, names) == before
    assert live(await token_of(storage, "c1"), T0 + 10)
    assert await user_of(storage, "bob") == bob
    # The link stays usable: once the address is free again, it works.
    assert await storage.delete_user("bob") == 0
    redeemed = await storage.redeem_link_token(digest("c1"), purpose="change_email", now=T0 + 11)
    assert redeemed is not None
    assert (await user_of(storage, alice)).email == "bob@example.com"


# -- refusals ----------------------------------------------------------------------------


async def test_refused_redemptions_return_none_and_change_nothing(
    storage: Storage, alice: str
) -> None:
    await open_sessions(storage, alice, ["s1"])
    await issued(storage, link("v1", alice, "verify_email", ttl=86_400))
    await issued(storage, link("old", alice))
    await issued(storage, link("r1", alice, created_at=T0 + 1))  # supersedes "old"
    await issued(storage, link("c1", alice, "change_email", email="new@example.com", ttl=60))
    names = ["v1", "old", "r1", "c1"]
    before = await snapshot(storage, alice, names)

    refused: list[tuple[str, LinkPurpose, float]] = [
        ("unknown", "reset_password", T0 + 2),
        ("v1", "reset_password", T0 + 2),  # another purpose
        ("r1", "verify_email", T0 + 2),
        ("r1", "change_email", T0 + 2),
        ("c1", "reset_password", T0 + 2),
        ("old", "reset_password", T0 + 2),  # ended (superseded)
        ("c1", "change_email", T0 + 60),  # expired: at its expiry it is no longer live
        ("r1", "reset_password", T0 + 1 + RESET_TTL + 1),
    ]
    for name, purpose, now in refused:
        redeemed = await storage.redeem_link_token(
            digest(name), purpose=purpose, now=now, password_hash="x"
        )
        assert redeemed is None, (name, purpose, now)
        assert await snapshot(storage, alice, names) == before, (name, purpose, now)


async def test_a_used_token_is_refused_and_changes_nothing(storage: Storage, alice: str) -> None:
    await issued(storage, link("r1", alice))
    assert await storage.redeem_link_token(
        digest("r1"), purpose="reset_password", now=T0 + 1, password_hash="first"
    )
    await open_sessions(storage, alice, ["after"])
    before = await snapshot(storage, alice, ["r1"])
    assert (
        await storage.redeem_link_token(
            digest("r1"), purpose="reset_password", now=T0 + 2, password_hash="second"
        )
        is None
    )
    assert await snapshot(storage, alice, ["r1"]) == before


# -- purge and delete --------------------------------------------------------------------


async def test_purge_deletes_only_tokens_expired_before_the_cutoff(
    storage: Storage, alice: str
) -> None:
    await issued(storage, link("a", alice, "verify_email", ttl=100))
    await issued(storage, link("b", alice, "reset_password", ttl=200))
    await issued(storage, link("c", alice, "change_email", email="n@example.com", ttl=300))
    await storage.redeem_link_token(digest("c"), purpose="change_email", now=T0 + 1)

    assert await storage.purge_link_tokens(before=T0 + 200) == 1  # "b" expires at the cutoff

    assert await storage.get_link_token(digest("a")) is None
    assert await storage.get_link_token(digest("b")) is not None
    assert await storage.get_link_token(digest("c")) is not None  # used, not yet expired
    assert await storage.purge_link_tokens(before=T0 + 200) == 0
    assert await storage.purge_link_tokens(before=T0 + 301) == 2


async def test_deleting_the_user_deletes_its_tokens(storage: Storage, alice: str) -> None:
    await storage.create_user(user("bob"))
    await issued(storage, link("r1", alice))
    await issued(storage, link("v1", alice, "verify_email"))
    await issued(storage, link("bob-r1", "bob"))

    assert await storage.delete_user(alice) == 0

    assert await storage.get_link_token(digest("r1")) is None
    assert await storage.get_link_token(digest("v1")) is None
    assert await storage.get_link_token(digest("bob-r1")) is not None
    assert await storage.issue_link_token(link("r2", alice)) is False
    assert await storage.get_link_token(digest("r2")) is None


# -- concurrency -------------------------------------------------------------------------

RACERS = 20


async def _race_resets(stores: Sequence[Storage]) -> None:
    first = stores[0]
    await first.create_user(user("alice"))
    await open_sessions(first, "alice", ["s1", "s2"])
    await issued(first, link("r1", "alice"))
    results = await asyncio.gather(
        *(
            stores[i % len(stores)].redeem_link_token(
                digest("r1"), purpose="reset_password", now=T0 + 1, password_hash=f"hash-{i}"
            )
            for i in range(RACERS)
        )
    )
    winners = [i for i, r in enumerate(results) if r is not None]
    assert len(winners) == 1, winners
    [winner] = winners
    assert results[winner] is not None
    assert results[winner].ended_sids == ("s1", "s2")  # type: ignore[union-attr]
    for store in stores:
        assert (await user_of(store, "alice")).password_hash == f"hash-{winner}"
        assert (await token_of(store, "r1")).used_at == T0 + 1


async def test_concurrent_redemptions_of_one_reset_token_have_one_winner(
    storage: Storage,
) -> None:
    await _race_resets([storage])


async def test_concurrent_redemptions_from_two_engines_have_one_winner(
    database_url: str,
) -> None:
    async with opened(database_url) as first, opened(database_url) as second:
        await asyncio.gather(first.ping(), second.ping())
        await _race_resets([first, second])


async def test_concurrent_issues_for_one_user_and_purpose_leave_one_live_token(
    database_url: str,
) -> None:
    async with opened(database_url) as first, opened(database_url) as second:
        stores = [first, second]
        await first.create_user(user("alice"))
        for rnd in range(3):
            names = [f"r{rnd}-{i}" for i in range(10)]
            now = T0 + rnd
            assert all(
                await asyncio.gather(
                    *(
                        stores[i % 2].issue_link_token(link(name, "alice", created_at=now))
                        for i, name in enumerate(names)
                    )
                )
            )
            tokens = [await first.get_link_token(digest(n)) for n in names]
            alive = [n for n, t in zip(names, tokens, strict=True) if live(t, now)]
            assert len(alive) == 1, (rnd, alive)
            ended = [t for t in tokens if t is not None and t.ended_by == "superseded"]
            assert len(ended) == len(names) - 1


async def test_a_reset_racing_a_password_change_never_undoes_the_change(
    database_url: str,
) -> None:
    """Serially, either the change ends the link first or the link is used first and the
    change then overwrites its password: the change's password is the one kept either way."""
    async with opened(database_url) as first, opened(database_url) as second:
        await first.create_user(user("alice"))
        for rnd in range(10):
            now = T0 + 10 * rnd
            await issued(first, link(f"r{rnd}", "alice", created_at=now))
            redeemed, changed = await asyncio.gather(
                first.redeem_link_token(
                    digest(f"r{rnd}"),
                    purpose="reset_password",
                    now=now + 1,
                    password_hash=f"reset-{rnd}",
                ),
                second.change_password("alice", f"changed-{rnd}", keep_sid=None, now=now + 1),
            )
            assert changed is not None
            assert (await user_of(first, "alice")).password_hash == f"changed-{rnd}", redeemed
            token = await token_of(first, f"r{rnd}")
            assert (token.used_at is None) == (redeemed is None)
            assert not live(token, now + 1)


async def test_two_accounts_racing_to_one_address_by_email_change_have_one_winner(
    database_url: str,
) -> None:
    async with opened(database_url) as first, opened(database_url) as second:
        stores = [first, second]
        names = [f"u{i}" for i in range(6)]
        for uid in names:
            await first.create_user(user(uid))
            await issued(first, link(f"c-{uid}", uid, "change_email", email="wanted@example.com"))

        async def redeem(i: int, uid: str) -> LinkRedemption | Conflict | None:
            try:
                return await stores[i % 2].redeem_link_token(
                    digest(f"c-{uid}"), purpose="change_email", now=T0 + 1
                )
            except Conflict as exc:
                return exc

        results = await asyncio.gather(*(redeem(i, uid) for i, uid in enumerate(names)))
        winners = [
            uid for uid, r in zip(names, results, strict=True) if isinstance(r, LinkRedemption)
        ]
        assert len(winners) == 1, results
        # Every other one found the address taken: a Conflict, never a silent None.
        assert all(isinstance(r, LinkRedemption | Conflict) for r in results), results
        [winner] = winners
        owner = await first.get_user_by_email("wanted@example.com")
        assert owner is not None
        assert (owner.id, owner.ver, owner.email_verified) == (winner, 1, True)
        for uid in names:
            if uid == winner:
                continue
            assert await user_of(first, uid) == user(uid)  # nothing changed
            assert live(await token_of(first, f"c-{uid}"), T0 + 1)  # the link stays live


async def test_a_login_racing_a_reset_never_keeps_a_session_opened_with_the_old_password(
    database_url: str,
) -> None:
    async with opened(database_url) as first, opened(database_url) as second:
        await first.create_user(user("alice"))
        for rnd in range(10):
            now = T0 + 10 * rnd
            checked = (await user_of(first, "alice")).password_hash
            await issued(first, link(f"r{rnd}", "alice", created_at=now))
            sid = f"login-{rnd}"
            opened_session, redeemed = await asyncio.gather(
                second.create_session(
                    session(sid, "alice", created_at=now),
                    refresh(f"t-{sid}", sid, created_at=now),
                    password_hash=checked,
                ),
                first.redeem_link_token(
                    digest(f"r{rnd}"),
                    purpose="reset_password",
                    now=now + 1,
                    password_hash=f"reset-{rnd}",
                ),
            )
            assert redeemed is not None
            got = await first.get_session(sid)
            if opened_session is None:
                assert got is None
            else:
                assert got is not None
                assert got.revoked_at == now + 1, rnd
                assert sid in redeemed.ended_sids


async def test_disabling_a_user_ends_every_live_link(storage: Storage, alice: str) -> None:
    await storage.create_user(user("bob"))
    await issued(storage, link("r1", alice))
    await issued(storage, link("v1", alice, "verify_email", ttl=86_400))
    await issued(storage, link("c1", alice, "change_email", email="new@example.com"))
    await issued(storage, link("bob-r1", "bob"))

    assert await storage.set_disabled(alice, True, now=T0 + 10) is not None

    for name in ("r1", "v1", "c1"):
        ended = await token_of(storage, name)
        assert (ended.used_at, ended.ended_at, ended.ended_by) == (None, T0 + 10, "disabled")
    assert live(await token_of(storage, "bob-r1"), T0 + 10)
    # Enabling again revives nothing.
    assert await storage.set_disabled(alice, False, now=T0 + 11) is not None
    assert not live(await token_of(storage, "r1"), T0 + 11)
