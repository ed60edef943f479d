"""Contract: KeyStore, AuditLog, Counters and Database."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from authgate.errors import Conflict
from authgate.storage.base import (
    AuditEntry,
    AuditRecord,
    CounterState,
    KeyRecord,
    Storage,
    audit_hash,
)

from ._records import T0

pytestmark = pytest.mark.anyio


def key(kid: str, *, state: str = "next", created_at: float = T0) -> KeyRecord:
    return KeyRecord(
        kid=kid,
        alg="ES256",
        state=state,  # type: ignore[arg-type]
        public_jwk='{"kty":"EC","crv":"P-256","x":"...","y":"..."}',
        encrypted_private=bytes(range(256)) + b"\x00" + kid.encode(),
        created_at=created_at,
    )


# -- keys --------------------------------------------------------------------------------


async def test_insert_and_list_keys_oldest_first(storage: Storage) -> None:
    assert await storage.list_keys() == []
    newer, older = key("k-new", created_at=T0 + 10), key("k-old", state="current")
    hmac = dataclasses.replace(key("k-hmac", created_at=T0 + 5), alg="HS256", public_jwk=None)
    for k in (newer, older, hmac):
        await storage.insert_key(k)
    assert await storage.list_keys() == [older, hmac, newer]


async def test_duplicate_kid_is_a_conflict(storage: Storage) -> None:
    await storage.insert_key(key("k1"))
    with pytest.raises(Conflict) as info:
        await storage.insert_key(dataclasses.replace(key("k1"), alg="EdDSA"))
    assert info.value.code == "conflict"
    assert await storage.list_keys() == [key("k1")]


async def test_update_key_moves_state_and_sets_given_times(storage: Storage) -> None:
    await storage.insert_key(key("k1"))
    await storage.update_key("k1", state="current", activated_at=T0 + 1)
    assert await storage.list_keys() == [
        dataclasses.replace(key("k1"), state="current", activated_at=T0 + 1)
    ]
    await storage.update_key("k1", state="retiring", retired_at=T0 + 2, expires_at=T0 + 3)
    assert await storage.list_keys() == [
        dataclasses.replace(
            key("k1"),
            state="retiring",
            activated_at=T0 + 1,
            retired_at=T0 + 2,
            expires_at=T0 + 3,
        )
    ]
    await storage.update_key("k1", state="retired", drop_private=True)
    assert await storage.list_keys() == [
        dataclasses.replace(
            key("k1"),
            state="retired",
            encrypted_private=None,
            activated_at=T0 + 1,
            retired_at=T0 + 2,
            expires_at=T0 + 3,
        )
    ]


async def test_update_unknown_key_changes_nothing(storage: Storage) -> None:
    await storage.insert_key(key("k1"))
    await storage.update_key("ghost", state="current")
    assert await storage.list_keys() == [key("k1")]


async def test_key_lock_serialises_holders(storage: Storage) -> None:
    inside = 0
    most = 0
    order: list[str] = []

    async def rotate(name: str) -> None:
        nonlocal inside, most
        async with storage.key_lock():
            inside += 1
            most = max(most, inside)
            order.append(f"{name}+")
            for _ in range(5):
                await asyncio.sleep(0)  # yield: another holder would get in here
            await storage.insert_key(key(name))
            order.append(f"{name}-")
            inside -= 1

    await asyncio.gather(*(rotate(f"k{i}") for i in range(4)))
    assert most == 1
    assert len(order) == 8
    assert all(order[i][:-1] == order[i + 1][:-1] for i in range(0, 8, 2))
    assert sorted(k.kid for k in await storage.list_keys()) == ["k0", "k1", "k2", "k3"]


async def test_key_lock_holder_can_read_and_write_keys(storage: Storage) -> None:
    async with storage.key_lock():
        assert await storage.list_keys() == []
        await storage.insert_key(key("k1"))
        await storage.update_key("k1", state="current", activated_at=T0)
        assert [k.state for k in await storage.list_keys()] == ["current"]
        with pytest.raises(Conflict):
            await storage.insert_key(key("k1"))
        await storage.insert_key(key("k2", created_at=T0 + 1))
    assert [(k.kid, k.state) for k in await storage.list_keys()] == [
        ("k1", "current"),
        ("k2", "next"),
    ]


# -- audit -------------------------------------------------------------------------------


async def test_append_and_query_audit(storage: Storage) -> None:
    await storage.append_audit(
        AuditEntry(
            event="login_failed", at=T0, user_id="u1", ip="192.0.2.1", detail={"reason": "password"}
        )
    )
    await storage.append_audit(
        AuditEntry(event="login", at=T0 + 1, user_id="u1", sid="s1", ip="192.0.2.1")
    )
    await storage.append_audit(
        AuditEntry(event="key_rotated", at=T0 + 2, detail={"kid": "k1", "n": [1, 2.5]})
    )
    await storage.append_audit(
        AuditEntry(event="login", at=T0 + 3, user_id="u2", sid="s2", detail={"é": "ü"})
    )

    every = await storage.query_audit()
    assert [(r.event, r.user_id) for r in every] == [
        ("login_failed", "u1"),
        ("login", "u1"),
        ("key_rotated", None),
        ("login", "u2"),
    ]
    ids = [r.id for r in every]
    assert ids == sorted(ids)
    assert len(set(ids)) == 4
    first_hash = audit_hash(
        id=ids[0],
        at=T0,
        event="login_failed",
        user_id="u1",
        sid=None,
        ip="192.0.2.1",
        detail={"reason": "password"},
        prev_hash=None,
    )
    assert every[0] == AuditRecord(
        ids[0],
        T0,
        "login_failed",
        "u1",
        None,
        "192.0.2.1",
        {"reason": "password"},
        prev_hash=None,
        hash=first_hash,
    )
    second_hash = audit_hash(
        id=ids[1],
        at=T0 + 1,
        event="login",
        user_id="u1",
        sid="s1",
        ip="192.0.2.1",
        detail={},
        prev_hash=first_hash,
    )
    assert every[1] == AuditRecord(
        ids[1], T0 + 1, "login", "u1", "s1", "192.0.2.1", {}, first_hash, second_hash
    )
    assert every[2].detail == {"kid": "k1", "n": [1, 2.5]}
    assert every[3].detail == {"é": "ü"}

    assert [r.id for r in await storage.query_audit(user_id="u1")] == ids[:2]
    assert [r.id for r in await storage.query_audit(event="login")] == [ids[1], ids[3]]
    assert [r.id for r in await storage.query_audit(event="login", user_id="u2")] == [ids[3]]
    assert [r.id for r in await storage.query_audit(after=ids[1])] == ids[2:]
    assert [r.id for r in await storage.query_audit(after=ids[0], limit=2)] == ids[1:3]
    assert [r.id for r in await storage.query_audit(event="login", after=ids[1])] == [ids[3]]
    assert await storage.query_audit(user_id="nobody") == []
    assert await storage.query_audit(after=ids[-1]) == []
    # Newest first: the limit keeps the latest.
    assert [r.id for r in await storage.query_audit(newest_first=True, limit=2)] == [
        ids[3],
        ids[2],
    ]
    assert [r.id for r in await storage.query_audit(user_id="u1", newest_first=True)] == [
        ids[1],
        ids[0],
    ]


# -- counters ----------------------------------------------------------------------------


async def test_hit_counts_within_a_window_and_restarts_after_it(storage: Storage) -> None:
    assert await storage.hit("k", now=T0, window=60) == CounterState(1, T0)
    assert await storage.hit("k", now=T0 + 30, window=60) == CounterState(2, T0)
    assert await storage.hit("k", now=T0 + 59.5, window=60) == CounterState(3, T0)
    # At window_start + window the old window has passed.
    assert await storage.hit("k", now=T0 + 60, window=60) == CounterState(1, T0 + 60)
    assert await storage.hit("k", now=T0 + 61, window=60) == CounterState(2, T0 + 60)
    assert await storage.hit("k", now=T0 + 1000, window=60) == CounterState(1, T0 + 1000)


async def test_counters_are_independent(storage: Storage) -> None:
    await storage.hit("a", now=T0, window=60)
    await storage.hit("a", now=T0, window=60)
    assert await storage.hit("b", now=T0 + 1, window=60) == CounterState(1, T0 + 1)
    assert await storage.peek("a", now=T0 + 1, window=60) == CounterState(2, T0)


async def test_peek_reads_without_counting(storage: Storage) -> None:
    assert await storage.peek("k", now=T0, window=60) == CounterState(0, T0)
    await storage.hit("k", now=T0, window=60)
    await storage.hit("k", now=T0 + 1, window=60)
    assert await storage.peek("k", now=T0 + 2, window=60) == CounterState(2, T0)
    assert await storage.peek("k", now=T0 + 2, window=60) == CounterState(2, T0)
    assert await storage.peek("k", now=T0 + 60, window=60) == CounterState(0, T0 + 60)
    assert await storage.hit("k", now=T0 + 3, window=60) == CounterState(3, T0)


async def test_reset_forgets_a_counter(storage: Storage) -> None:
    await storage.hit("k", now=T0, window=60)
    await storage.hit("other", now=T0, window=60)
    await storage.reset("k")
    await storage.reset("never-seen")
    assert await storage.peek("k", now=T0 + 1, window=60) == CounterState(0, T0 + 1)
    assert await storage.hit("k", now=T0 + 1, window=60) == CounterState(1, T0 + 1)
    assert await storage.peek("other", now=T0 + 1, window=60) == CounterState(1, T0)


async def test_concurrent_hits_are_all_counted(storage: Storage) -> None:
    states = await asyncio.gather(*(storage.hit("k", now=T0, window=60) for _ in range(30)))
    assert sorted(s.count for s in states) == list(range(1, 31))
    assert await storage.peek("k", now=T0, window=60) == CounterState(30, T0)


# -- database ----------------------------------------------------------------------------


async def test_ping(storage: Storage) -> None:
    await storage.ping()
    assert await storage.peek("k", now=T0, window=1) == CounterState(0, T0)  # still usable
