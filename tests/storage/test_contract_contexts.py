"""Contract: the one-statement reads of the hot paths (refresh, access check, permissions)."""

from __future__ import annotations

import dataclasses

import pytest

from authgate.storage.base import RoleRecord, Storage

from ._records import T0, digest, passkey, refresh, session, user

pytestmark = pytest.mark.anyio


async def _setup(storage: Storage) -> None:
    await storage.put_role(RoleRecord("editor", ("posts:write", "posts:read"), T0))
    await storage.put_role(RoleRecord("reader", ("posts:read", "feed:read"), T0))
    await storage.create_user(user("u1", roles=("editor", "reader", "ghost")))
    await storage.create_session(session("s1", "u1"), refresh("t1", "s1"), password_hash=None)


async def test_permissions_for_is_the_sorted_union(storage: Storage) -> None:
    await _setup(storage)
    assert await storage.permissions_for(["editor", "reader"]) == (
        "feed:read",
        "posts:read",
        "posts:write",
    )
    assert await storage.permissions_for(["ghost"]) == ()
    assert await storage.permissions_for([]) == ()


async def test_refresh_context_reads_token_session_user_and_permissions(storage: Storage) -> None:
    await _setup(storage)
    ctx = await storage.refresh_context(digest("t1"))
    assert ctx is not None
    assert ctx.token == await storage.get_refresh(digest("t1"))
    assert ctx.session == await storage.get_session("s1")
    assert ctx.user == await storage.get_user("u1")
    assert ctx.permissions == ("feed:read", "posts:read", "posts:write")
    assert await storage.refresh_context(digest("unknown")) is None


async def test_refresh_context_of_a_deleted_users_token(storage: Storage) -> None:
    await _setup(storage)
    await storage.delete_user("u1")  # cascades to sessions and tokens
    assert await storage.refresh_context(digest("t1")) is None


async def test_access_state(storage: Storage) -> None:
    await _setup(storage)
    state = await storage.access_state("s1", "u1", "jti-1", now=T0)
    assert state.session == await storage.get_session("s1")
    assert state.user == await storage.get_user("u1")
    assert state.permissions == ("feed:read", "posts:read", "posts:write")
    assert state.jti_revoked is False
    await storage.add_revocation("jti", "jti-1", now=T0, expires_at=T0 + 60)
    assert (await storage.access_state("s1", "u1", "jti-1", now=T0 + 59)).jti_revoked is True
    assert (await storage.access_state("s1", "u1", "jti-1", now=T0 + 60)).jti_revoked is False
    await storage.add_revocation("sid", "jti-2", now=T0, expires_at=T0 + 60)
    assert (await storage.access_state("s1", "u1", "jti-2", now=T0)).jti_revoked is False
    missing = await storage.access_state("nope", "nobody", "jti-1", now=T0)
    assert (missing.session, missing.user, missing.permissions) == (None, None, ())


async def test_access_state_reads_each_part_on_its_own(storage: Storage) -> None:
    """The one statement joins the session on its sid alone: another user's session, a
    missing session and a user without roles each come back as they are."""
    await _setup(storage)
    await storage.create_user(user("u2"))
    await storage.create_session(session("s2", "u2"), refresh("t2", "s2"), password_hash=None)
    other = await storage.access_state("s2", "u1", "jti-1", now=T0)
    assert other.session is not None
    assert other.session.user_id == "u2"
    assert other.user == await storage.get_user("u1")
    assert other.permissions == ("feed:read", "posts:read", "posts:write")
    plain = await storage.access_state("gone", "u2", "jti-1", now=T0)
    assert plain.session is None
    assert plain.user == await storage.get_user("u2")
    assert plain.permissions == ()
    await storage.revoke_session("s2", now=T0 + 5)
    ended = await storage.access_state("s2", "u2", "jti-9", now=T0 + 6)
    assert ended.session is not None
    assert ended.session.revoked_at == T0 + 5
    # A gone user: nothing, whatever the session.
    await storage.delete_user("u2")
    assert (await storage.access_state("s1", "u2", "jti-1", now=T0)).user is None


async def test_refresh_context_of_a_user_without_roles(storage: Storage) -> None:
    """The user's columns come back whole from the joined statement (named apart from the
    token's and the session's, which share names like ``created_at``)."""
    await storage.create_user(dataclasses.replace(user("u3"), created_at=T0 - 100))
    await storage.create_session(session("s3", "u3"), refresh("t3", "s3"), password_hash=None)
    ctx = await storage.refresh_context(digest("t3"))
    assert ctx is not None
    assert ctx.user == await storage.get_user("u3")
    assert ctx.user is not None
    assert ctx.user.created_at == T0 - 100
    assert ctx.token == await storage.get_refresh(digest("t3"))
    assert ctx.session == await storage.get_session("s3")
    assert ctx.permissions == ()


async def test_access_state_with_mfa_reads_the_second_factors_in_the_same_statement(
    storage: Storage,
) -> None:
    """``with_mfa`` adds the user's second factors (as ``mfa_summary`` reads them), counted
    once however many roles the user's rows repeat; without it, or for a gone user, none."""
    await _setup(storage)  # u1 holds three roles: the joined statement has three rows
    assert (await storage.access_state("s1", "u1", "jti-1", now=T0)).mfa is None
    bare = await storage.access_state("s1", "u1", "jti-1", now=T0, with_mfa=True)
    assert bare.mfa == (False, 0, 0)
    assert await storage.put_pending_totp("u1", b"\x02" * 40, now=T0)
    assert await storage.confirm_totp(
        "u1",
        pending=b"\x02" * 40,
        step=7,
        now=T0,
        recovery_digests=[digest(f"rc-{i}") for i in range(10)],
    )
    assert await storage.use_recovery_code("u1", digest("rc-3"), now=T0 + 1)
    for pid in ("k1", "k2"):
        assert await storage.add_passkey(passkey(pid, "u1"))
    state = await storage.access_state("s1", "u1", "jti-1", now=T0 + 2, with_mfa=True)
    assert state.mfa == (True, 9, 2) == await storage.mfa_summary("u1")
    assert state.permissions == ("feed:read", "posts:read", "posts:write")
    # Another user's factors never leak into this one's read.
    await storage.create_user(user("u2"))
    other = await storage.access_state("s1", "u2", "jti-1", now=T0, with_mfa=True)
    assert other.mfa == (False, 0, 0)
    await storage.delete_user("u2")
    assert (await storage.access_state("s1", "u2", "jti-1", now=T0, with_mfa=True)).mfa is None
