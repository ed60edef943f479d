"""Contract: PasskeyStore (WebAuthn credentials and the challenges of their ceremonies).

A challenge is used once, for its purpose, before it expires; a use of a passkey is recorded
only when its signature counter increases (or both counters are 0). Of many concurrent uses
of one challenge, or of one counter value, exactly one wins, on every backend, through two
stores on one database.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from authgate.errors import Conflict
from authgate.storage.base import (
    Storage,
    WebauthnChallengeRecord,
    WebauthnPurpose,
)

from ._records import T0, digest, passkey, user
from ._stores import opened

pytestmark = pytest.mark.anyio

RACERS = 12
TTL = 300.0


def challenge(
    name: str,
    purpose: WebauthnPurpose = "register",
    *,
    user_id: str | None = "alice",
    login_jti: str | None = None,
) -> WebauthnChallengeRecord:
    """A challenge ``name`` (stored by its digest), issued at T0 for five minutes."""
    return WebauthnChallengeRecord(
        digest=digest(name),
        purpose=purpose,
        created_at=T0,
        expires_at=T0 + TTL,
        user_id=user_id,
        login_jti=login_jti,
    )


async def test_a_passkey_round_trips(storage: Storage) -> None:
    await storage.create_user(user("alice"))
    record = passkey("p1", "alice", sign_count=7)
    assert await storage.add_passkey(record) is True
    assert await storage.get_passkey("cred-p1") == record
    assert await storage.get_passkey("cred-nope") is None
    assert await storage.list_passkeys("alice") == [record]
    assert await storage.count_passkeys("alice") == 1


async def test_a_passkey_of_no_user_is_not_stored(storage: Storage) -> None:
    assert await storage.add_passkey(passkey("p1", "ghost")) is False
    assert await storage.get_passkey("cred-p1") is None


async def test_a_credential_id_is_registered_once_across_users(storage: Storage) -> None:
    await storage.create_user(user("alice"))
    await storage.create_user(user("bob"))
    await storage.add_passkey(passkey("p1", "alice"))
    taken = dataclasses.replace(passkey("p2", "bob"), credential_id="cred-p1")
    with pytest.raises(Conflict):
        await storage.add_passkey(taken)
    assert await storage.count_passkeys("bob") == 0


async def test_list_is_per_user_and_oldest_first(storage: Storage) -> None:
    await storage.create_user(user("alice"))
    await storage.create_user(user("bob"))
    await storage.add_passkey(passkey("p2", "alice", created_at=T0 + 2))
    await storage.add_passkey(passkey("p1", "alice", created_at=T0 + 1))
    await storage.add_passkey(passkey("p3", "bob"))
    assert [p.id for p in await storage.list_passkeys("alice")] == ["p1", "p2"]
    assert await storage.count_passkeys("bob") == 1
    # The login's one second-factor read counts them too, per user.
    assert await storage.mfa_summary("alice") == (False, 0, 2)
    assert await storage.mfa_summary("bob") == (False, 0, 1)
    assert await storage.mfa_summary("carol") == (False, 0, 0)
    assert await storage.list_passkeys("carol") == []


async def test_rename_and_delete_touch_only_the_owners_passkey(storage: Storage) -> None:
    await storage.create_user(user("alice"))
    await storage.create_user(user("bob"))
    await storage.add_passkey(passkey("p1", "alice"))
    assert await storage.rename_passkey("bob", "p1", "stolen") is False
    assert await storage.delete_passkey("bob", "p1") is False
    assert await storage.rename_passkey("alice", "p1", "Laptop") is True
    got = await storage.get_passkey("cred-p1")
    assert got is not None
    assert got.name == "Laptop"
    assert await storage.delete_passkey("alice", "p1") is True
    assert await storage.delete_passkey("alice", "p1") is False
    assert await storage.get_passkey("cred-p1") is None


async def test_delete_all_and_the_user_cascade(storage: Storage) -> None:
    await storage.create_user(user("alice"))
    await storage.create_user(user("bob"))
    for pid in ("p1", "p2"):
        await storage.add_passkey(passkey(pid, "alice"))
    await storage.add_passkey(passkey("p3", "bob"))
    assert await storage.delete_passkeys("alice") == 2
    assert await storage.count_passkeys("alice") == 0
    await storage.create_webauthn_challenge(challenge("c1", user_id="bob"))
    await storage.delete_user("bob")
    assert await storage.get_passkey("cred-p3") is None
    assert await storage.use_webauthn_challenge(digest("c1"), purpose="register", now=T0) is None


async def test_a_use_needs_a_greater_counter(storage: Storage) -> None:
    await storage.create_user(user("alice"))
    await storage.add_passkey(passkey("p1", "alice", sign_count=5))
    assert await storage.use_passkey("p1", sign_count=5, backed_up=False, now=T0 + 1) is False
    assert await storage.use_passkey("p1", sign_count=4, backed_up=False, now=T0 + 1) is False
    assert await storage.use_passkey("p1", sign_count=0, backed_up=False, now=T0 + 1) is False
    assert await storage.use_passkey("p1", sign_count=6, backed_up=True, now=T0 + 2) is True
    got = await storage.get_passkey("cred-p1")
    assert got is not None
    assert (got.sign_count, got.backed_up, got.last_used_at) == (6, True, T0 + 2)
    assert await storage.use_passkey("nope", sign_count=9, backed_up=False, now=T0) is False


async def test_a_counter_of_zero_on_both_sides_is_no_counter(storage: Storage) -> None:
    await storage.create_user(user("alice"))
    await storage.add_passkey(passkey("p1", "alice"))
    for second in (1, 2):
        assert await storage.use_passkey("p1", sign_count=0, backed_up=False, now=T0 + second)
    got = await storage.get_passkey("cred-p1")
    assert got is not None
    assert (got.sign_count, got.last_used_at) == (0, T0 + 2)
    # Once the authenticator counts, it can never go back to 0.
    assert await storage.use_passkey("p1", sign_count=1, backed_up=False, now=T0 + 3)
    assert not await storage.use_passkey("p1", sign_count=0, backed_up=False, now=T0 + 4)


async def test_a_challenge_is_used_once_for_its_purpose(storage: Storage) -> None:
    await storage.create_user(user("alice"))
    issued = challenge("c1", "second_factor", login_jti="jti-1")
    await storage.create_webauthn_challenge(issued)
    assert await storage.use_webauthn_challenge(digest("c1"), purpose="register", now=T0) is None
    assert await storage.use_webauthn_challenge(digest("nope"), purpose="register", now=T0) is None
    used = await storage.use_webauthn_challenge(digest("c1"), purpose="second_factor", now=T0 + 1)
    assert used == dataclasses.replace(issued, used_at=T0 + 1)
    again = await storage.use_webauthn_challenge(digest("c1"), purpose="second_factor", now=T0 + 2)
    assert again is None


async def test_an_expired_challenge_is_refused_and_purged(storage: Storage) -> None:
    await storage.create_webauthn_challenge(challenge("c1", "passwordless", user_id=None))
    await storage.create_webauthn_challenge(challenge("c2", "passwordless", user_id=None))
    assert (
        await storage.use_webauthn_challenge(digest("c1"), purpose="passwordless", now=T0 + TTL)
        is None
    )
    assert await storage.purge_webauthn_challenges(before=T0 + TTL) == 0
    assert await storage.purge_webauthn_challenges(before=T0 + TTL + 1) == 2
    assert (
        await storage.use_webauthn_challenge(digest("c2"), purpose="passwordless", now=T0 + 1)
        is None
    )


async def test_concurrent_uses_of_one_challenge_have_one_winner(database_url: str) -> None:
    async with opened(database_url) as first, opened(database_url) as second:
        stores = [first, second]
        await first.create_user(user("alice"))
        for rnd in range(3):
            name = f"c{rnd}"
            await first.create_webauthn_challenge(challenge(name))
            results = await asyncio.gather(
                *(
                    stores[i % 2].use_webauthn_challenge(
                        digest(name), purpose="register", now=T0 + 1
                    )
                    for i in range(RACERS)
                )
            )
            assert sum(r is not None for r in results) == 1, results


async def test_concurrent_uses_with_one_counter_have_one_winner(database_url: str) -> None:
    async with opened(database_url) as first, opened(database_url) as second:
        stores = [first, second]
        await first.create_user(user("alice"))
        await first.add_passkey(passkey("p1", "alice", sign_count=1))
        for count in (2, 3, 4):
            results = await asyncio.gather(
                *(
                    stores[i % 2].use_passkey(
                        "p1", sign_count=count, backed_up=False, now=T0 + count
                    )
                    for i in range(RACERS)
                )
            )
            assert results.count(True) == 1, results
        got = await first.get_passkey("cred-p1")
        assert got is not None
        assert got.sign_count == 4


async def test_concurrent_increasing_counters_never_go_backwards(database_url: str) -> None:
    async with opened(database_url) as first, opened(database_url) as second:
        stores = [first, second]
        await first.create_user(user("alice"))
        await first.add_passkey(passkey("p1", "alice", sign_count=1))
        counts = list(range(2, 2 + RACERS))
        results = await asyncio.gather(
            *(
                stores[i % 2].use_passkey("p1", sign_count=c, backed_up=False, now=T0 + c)
                for i, c in enumerate(reversed(counts))
            )
        )
        assert any(results)
        got = await first.get_passkey("cred-p1")
        # Whatever the order, the stored counter is the highest of the winners: never lower.
        won = [c for c, ok in zip(reversed(counts), results, strict=True) if ok]
        assert got is not None
        assert got.sign_count == max(won)
