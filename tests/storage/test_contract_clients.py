"""Contract: ClientStore (service clients, and single-use client-assertion ids)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from authgate.errors import Conflict
from authgate.storage.base import ClientRecord, Storage

from ._records import T0

pytestmark = pytest.mark.anyio

JWK = '{"crv":"Ed25519","kty":"OKP","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}'


def secret_client(client_id: str, *, created_at: float = T0) -> ClientRecord:
    return ClientRecord(
        client_id=client_id,
        name=f"Service {client_id}",
        scopes=("authgate:revocations", "posts:read"),
        created_at=created_at,
        secret_hash=f"$argon2id$v=19$m=19456,t=2,p=1${client_id}",
    )


def jwk_client(client_id: str, *, created_at: float = T0) -> ClientRecord:
    return ClientRecord(
        client_id=client_id,
        name="Batch job ü",
        scopes=("posts:write",),
        created_at=created_at,
        public_jwk=JWK,
        access_ttl=120.5,
    )


# -- clients -----------------------------------------------------------------------------


async def test_create_and_get_client_round_trip(storage: Storage) -> None:
    assert await storage.get_client("cli_a") is None
    a, b = secret_client("cli_a"), jwk_client("cli_b")
    await storage.create_client(a)
    await storage.create_client(b)
    assert await storage.get_client("cli_a") == a
    assert await storage.get_client("cli_b") == b
    assert await storage.get_client("cli_A") is None  # ids compare exactly
    assert await storage.get_client("nope") is None


async def test_client_with_no_scopes_and_every_optional_field_empty(storage: Storage) -> None:
    bare = ClientRecord(client_id="cli_bare", name="bare", scopes=(), created_at=T0)
    await storage.create_client(bare)
    assert await storage.get_client("cli_bare") == bare


async def test_client_scopes_are_stored_unique_and_sorted(storage: Storage) -> None:
    await storage.create_client(
        dataclasses.replace(secret_client("cli_a"), scopes=("b:x", "a:y", "b:x"))
    )
    got = await storage.get_client("cli_a")
    assert got is not None
    assert got.scopes == ("a:y", "b:x")


async def test_duplicate_client_id_is_a_conflict_and_changes_nothing(storage: Storage) -> None:
    await storage.create_client(secret_client("cli_a"))
    with pytest.raises(Conflict) as info:
        await storage.create_client(jwk_client("cli_a"))
    assert info.value.code == "conflict"
    secret = "$argon2id$v=19$m=19456,t=2,p=1$U0VDUkVULUhBU0g"
    with pytest.raises(Conflict) as info:
        await storage.create_client(dataclasses.replace(secret_client("cli_a"), secret_hash=secret))
    assert info.value.code == "conflict"
    assert secret not in str(info.value)  # the reason never carries the SQL parameters
    assert secret not in str(info.value.__cause__)
    assert await storage.get_client("cli_a") == secret_client("cli_a")
    assert await storage.list_clients() == [secret_client("cli_a")]


async def test_list_clients_oldest_first_with_revoked_ones(storage: Storage) -> None:
    assert await storage.list_clients() == []
    newest = secret_client("cli_a", created_at=T0 + 20)
    oldest = jwk_client("cli_z", created_at=T0)
    middle = secret_client("cli_m", created_at=T0 + 10)
    for c in (newest, oldest, middle):
        await storage.create_client(c)
    assert await storage.revoke_client("cli_m", now=T0 + 30)
    assert await storage.list_clients() == [
        oldest,
        dataclasses.replace(middle, revoked_at=T0 + 30),
        newest,
    ]


async def test_revoke_client_once(storage: Storage) -> None:
    await storage.create_client(secret_client("cli_a"))
    await storage.create_client(secret_client("cli_b"))
    assert await storage.revoke_client("cli_a", now=T0 + 5) is True
    assert await storage.revoke_client("cli_a", now=T0 + 6) is False  # already revoked
    assert await storage.revoke_client("ghost", now=T0 + 6) is False
    # A revoked client is still found, with the first revocation time.
    assert await storage.get_client("cli_a") == dataclasses.replace(
        secret_client("cli_a"), revoked_at=T0 + 5
    )
    assert await storage.get_client("cli_b") == secret_client("cli_b")


# -- client-assertion ids ----------------------------------------------------------------


async def test_an_assertion_id_is_single_use_per_client(storage: Storage) -> None:
    assert await storage.use_assertion_id("cli_a", "j1", expires_at=T0 + 60) is True
    assert await storage.use_assertion_id("cli_a", "j1", expires_at=T0 + 60) is False
    assert await storage.use_assertion_id("cli_a", "j1", expires_at=T0 + 999) is False
    assert await storage.use_assertion_id("cli_a", "j2", expires_at=T0 + 60) is True
    assert await storage.use_assertion_id("cli_b", "j1", expires_at=T0 + 60) is True
    assert await storage.use_assertion_id("cli_b", "j1", expires_at=T0 + 60) is False
    # Compared exactly: no case folding, no trimming.
    assert await storage.use_assertion_id("cli_a", "J1", expires_at=T0 + 60) is True
    assert await storage.use_assertion_id("cli_a", "j1 ", expires_at=T0 + 60) is True


async def test_any_jti_a_client_chooses_is_recorded(storage: Storage) -> None:
    # The client picks the jti: a long one (a token may be 8 KiB) and any Unicode.
    long_jti = "x" * 6000
    for jti in (long_jti, long_jti + "y", "ü-\u2603-\U0001f600", "", "'; DROP TABLE clients; --"):
        assert await storage.use_assertion_id("cli_a", jti, expires_at=T0 + 60) is True
        assert await storage.use_assertion_id("cli_a", jti, expires_at=T0 + 60) is False


async def test_20_concurrent_uses_of_one_assertion_id_have_one_winner(storage: Storage) -> None:
    results = await asyncio.gather(
        *(storage.use_assertion_id("cli_a", "same-jti", expires_at=T0 + 60) for _ in range(20))
    )
    assert results.count(True) == 1
    assert results.count(False) == 19
    assert await storage.use_assertion_id("cli_a", "same-jti", expires_at=T0 + 60) is False


async def test_concurrent_distinct_assertion_ids_all_win(storage: Storage) -> None:
    results = await asyncio.gather(
        *(storage.use_assertion_id("cli_a", f"j{i}", expires_at=T0 + 60) for i in range(20))
    )
    assert results == [True] * 20


async def test_purge_drops_only_expired_assertion_ids(storage: Storage) -> None:
    await storage.use_assertion_id("cli_a", "short", expires_at=T0 + 10)
    await storage.use_assertion_id("cli_b", "edge", expires_at=T0 + 20)
    await storage.use_assertion_id("cli_a", "long", expires_at=T0 + 1000)
    assert await storage.purge_assertion_ids(now=T0) == 0
    assert await storage.purge_assertion_ids(now=T0 + 20) == 2  # expires_at <= now
    assert await storage.purge_assertion_ids(now=T0 + 20) == 0
    # The live one is still a replay; the purged ones are forgotten.
    assert await storage.use_assertion_id("cli_a", "long", expires_at=T0 + 1000) is False
    assert await storage.use_assertion_id("cli_a", "short", expires_at=T0 + 30) is True
    assert await storage.use_assertion_id("cli_b", "edge", expires_at=T0 + 30) is True
    assert await storage.purge_assertion_ids(now=T0 + 5000) == 3
