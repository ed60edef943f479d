"""Logout, logout everywhere, password change, the user's sessions, and the revocation feed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from _support.http import PASSWORD, assert_problem, bearer, new_email
from _support.tokens import claims_of

from .server import LiveServer

NEW_PASSWORD = "a brand new passphrase 77"


def me(live: LiveServer, token: str) -> Any:
    return live.http.get("/auth/me", headers=bearer(token))


def assert_dead(live: LiveServer, token: str) -> None:
    r = me(live, token)
    assert_problem(r, 401, "invalid_token")
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def assert_alive(live: LiveServer, token: str) -> None:
    r = me(live, token)
    assert r.status_code == 200, r.text


def feed(live: LiveServer, admin: str, after: int | None = None) -> dict[str, Any]:
    params = {} if after is None else {"after": after}
    r = live.http.get("/auth/revocations", params=params, headers=bearer(admin))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert set(body) == {"cursor", "events"}
    return body


def refresh_status(live: LiveServer, token: str) -> int:
    return live.http.post("/auth/refresh", json={"refresh_token": token}).status_code


@pytest.fixture
def admin(server: LiveServer) -> str:
    return server.make_admin()


def test_logout_kills_the_session_at_once(server: LiveServer, admin: str) -> None:
    email = new_email()
    a = server.register(email)
    b = server.login(email)
    sid_a = claims_of(a["access_token"])["sid"]
    before = feed(server, admin)

    r = server.http.post("/auth/logout", headers=bearer(a["access_token"]))
    assert r.status_code == 204
    assert r.content == b""
    assert_dead(server, a["access_token"])
    assert_problem(
        server.http.post("/auth/refresh", json={"refresh_token": a["refresh_token"]}),
        401,
        "invalid_grant",
    )
    # The other session goes on.
    assert_alive(server, b["access_token"])
    assert refresh_status(server, b["refresh_token"]) == 200

    page = feed(server, admin, after=before["cursor"])
    assert [(e["kind"], e["value"]) for e in page["events"]] == [("sid", sid_a)]
    event = page["events"][0]
    # Twice a token's lifetime: the tokens it kills, and a margin for the instances' clocks.
    assert event["expires_at"] == server.clock.now() + 2 * server.settings.access_ttl
    assert page["cursor"] == event["id"]
    assert event["id"] > before["cursor"]
    # A second logout with the dead token is refused.
    r = server.http.post("/auth/logout", headers=bearer(a["access_token"]))
    assert_problem(r, 401, "invalid_token")


def test_logout_all_kills_every_session(server: LiveServer, admin: str) -> None:
    email = new_email()
    a = server.register(email)
    b = server.login(email)
    user_id = a["user"]["id"]
    before = feed(server, admin)
    server.clock.advance(5)

    r = server.http.post("/auth/logout-all", headers=bearer(b["access_token"]))
    assert r.status_code == 204
    for pair in (a, b):
        assert_dead(server, pair["access_token"])
        assert refresh_status(server, pair["refresh_token"]) == 401

    page = feed(server, admin, after=before["cursor"])
    assert [(e["kind"], e["value"]) for e in page["events"]] == [("user", user_id)]
    event = page["events"][0]
    assert event["ver"] == claims_of(b["access_token"])["ver"] + 1
    assert "not_before" not in event

    # Logging in again, even within the same second, works: the new token carries the new
    # version; no clock is compared.
    c = server.login(email)
    assert claims_of(c["access_token"])["ver"] == event["ver"]
    assert_alive(server, c["access_token"])
    sessions = server.http.get("/auth/sessions", headers=bearer(c["access_token"])).json()
    assert [s["sid"] for s in sessions] == [claims_of(c["access_token"])["sid"]]


def test_logout_all_does_not_touch_other_users(server: LiveServer) -> None:
    mine = server.register(new_email())
    theirs = server.register(new_email())
    assert (
        server.http.post("/auth/logout-all", headers=bearer(mine["access_token"])).status_code
        == 204
    )
    assert_alive(server, theirs["access_token"])


def test_password_change_ends_other_sessions_and_keeps_this_one(
    server: LiveServer, admin: str
) -> None:
    email = new_email()
    current = server.register(email)
    other = server.login(email)
    third = server.login(email)
    sid_current = claims_of(current["access_token"])["sid"]
    other_sids = {claims_of(t["access_token"])["sid"] for t in (other, third)}
    before = feed(server, admin)

    r = server.http.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(current["access_token"]),
    )
    assert r.status_code == 204, r.text
    assert_alive(server, current["access_token"])
    for pair in (other, third):
        assert_dead(server, pair["access_token"])
        assert refresh_status(server, pair["refresh_token"]) == 401
    assert refresh_status(server, current["refresh_token"]) == 200

    page = feed(server, admin, after=before["cursor"])
    assert sorted((e["kind"], e["value"]) for e in page["events"]) == sorted(
        ("sid", sid) for sid in other_sids
    )
    assert sid_current not in {e["value"] for e in page["events"]}

    r = server.http.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert_problem(r, 401, "invalid_credentials")
    server.login(email, NEW_PASSWORD)
    events = server.http.get(
        "/admin/audit", params={"event": "password_changed"}, headers=bearer(admin)
    ).json()
    assert [e["user_id"] for e in events] == [current["user"]["id"]]


def test_password_change_with_wrong_current_password(server: LiveServer) -> None:
    email = new_email()
    body = server.register(email)
    r = server.http.post(
        "/auth/password",
        json={"current_password": "not " + PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(body["access_token"]),
    )
    assert_problem(r, 401, "invalid_credentials")
    assert_alive(server, body["access_token"])
    server.login(email)


@pytest.mark.parametrize(
    ("new", "code"),
    [
        ("short", "weak_password"),
        ("password123", "weak_password"),
        ("x" * 1100, "password_too_long"),
    ],
)
def test_password_change_to_a_weak_password(server: LiveServer, new: str, code: str) -> None:
    email = new_email()
    body = server.register(email)
    other = server.login(email)
    r = server.http.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": new},
        headers=bearer(body["access_token"]),
    )
    assert_problem(r, 400, code)
    assert_alive(server, other["access_token"])  # nothing ended
    server.login(email)


def test_password_change_refuses_extra_fields_and_needs_a_token(server: LiveServer) -> None:
    body = server.register(new_email())
    r = server.http.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD, "roles": ["admin"]},
        headers=bearer(body["access_token"]),
    )
    assert_problem(r, 422, "validation_error")
    r = server.http.post(
        "/auth/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert_problem(r, 401, "authentication_required")


# --- the user's sessions -------------------------------------------------------------------


def test_list_and_end_own_sessions(server: LiveServer) -> None:
    email = new_email()
    a = server.register(email)
    server.clock.advance(1)
    r = server.http.post(
        "/auth/login",
        json={"email": email, "password": PASSWORD},
        headers={"User-Agent": "second-device/1.0"},
    )
    b = r.json()
    sid_a = claims_of(a["access_token"])["sid"]
    sid_b = claims_of(b["access_token"])["sid"]

    r = server.http.get("/auth/sessions", headers=bearer(a["access_token"]))
    assert r.status_code == 200
    sessions = r.json()
    assert [s["sid"] for s in sessions] == [sid_b, sid_a]  # newest first
    by_sid = {s["sid"]: s for s in sessions}
    assert by_sid[sid_a]["current"] is True
    assert by_sid[sid_b]["current"] is False
    assert by_sid[sid_b]["user_agent"] == "second-device/1.0"
    assert by_sid[sid_a]["ip"] == "127.0.0.1"
    assert set(by_sid[sid_a]) == {
        "sid",
        "created_at",
        "last_used_at",
        "ip",
        "user_agent",
        "current",
    }

    r = server.http.delete(f"/auth/sessions/{sid_b}", headers=bearer(a["access_token"]))
    assert r.status_code == 204
    assert_dead(server, b["access_token"])
    assert_alive(server, a["access_token"])
    sessions = server.http.get("/auth/sessions", headers=bearer(a["access_token"])).json()
    assert [s["sid"] for s in sessions] == [sid_a]


def test_cannot_end_someone_elses_session(server: LiveServer) -> None:
    mine = server.register(new_email())
    theirs = server.register(new_email())
    their_sid = claims_of(theirs["access_token"])["sid"]
    r = server.http.delete(f"/auth/sessions/{their_sid}", headers=bearer(mine["access_token"]))
    assert_problem(r, 404, "not_found")
    assert_alive(server, theirs["access_token"])
    r = server.http.delete("/auth/sessions/sid_nope", headers=bearer(mine["access_token"]))
    assert_problem(r, 404, "not_found")


# --- the feed ------------------------------------------------------------------------------


def test_feed_cursor(server: LiveServer, admin: str) -> None:
    empty = feed(server, admin)
    assert empty["events"] == []
    cursor0 = empty["cursor"]

    a = server.register(new_email())
    server.http.post("/auth/logout", headers=bearer(a["access_token"]))
    page1 = feed(server, admin, after=cursor0)
    assert len(page1["events"]) == 1
    cursor1 = page1["cursor"]
    assert cursor1 > cursor0

    # Nothing new: the same cursor, no events.
    again = feed(server, admin, after=cursor1)
    assert again == {"cursor": cursor1, "events": []}

    b = server.register(new_email())
    server.http.post("/auth/logout-all", headers=bearer(b["access_token"]))
    page2 = feed(server, admin, after=cursor1)
    assert [e["kind"] for e in page2["events"]] == ["user"]
    assert page2["events"][0]["value"] == b["user"]["id"]
    assert page2["cursor"] == page2["events"][0]["id"]

    # Without a cursor: every live event, in order.
    everything = feed(server, admin)
    assert [e["id"] for e in everything["events"]] == [
        e["id"] for e in page1["events"] + page2["events"]
    ]
    assert everything["cursor"] == page2["cursor"]
    ids = [e["id"] for e in everything["events"]]
    assert ids == sorted(ids)


def test_feed_drops_events_once_no_token_they_kill_can_live(server: LiveServer, admin: str) -> None:
    a = server.register(new_email())
    server.http.post("/auth/logout", headers=bearer(a["access_token"]))
    assert len(feed(server, admin)["events"]) == 1
    server.clock.advance(server.settings.access_ttl + 1)
    assert len(feed(server, server.login("admin@example.com")["access_token"])["events"]) == 1
    server.clock.advance(server.settings.access_ttl)
    # The admin token expired too: log in again.
    admin = server.login("admin@example.com")["access_token"]
    page = feed(server, admin)
    assert page["events"] == []
    assert page["cursor"] >= 1


def test_feed_needs_an_admin(server: LiveServer) -> None:
    user = server.register(new_email())
    r = server.http.get("/auth/revocations", headers=bearer(user["access_token"]))
    assert_problem(r, 403, "insufficient_scope")
    challenge = r.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert "authgate:admin" in challenge
    r = server.http.get("/auth/revocations")
    assert_problem(r, 401, "authentication_required")


@pytest.mark.parametrize("after", ["-1", "abc", str(2**63)])
def test_feed_bad_cursor(server: LiveServer, admin: str, after: str) -> None:
    r = server.http.get("/auth/revocations", params={"after": after}, headers=bearer(admin))
    assert_problem(r, 422, "validation_error")


def test_a_token_issued_before_a_role_change_dies_even_within_the_same_millisecond(
    server: LiveServer, admin: str
) -> None:
    """A token issued at t0 + 0.6 ms, then a role change at t0 + 0.8 ms: the token carries
    the version before the change and must die, whatever the clocks say."""
    email = new_email()
    user_id = server.register(email)["user"]["id"]
    t0 = 1_700_001_000.0
    server.clock.set(t0)
    admin = server.login("admin@example.com")["access_token"]
    server.clock.set(t0 + 0.0006)
    victim = server.login(email)["access_token"]
    server.clock.set(t0 + 0.0008)
    r = server.http.patch(f"/admin/users/{user_id}", json={"roles": []}, headers=bearer(admin))
    assert r.status_code == 200, r.text
    server.clock.set(t0 + 0.002)  # past any rounding of iat
    assert_dead(server, victim)


def test_a_fresh_token_is_accepted_within_the_millisecond_it_was_issued(
    server: LiveServer,
) -> None:
    """Issued at t0 + 0.6 ms, used at t0 + 0.7 ms: not 'issued in the future'."""
    email = new_email()
    server.register(email)
    t0 = 1_700_001_000.0
    server.clock.set(t0 + 0.0006)
    token = server.login(email)["access_token"]
    server.clock.set(t0 + 0.0007)
    assert_alive(server, token)


@pytest.mark.anyio
async def test_feed_long_poll_wakes_on_a_new_event(server: LiveServer, admin: str) -> None:
    user = server.register(new_email())
    cursor = feed(server, admin)["cursor"]
    revocations = server.services.revocations

    def waiting() -> int:
        return len(getattr(getattr(revocations, "_changed", None), "_waiters", None) or ())

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        started = time.monotonic()
        poll = asyncio.create_task(
            client.get(
                "/auth/revocations",
                params={"after": cursor, "wait": 20},
                headers=bearer(admin),
            )
        )
        # Wait (a condition, not time passing) until the long poll is parked on the event.
        while not waiting():
            assert not poll.done(), poll.result().text
            assert time.monotonic() - started < 10, "the long poll never parked"
            await asyncio.sleep(0.01)
        r = await client.post("/auth/logout", headers=bearer(user["access_token"]))
        assert r.status_code == 204
        answer = await poll
    assert answer.status_code == 200, answer.text
    assert time.monotonic() - started < 10  # woken by the event, not by the 20 s timeout
    sid = claims_of(user["access_token"])["sid"]
    assert [(e["kind"], e["value"]) for e in answer.json()["events"]] == [("sid", sid)]


def test_feed_wait_is_capped(server: LiveServer, admin: str) -> None:
    r = server.http.get("/auth/revocations", params={"after": 0, "wait": 31}, headers=bearer(admin))
    assert_problem(r, 422, "validation_error")


def test_feed_cursor_never_goes_beyond_the_newest_event(server: LiveServer, admin: str) -> None:
    """A follower whose cursor is beyond every id (the database was restored, or is a new
    one) gets the newest id back, sees its cursor go back, and reads everything again,
    instead of skipping every event up to its old cursor."""
    user = server.register(new_email())
    server.http.post("/auth/logout", headers=bearer(user["access_token"]))
    newest = feed(server, admin)["cursor"]
    page = feed(server, admin, after=newest + 1000)
    assert page == {"cursor": newest, "events": []}
    assert feed(server, admin, after=newest) == {"cursor": newest, "events": []}
