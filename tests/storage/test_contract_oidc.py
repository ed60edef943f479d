"""Contract: OidcStore (single-use authorization codes, consents) and the session tree of a
hosted login (``parent_sid``), on every backend. Of many concurrent uses of one code,
exactly one wins."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from authgate.errors import Conflict
from authgate.storage.base import AuthCodeRecord, ConsentRecord, Storage

from ._records import T0, digest, refresh, session, user
from ._stores import opened

pytestmark = pytest.mark.anyio


def code(name: str, user_id: str = "u1") -> AuthCodeRecord:
    return AuthCodeRecord(
        digest=digest(name),
        client_id="cli_a",
        user_id=user_id,
        login_sid="wl_1",
        redirect_uri="https://app.example.com/cb",
        code_challenge="c" * 43,
        scope="email openid",
        nonce="n",
        auth_time=T0 - 5,
        amr="pwd otp",
        created_at=T0,
        expires_at=T0 + 60,
    )


async def test_a_code_is_used_once(storage: Storage) -> None:
    await storage.create_user(user("u1"))
    await storage.create_auth_code(code("a"))
    with pytest.raises(Conflict):
        await storage.create_auth_code(code("a"))
    assert await storage.get_auth_code(digest("a")) == code("a")
    won = await storage.use_auth_code(digest("a"), now=T0 + 1, sid="sid_x")
    assert won == dataclasses.replace(code("a"), used_at=T0 + 1, issued_sid="sid_x")
    assert await storage.use_auth_code(digest("a"), now=T0 + 2, sid="sid_y") is None
    assert (await storage.get_auth_code(digest("a"))) == won
    assert await storage.use_auth_code(digest("nope"), now=T0, sid="sid_z") is None


async def test_purge_codes(storage: Storage) -> None:
    await storage.create_user(user("u1"))
    await storage.create_auth_code(code("a"))
    await storage.create_auth_code(dataclasses.replace(code("b"), expires_at=T0 + 600))
    assert await storage.purge_auth_codes(before=T0 + 61) == 1
    assert await storage.get_auth_code(digest("a")) is None
    assert await storage.get_auth_code(digest("b")) is not None


async def test_consents(storage: Storage) -> None:
    await storage.create_user(user("u1"))
    first = ConsentRecord("u1", "cli_b", "openid", T0)
    await storage.put_consent(first)
    await storage.put_consent(ConsentRecord("u1", "cli_a", "openid", T0))
    replaced = ConsentRecord("u1", "cli_b", "email openid", T0 + 1)
    await storage.put_consent(replaced)
    assert await storage.get_consent("u1", "cli_b") == replaced
    assert [c.client_id for c in await storage.list_consents("u1")] == ["cli_a", "cli_b"]
    assert await storage.delete_consent("u1", "cli_b") is True
    assert await storage.delete_consent("u1", "cli_b") is False
    assert await storage.get_consent("u1", "cli_b") is None


async def test_child_and_client_sessions(storage: Storage) -> None:
    await storage.create_user(user("u1"))
    for sid, parent, client in (
        ("s1", "wl_1", "cli_a"),
        ("s2", "wl_1", "cli_b"),
        ("s3", "wl_2", "cli_a"),
    ):
        record = dataclasses.replace(session(sid, "u1"), parent_sid=parent, client_id=client)
        await storage.create_session(record, refresh(sid, sid), password_hash=None)
    assert await storage.revoke_child_sessions("wl_1", now=T0) == ["s1", "s2"]
    assert await storage.revoke_child_sessions("wl_1", now=T0) == []
    assert await storage.revoke_client_sessions("u1", "cli_a", now=T0) == ["s3"]
    stored = await storage.get_session("s1")
    assert stored is not None
    assert stored.parent_sid == "wl_1"


async def test_concurrent_uses_of_one_code(database_url: str) -> None:
    async with opened(database_url) as store:
        await store.create_user(user("u1"))
        await store.create_auth_code(code("race"))
        results = await asyncio.gather(
            *(store.use_auth_code(digest("race"), now=T0 + 1, sid=f"sid_{i}") for i in range(20))
        )
    assert sum(r is not None for r in results) == 1
