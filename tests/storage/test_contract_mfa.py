"""Contract: MfaStore (TOTP secrets, recovery codes by digest, logins waiting for their
second factor), on every backend, including real concurrency through two engines."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from authgate.storage.base import MfaLoginRecord, Storage, TotpRecord

from ._records import T0, digest, refresh, session, user
from ._stores import opened

pytestmark = pytest.mark.anyio

RACERS = 20
OLD = b"\x01" * 40  # sealed secrets are opaque bytes to the store
NEW = b"\x02" * 40
OTHER = b"\x03" * 40


def codes(prefix: str, n: int = 10) -> list[str]:
    return [digest(f"{prefix}-{i}") for i in range(n)]


def login(jti: str, user_id: str, *, created_at: float = T0, ttl: float = 300) -> MfaLoginRecord:
    return MfaLoginRecord(
        jti=jti,
        user_id=user_id,
        password_hash=f"hash-of-{user_id}",
        created_at=created_at,
        expires_at=created_at + ttl,
    )


async def totp_of(storage: Storage, user_id: str) -> TotpRecord:
    record = await storage.get_totp(user_id)
    assert record is not None
    return record


async def active(storage: Storage, user_id: str, *, step: int = 100, prefix: str = "rc") -> None:
    """Give ``user_id`` an active TOTP (secret OLD, last step ``step``) and ten codes."""
    assert await storage.put_pending_totp(user_id, OLD, now=T0)
    assert await storage.confirm_totp(
        user_id, pending=OLD, step=step, now=T0, recovery_digests=codes(prefix)
    )


@pytest.fixture
async def alice(storage: Storage) -> str:
    await storage.create_user(user("alice"))
    await storage.create_user(user("bob"))
    return "alice"


# -- TOTP ----------------------------------------------------------------------------------


async def test_enrolment_round_trip(storage: Storage, alice: str) -> None:
    assert await storage.get_totp(alice) is None
    assert await storage.mfa_summary(alice) == (False, 0, 0)
    assert await storage.put_pending_totp("ghost", NEW, now=T0) is False
    assert await storage.get_totp("ghost") is None

    assert await storage.put_pending_totp(alice, NEW, now=T0 + 1) is True
    assert await storage.get_totp(alice) == TotpRecord(
        user_id=alice, pending_secret=NEW, pending_at=T0 + 1
    )
    assert await storage.mfa_summary(alice) == (False, 0, 0)  # pending is not active
    assert await storage.use_totp_step(alice, 5) is False  # no active secret yet

    assert await storage.confirm_totp(
        alice, pending=NEW, step=7, now=T0 + 2, recovery_digests=codes("a")
    )
    assert await storage.get_totp(alice) == TotpRecord(
        user_id=alice, secret=NEW, confirmed_at=T0 + 2, last_step=7
    )
    assert await storage.mfa_summary(alice) == (True, 10, 0)
    assert await storage.recovery_codes_left(alice) == 10
    assert await storage.mfa_summary("bob") == (False, 0, 0)


async def test_re_enrolling_keeps_the_active_secret_until_confirmed(
    storage: Storage, alice: str
) -> None:
    await active(storage, alice)
    assert await storage.put_pending_totp(alice, NEW, now=T0 + 5)
    got = await totp_of(storage, alice)
    assert (got.secret, got.last_step, got.pending_secret) == (OLD, 100, NEW)
    assert await storage.use_totp_step(alice, 101)  # the active secret still works
    assert await storage.confirm_totp(
        alice, pending=NEW, step=50, now=T0 + 6, recovery_digests=codes("b")
    )
    got = await totp_of(storage, alice)
    assert (got.secret, got.last_step, got.pending_secret, got.pending_at) == (NEW, 50, None, None)
    # The new set replaced the old one.
    assert await storage.use_recovery_code(alice, codes("rc")[0], now=T0) is False
    assert await storage.use_recovery_code(alice, codes("b")[0], now=T0) is True


async def test_confirm_with_a_stale_pending_secret_changes_nothing(
    storage: Storage, alice: str
) -> None:
    assert await storage.put_pending_totp(alice, OLD, now=T0)
    assert await storage.put_pending_totp(alice, NEW, now=T0 + 1)  # replaces OLD
    before = await totp_of(storage, alice)
    assert (
        await storage.confirm_totp(
            alice, pending=OLD, step=9, now=T0 + 2, recovery_digests=codes("x")
        )
        is False
    )
    assert await storage.get_totp(alice) == before
    assert await storage.mfa_summary(alice) == (False, 0, 0)

    # With an active secret and codes: a stale confirm leaves both as they were.
    await storage.confirm_totp(alice, pending=NEW, step=9, now=T0 + 3, recovery_digests=codes("y"))
    assert await storage.put_pending_totp(alice, OTHER, now=T0 + 4)
    before = await totp_of(storage, alice)
    assert (
        await storage.confirm_totp(
            alice, pending=NEW, step=99, now=T0 + 5, recovery_digests=codes("z")
        )
        is False
    )
    assert await storage.get_totp(alice) == before
    assert await storage.mfa_summary(alice) == (True, 10, 0)
    assert await storage.use_recovery_code(alice, codes("z")[0], now=T0) is False
    assert await storage.use_recovery_code(alice, codes("y")[0], now=T0) is True
    # Another user's pending secret never confirms this one's.
    bobs = b"\x04" * 40
    assert await storage.put_pending_totp("bob", bobs, now=T0)
    before = await totp_of(storage, alice)
    assert (
        await storage.confirm_totp(alice, pending=bobs, step=1, now=T0, recovery_digests=[])
        is False
    )
    assert await storage.get_totp(alice) == before
    bob = await totp_of(storage, "bob")
    assert (bob.secret, bob.pending_secret) == (None, bobs)


async def test_use_totp_step_only_moves_forward(storage: Storage, alice: str) -> None:
    await active(storage, alice, step=100)
    assert await storage.use_totp_step(alice, 100) is False  # the confirming step
    assert await storage.use_totp_step(alice, 99) is False
    assert await storage.use_totp_step(alice, 101) is True
    assert await storage.use_totp_step(alice, 101) is False
    assert await storage.use_totp_step(alice, 103) is True
    assert await storage.use_totp_step(alice, 102) is False
    assert (await totp_of(storage, alice)).last_step == 103
    assert await storage.use_totp_step("bob", 1000) is False
    assert await storage.use_totp_step("ghost", 1000) is False


async def test_delete_totp(storage: Storage, alice: str) -> None:
    assert await storage.delete_totp(alice, keep_recovery_codes=False) is False
    await active(storage, alice)
    assert await storage.delete_totp(alice, keep_recovery_codes=True) is True
    assert await storage.get_totp(alice) is None
    assert await storage.mfa_summary(alice) == (False, 10, 0)
    await active(storage, alice, prefix="again")
    await active(storage, "bob")
    assert await storage.delete_totp(alice, keep_recovery_codes=False) is True
    assert await storage.mfa_summary(alice) == (False, 0, 0)
    assert await storage.use_totp_step(alice, 1000) is False
    assert await storage.mfa_summary("bob") == (True, 10, 0)  # untouched


# -- recovery codes --------------------------------------------------------------------------


async def test_recovery_codes_are_single_use_and_per_user(storage: Storage, alice: str) -> None:
    await storage.replace_recovery_codes(alice, codes("a"), now=T0)
    await storage.replace_recovery_codes("bob", codes("b"), now=T0)
    assert await storage.use_recovery_code("bob", codes("a")[0], now=T0) is False
    assert await storage.use_recovery_code(alice, codes("a")[0], now=T0 + 1) is True
    assert await storage.use_recovery_code(alice, codes("a")[0], now=T0 + 2) is False
    assert await storage.use_recovery_code(alice, digest("unknown"), now=T0) is False
    assert await storage.recovery_codes_left(alice) == 9
    assert await storage.recovery_codes_left("bob") == 10
    await storage.replace_recovery_codes(alice, codes("c", 3), now=T0 + 3)
    assert await storage.recovery_codes_left(alice) == 3
    assert await storage.use_recovery_code(alice, codes("a")[1], now=T0) is False
    await storage.replace_recovery_codes(alice, [], now=T0 + 4)
    assert await storage.recovery_codes_left(alice) == 0
    assert await storage.mfa_summary(alice) == (False, 0, 0)


# -- pending logins ------------------------------------------------------------------------


async def test_mfa_logins_are_used_once_and_only_while_live(storage: Storage, alice: str) -> None:
    record = login("j1", alice)
    await storage.create_mfa_login(record)
    assert await storage.get_mfa_login("j1") == record
    assert await storage.get_mfa_login("nope") is None
    used = await storage.use_mfa_login("j1", now=T0 + 10)
    assert used == dataclasses.replace(record, used_at=T0 + 10)
    assert await storage.use_mfa_login("j1", now=T0 + 11) is None
    assert await storage.get_mfa_login("j1") == used

    await storage.create_mfa_login(login("j2", alice))
    assert await storage.use_mfa_login("j2", now=T0 + 300) is None  # expires_at is not live
    assert (await storage.get_mfa_login("j2")).used_at is None  # type: ignore[union-attr]
    assert await storage.use_mfa_login("unknown", now=T0) is None

    await storage.create_mfa_login(login("j3", alice, created_at=T0 + 1000))
    assert await storage.purge_mfa_logins(before=T0 + 301) == 2  # j1 and j2
    assert await storage.get_mfa_login("j1") is None
    assert await storage.get_mfa_login("j3") is not None


# -- concurrency -------------------------------------------------------------------------


async def test_concurrent_use_of_one_totp_step_has_one_winner(database_url: str) -> None:
    async with opened(database_url) as first, opened(database_url) as second:
        stores = [first, second]
        await first.create_user(user("alice"))
        await active(first, "alice", step=100)
        for step in (101, 105, 200):
            results = await asyncio.gather(
                *(stores[i % 2].use_totp_step("alice", step) for i in range(RACERS))
            )
            assert results.count(True) == 1, (step, results)
        # Racing different steps: the last step ends at the highest one, never lower.
        results = await asyncio.gather(
            *(stores[i % 2].use_totp_step("alice", 300 + i) for i in range(RACERS))
        )
        assert True in results
        assert (await totp_of(first, "alice")).last_step == 300 + RACERS - 1


async def test_concurrent_use_of_one_recovery_code_has_one_winner(database_url: str) -> None:
    async with opened(database_url) as first, opened(database_url) as second:
        stores = [first, second]
        await first.create_user(user("alice"))
        await first.replace_recovery_codes("alice", codes("a"), now=T0)
        for code in codes("a")[:3]:
            results = await asyncio.gather(
                *(stores[i % 2].use_recovery_code("alice", code, now=T0) for i in range(RACERS))
            )
            assert results.count(True) == 1, results
        assert await first.recovery_codes_left("alice") == 7


async def test_concurrent_use_of_one_mfa_login_has_one_winner(database_url: str) -> None:
    async with opened(database_url) as first, opened(database_url) as second:
        stores = [first, second]
        await first.create_user(user("alice"))
        for n in range(3):
            await first.create_mfa_login(login(f"j{n}", "alice"))
            results = await asyncio.gather(
                *(stores[i % 2].use_mfa_login(f"j{n}", now=T0 + 1 + i) for i in range(RACERS))
            )
            winners = [r for r in results if r is not None]
            assert len(winners) == 1, results
            stored = await first.get_mfa_login(f"j{n}")
            assert stored == winners[0]


async def test_concurrent_confirms_of_one_pending_secret_have_one_winner(
    database_url: str,
) -> None:
    async with opened(database_url) as first, opened(database_url) as second:
        stores = [first, second]
        await first.create_user(user("alice"))
        assert await first.put_pending_totp("alice", NEW, now=T0)
        results = await asyncio.gather(
            *(
                stores[i % 2].confirm_totp(
                    "alice", pending=NEW, step=i, now=T0, recovery_digests=codes(f"set{i}")
                )
                for i in range(RACERS)
            )
        )
        assert results.count(True) == 1, results
        [winner] = [i for i, ok in enumerate(results) if ok]
        got = await totp_of(first, "alice")
        assert (got.secret, got.last_step, got.pending_secret) == (NEW, winner, None)
        # Exactly the winner's ten codes exist.
        assert await first.recovery_codes_left("alice") == 10
        assert await first.use_recovery_code("alice", codes(f"set{winner}")[0], now=T0)


async def test_a_confirm_racing_a_new_enrolment_is_all_or_nothing(database_url: str) -> None:
    async with opened(database_url) as first, opened(database_url) as second:
        await first.create_user(user("alice"))
        for rnd in range(3):
            old, new = bytes([rnd]) * 40, bytes([rnd + 100]) * 40
            assert await first.put_pending_totp("alice", old, now=T0 + rnd)
            confirmed, put = await asyncio.gather(
                first.confirm_totp(
                    "alice",
                    pending=old,
                    step=rnd,
                    now=T0 + rnd,
                    recovery_digests=codes(f"r{rnd}"),
                ),
                second.put_pending_totp("alice", new, now=T0 + rnd),
            )
            assert put is True
            got = await totp_of(first, "alice")
            assert got.pending_secret == new  # the later enrolment is kept either way
            if confirmed:
                assert (got.secret, got.last_step) == (old, rnd)
                assert await first.use_recovery_code("alice", codes(f"r{rnd}")[0], now=T0)
            else:
                assert got.secret != old
                assert not await first.use_recovery_code("alice", codes(f"r{rnd}")[0], now=T0)
            await first.delete_totp("alice", keep_recovery_codes=False)


# -- sessions remember how the login was made ---------------------------------------------


async def test_a_session_keeps_its_amr_and_auth_time(storage: Storage, alice: str) -> None:
    s = dataclasses.replace(session("s1", alice), amr="pwd otp mfa", auth_time=T0 + 0.5)
    await storage.create_session(s, refresh("t1", "s1"), password_hash=None)
    assert await storage.get_session("s1") == s
    nxt = refresh("t2", "s1", created_at=T0 + 60, parent=digest("t1"))
    assert await storage.rotate_refresh(digest("t1"), nxt, now=T0 + 60)
    got = await storage.get_session("s1")
    assert got is not None
    assert (got.amr, got.auth_time) == ("pwd otp mfa", T0 + 0.5)
    plain = session("s2", alice)
    await storage.create_session(plain, refresh("t3", "s2"), password_hash=None)
    assert await storage.get_session("s2") == plain


async def test_a_session_opens_only_while_the_checked_password_is_stored(
    storage: Storage, alice: str
) -> None:
    """What the second login step relies on: the hash checked in the first step."""
    current = (await storage.get_user(alice)).password_hash  # type: ignore[union-attr]
    stale = "$argon2id$v=19$m=19456,t=2,p=1$stale"
    s = dataclasses.replace(session("s1", alice), amr="pwd otp mfa", auth_time=T0)
    assert await storage.create_session(s, refresh("t1", "s1"), password_hash=stale) is None
    assert await storage.get_session("s1") is None
    assert await storage.create_session(s, refresh("t1", "s1"), password_hash=current)


async def test_mfa_summaries_read_a_page_of_users_in_one_go(storage: Storage, alice: str) -> None:
    await storage.create_user(user("carol"))
    assert await storage.mfa_summaries([]) == {}
    assert await storage.mfa_summaries([alice, "carol", "ghost"]) == {
        alice: (False, 0, 0),
        "carol": (False, 0, 0),
    }
    await active(storage, alice)
    await storage.use_recovery_code(alice, codes("rc")[0], now=T0)
    summaries = await storage.mfa_summaries([alice, "carol"])
    assert summaries == {alice: await storage.mfa_summary(alice), "carol": (False, 0, 0)}
    assert summaries[alice][0] is True
    assert summaries[alice][1] == 9
