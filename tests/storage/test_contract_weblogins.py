"""Contract: WebLoginStore (the hosted login's browser sessions).

A web login is written with its session in one transaction, only for a live user whose
password hash is still the one checked; it reads back with its session and user; it goes
with its session (a purge, a deleted user) and when deleted or purged itself.
"""

from __future__ import annotations

import dataclasses

import pytest

from authgate.storage.base import SessionRecord, Storage, WebLoginRecord

from ._records import DAY, T0, digest, session, user

pytestmark = pytest.mark.anyio


def web_session(sid: str, user_id: str) -> SessionRecord:
    """A session of the hosted login (no refresh token)."""
    return dataclasses.replace(
        session(sid, user_id, expires_at=T0 + 7 * DAY), client_id="authgate-web", amr="pwd"
    )


def login(name: str, sid: str, user_id: str, *, idle: float = T0 + 0.5 * DAY) -> WebLoginRecord:
    """A web login by the digest of ``name``."""
    return WebLoginRecord(
        digest=digest(name),
        sid=sid,
        user_id=user_id,
        created_at=T0,
        last_seen_at=T0,
        idle_expires_at=idle,
        expires_at=T0 + 7 * DAY,
    )


async def test_a_web_login_round_trips_with_its_session_and_user(storage: Storage) -> None:
    alice = user("alice")
    await storage.create_user(alice)
    live = await storage.create_web_login(
        web_session("s1", "alice"), login("c1", "s1", "alice"), password_hash=alice.password_hash
    )
    assert live is not None
    assert live.user.id == "alice"
    state = await storage.web_login_state(digest("c1"))
    assert state is not None
    assert state.login == login("c1", "s1", "alice")
    assert state.session == web_session("s1", "alice")
    assert state.user is not None
    assert state.user.id == "alice"
    assert await storage.web_login_state(digest("nope")) is None
    assert await storage.get_refresh(digest("c1")) is None  # no refresh token


@pytest.mark.parametrize("why", ["gone", "disabled", "new_password"])
async def test_nothing_is_written_for_a_user_that_changed(storage: Storage, why: str) -> None:
    alice = user("alice")
    if why != "gone":
        await storage.create_user(alice)
    if why == "disabled":
        await storage.set_disabled("alice", True, now=T0)
    checked = "other-hash" if why == "new_password" else alice.password_hash
    live = await storage.create_web_login(
        web_session("s1", "alice"), login("c1", "s1", "alice"), password_hash=checked
    )
    assert live is None
    assert await storage.web_login_state(digest("c1")) is None
    assert await storage.get_session("s1") is None


async def test_touch_moves_the_idle_deadline(storage: Storage) -> None:
    await storage.create_user(user("alice"))
    await storage.create_web_login(
        web_session("s1", "alice"), login("c1", "s1", "alice"), password_hash=None
    )
    await storage.touch_web_login(digest("c1"), now=T0 + 120, idle_expires_at=T0 + DAY)
    state = await storage.web_login_state(digest("c1"))
    assert state is not None
    assert (state.login.last_seen_at, state.login.idle_expires_at) == (T0 + 120, T0 + DAY)


async def test_delete_answers_what_it_deleted_once(storage: Storage) -> None:
    await storage.create_user(user("alice"))
    await storage.create_web_login(
        web_session("s1", "alice"), login("c1", "s1", "alice"), password_hash=None
    )
    assert await storage.delete_web_login(digest("c1")) == login("c1", "s1", "alice")
    assert await storage.delete_web_login(digest("c1")) is None
    assert await storage.web_login_state(digest("c1")) is None
    assert await storage.get_session("s1") is not None  # the caller ends the session


async def test_a_revoked_session_shows_in_the_state(storage: Storage) -> None:
    await storage.create_user(user("alice"))
    await storage.create_web_login(
        web_session("s1", "alice"), login("c1", "s1", "alice"), password_hash=None
    )
    assert await storage.revoke_user_sessions("alice", now=T0 + 1) == ["s1"]
    state = await storage.web_login_state(digest("c1"))
    assert state is not None
    assert state.session.revoked_at == T0 + 1


async def test_the_login_goes_with_its_session_and_its_user(storage: Storage) -> None:
    await storage.create_user(user("alice"))
    await storage.create_user(user("bob"))
    for name, uid in (("c1", "alice"), ("c2", "bob")):
        await storage.create_web_login(
            web_session(f"s-{name}", uid), login(name, f"s-{name}", uid), password_hash=None
        )
    await storage.revoke_session("s-c1", now=T0)
    assert await storage.purge_sessions(before=T0 + 1) == 1
    assert await storage.web_login_state(digest("c1")) is None
    await storage.delete_user("bob")
    assert await storage.web_login_state(digest("c2")) is None


async def test_purge_deletes_the_idle_and_the_expired(storage: Storage) -> None:
    await storage.create_user(user("alice"))
    for name, idle in (("idle", T0 + 10), ("live", T0 + DAY)):
        await storage.create_web_login(
            web_session(f"s-{name}", "alice"),
            login(name, f"s-{name}", "alice", idle=idle),
            password_hash=None,
        )
    assert await storage.purge_web_logins(before=T0 + 11) == 1
    assert await storage.web_login_state(digest("idle")) is None
    assert await storage.web_login_state(digest("live")) is not None
    assert await storage.purge_web_logins(before=T0 + 8 * DAY) == 1
