"""The refresh life cycle: rotation, reuse detection, the grace window, idle and absolute expiry."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from _support.http import assert_problem, bearer, new_email
from _support.tokens import claims_of

from .conftest import ServerFactory
from .server import LiveServer


def refresh(live: LiveServer, token: str) -> Any:
    return live.http.post("/auth/refresh", json={"refresh_token": token})


def ok_refresh(live: LiveServer, token: str) -> dict[str, Any]:
    r = refresh(live, token)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body: dict[str, Any] = r.json()
    return body


def family(live: LiveServer, sid: str) -> list[tuple[str, str | None, float | None, str | None]]:
    with live.db() as db:
        rows = db.execute(
            "SELECT digest, parent, rotated_at, successor FROM refresh_tokens WHERE sid = ?"
            " ORDER BY created_at, rotated_at IS NULL",
            (sid,),
        ).fetchall()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def session_revoked(live: LiveServer, sid: str) -> bool:
    with live.db() as db:
        (revoked_at,) = db.execute(
            "SELECT revoked_at FROM sessions WHERE sid = ?", (sid,)
        ).fetchone()
    return revoked_at is not None


def audit(live: LiveServer, admin: str, **params: str) -> list[dict[str, Any]]:
    r = live.http.get("/admin/audit", params=params, headers=bearer(admin))
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()
    return rows


def test_rotation_gives_a_new_pair_each_time(server: LiveServer) -> None:
    first = server.register(new_email())
    sid = claims_of(first["access_token"])["sid"]
    seen = {first["refresh_token"]}
    current = first
    for _ in range(3):
        server.clock.advance(30)
        nxt = ok_refresh(server, current["refresh_token"])
        assert nxt["refresh_token"] not in seen
        assert nxt["token_type"] == "Bearer"
        assert nxt["expires_in"] == 600
        claims = claims_of(nxt["access_token"])
        assert claims["sid"] == sid  # the same session (refresh family)
        assert claims["iat"] == server.clock.now()
        me = server.http.get("/auth/me", headers=bearer(nxt["access_token"]))
        assert me.status_code == 200
        seen.add(nxt["refresh_token"])
        current = nxt
    rows = family(server, sid)
    assert len(rows) == 4
    assert sum(1 for r in rows if r[2] is None) == 1  # one live head
    # A chain: each token's successor is the next one's digest, its parent the previous.
    for parent, child in itertools.pairwise(rows):
        assert parent[3] == child[0]
        assert child[1] == parent[0]


@pytest.mark.parametrize(
    "token",
    [
        "",
        "rt_",
        "rt_" + "A" * 43 + "x",
        "xx_" + "A" * 43,
        "rt_" + "A" * 43,  # the right shape, but unknown
    ],
)
def test_unknown_or_malformed_refresh_token(shared: LiveServer, token: str) -> None:
    r = refresh(shared, token)
    assert_problem(r, 401, "invalid_grant")


def test_access_token_is_not_a_refresh_token(shared: LiveServer) -> None:
    body = shared.register(new_email())
    r = refresh(shared, body["access_token"])
    assert r.status_code in (401, 422), r.text
    assert r.json()["code"] in ("invalid_grant", "validation_error")


def test_reuse_outside_grace_kills_the_family(server: LiveServer) -> None:
    admin = server.make_admin()
    first = server.register(new_email())
    sid = claims_of(first["access_token"])["sid"]
    second = ok_refresh(server, first["refresh_token"])
    server.clock.advance(server.settings.refresh_grace + 1)
    third = ok_refresh(server, second["refresh_token"])

    # The attacker (or the victim) replays the first, long-rotated token.
    r = refresh(server, first["refresh_token"])
    assert_problem(r, 401, "invalid_grant")
    assert session_revoked(server, sid)

    # The current head is dead too, and so is every access token of the session.
    assert_problem(refresh(server, third["refresh_token"]), 401, "invalid_grant")
    assert_problem(refresh(server, second["refresh_token"]), 401, "invalid_grant")
    for body in (first, second, third):
        me = server.http.get("/auth/me", headers=bearer(body["access_token"]))
        assert_problem(me, 401, "invalid_token")
        assert 'error="invalid_token"' in me.headers["www-authenticate"]

    events = audit(server, admin, event="refresh_reuse")
    assert len(events) == 1
    assert events[0]["sid"] == sid
    assert events[0]["user_id"] == first["user"]["id"]
    assert events[0]["ip"] == "127.0.0.1"

    feed = server.http.get("/auth/revocations", headers=bearer(admin)).json()
    assert {"kind": "sid", "value": sid} in [
        {"kind": e["kind"], "value": e["value"]} for e in feed["events"]
    ]
    metrics = server.http.get("/metrics").text
    assert "authgate_refresh_reuse_detected_total 1.0" in metrics


def test_reuse_of_the_immediate_predecessor_outside_grace(server: LiveServer) -> None:
    first = server.register(new_email())
    sid = claims_of(first["access_token"])["sid"]
    second = ok_refresh(server, first["refresh_token"])
    server.clock.advance(server.settings.refresh_grace + 0.5)
    assert_problem(refresh(server, first["refresh_token"]), 401, "invalid_grant")
    assert session_revoked(server, sid)
    assert_problem(refresh(server, second["refresh_token"]), 401, "invalid_grant")


def test_grace_window_replay_returns_the_same_successor(server: LiveServer) -> None:
    first = server.register(new_email())
    sid = claims_of(first["access_token"])["sid"]
    second = ok_refresh(server, first["refresh_token"])
    server.clock.advance(server.settings.refresh_grace - 1)  # still inside the window
    replay = ok_refresh(server, first["refresh_token"])
    assert replay["refresh_token"] == second["refresh_token"]
    assert replay["access_token"] != second["access_token"]
    assert claims_of(replay["access_token"])["sid"] == sid
    assert not session_revoked(server, sid)
    # No fork: still two tokens in the family, and the successor goes on working.
    assert len(family(server, sid)) == 2
    third = ok_refresh(server, second["refresh_token"])
    assert third["refresh_token"] not in (first["refresh_token"], second["refresh_token"])
    me = server.http.get("/auth/me", headers=bearer(third["access_token"]))
    assert me.status_code == 200


def test_grace_window_older_token_kills_the_family(server: LiveServer) -> None:
    first = server.register(new_email())
    sid = claims_of(first["access_token"])["sid"]
    second = ok_refresh(server, first["refresh_token"])
    server.clock.advance(1)
    third = ok_refresh(server, second["refresh_token"])
    server.clock.advance(1)  # the first was rotated 2 s ago: inside the window, but not
    # the immediate predecessor of the head
    assert_problem(refresh(server, first["refresh_token"]), 401, "invalid_grant")
    assert session_revoked(server, sid)
    assert_problem(refresh(server, third["refresh_token"]), 401, "invalid_grant")


def test_grace_window_replay_after_the_successor_was_used_kills_the_family(
    server: LiveServer,
) -> None:
    first = server.register(new_email())
    sid = claims_of(first["access_token"])["sid"]
    second = ok_refresh(server, first["refresh_token"])
    ok_refresh(server, second["refresh_token"])
    # second is now the immediate predecessor of the head, rotated 0 s ago: a replay is
    # granted; first is two back and kills the family.
    replay = ok_refresh(server, second["refresh_token"])
    assert not session_revoked(server, sid)
    assert_problem(refresh(server, first["refresh_token"]), 401, "invalid_grant")
    assert session_revoked(server, sid)
    assert_problem(refresh(server, replay["refresh_token"]), 401, "invalid_grant")


def test_grace_window_shared_chain_a_second_replay_is_reuse(server: LiveServer) -> None:
    """The grace window used to hand the same successor to anyone who replayed the
    just-rotated token, any number of times: an attacker and the victim then shared one
    chain. The replay is allowed once; the next one is a reuse and ends the family."""
    first = server.register(new_email())
    sid = claims_of(first["access_token"])["sid"]
    second = ok_refresh(server, first["refresh_token"])
    replay = ok_refresh(server, first["refresh_token"])
    assert replay["refresh_token"] == second["refresh_token"]
    assert not session_revoked(server, sid)
    assert_problem(refresh(server, first["refresh_token"]), 401, "invalid_grant")
    assert session_revoked(server, sid)
    assert_problem(refresh(server, second["refresh_token"]), 401, "invalid_grant")


def test_grace_window_shared_chain_one_replay_per_family(server: LiveServer) -> None:
    """One replay per family, not per token: a thief who replays each rotated token a
    second after its owner rotates it gets the first one shared, then is reuse."""
    first = server.register(new_email())
    sid = claims_of(first["access_token"])["sid"]
    second = ok_refresh(server, first["refresh_token"])  # the owner rotates
    server.clock.advance(1)
    shared = ok_refresh(server, first["refresh_token"])  # the thief's one replay
    assert shared["refresh_token"] == second["refresh_token"]
    third = ok_refresh(server, second["refresh_token"])  # the owner rotates again
    server.clock.advance(1)
    assert_problem(refresh(server, second["refresh_token"]), 401, "invalid_grant")
    assert session_revoked(server, sid)
    assert_problem(refresh(server, third["refresh_token"]), 401, "invalid_grant")


def test_grace_window_shared_chain_replay_from_another_client_is_refused(
    server: LiveServer,
) -> None:
    """A replay is bound to the session's client: a user's refresh token presented by
    another (authenticated) client gets nothing, inside the window or not."""
    admin = server.make_admin(new_email())
    made = server.http.post(
        "/admin/clients",
        json={"name": "other", "scopes": ["authgate:revocations"]},
        headers=bearer(admin),
    )
    assert made.status_code == 201, made.text
    other = made.json()
    first = server.register(new_email())
    sid = claims_of(first["access_token"])["sid"]
    second = ok_refresh(server, first["refresh_token"])
    r = server.http.post(
        "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": other["client_id"],
            "client_secret": other["client_secret"],
        },
    )
    assert r.status_code == 400, r.text
    assert r.json() == {"error": "invalid_grant"}
    # The session's own client still has its one replay, and the chain goes on.
    replay = ok_refresh(server, first["refresh_token"])
    assert replay["refresh_token"] == second["refresh_token"]
    assert not session_revoked(server, sid)


def test_grace_zero_turns_the_window_off(make_server: ServerFactory) -> None:
    live = make_server({"AUTHGATE_REFRESH_GRACE": "0"})
    first = live.register(new_email())
    sid = claims_of(first["access_token"])["sid"]
    second = ok_refresh(live, first["refresh_token"])
    assert_problem(refresh(live, first["refresh_token"]), 401, "invalid_grant")
    assert session_revoked(live, sid)
    assert_problem(refresh(live, second["refresh_token"]), 401, "invalid_grant")


IDLE_ENV = {"AUTHGATE_REFRESH_IDLE_TTL": "100", "AUTHGATE_REFRESH_MAX_TTL": "250"}


def test_idle_expiry(make_server: ServerFactory) -> None:
    live = make_server(IDLE_ENV)
    first = live.register(new_email())
    assert first["refresh_expires_in"] == 100
    live.clock.advance(99)
    second = ok_refresh(live, first["refresh_token"])
    assert second["refresh_expires_in"] == 100
    live.clock.advance(100)  # exactly at the idle deadline
    assert_problem(refresh(live, second["refresh_token"]), 401, "invalid_grant")


def test_absolute_expiry(make_server: ServerFactory) -> None:
    live = make_server(IDLE_ENV)
    body = live.register(new_email())
    # Refresh every 60 s: the idle deadline is min(now + 100, 250), the absolute end.
    for expected_left in (100, 100, 70):  # at t = 60, 120, 180
        live.clock.advance(60)
        body = ok_refresh(live, body["refresh_token"])
        assert body["refresh_expires_in"] == expected_left
    live.clock.advance(69)  # t = 249, still alive
    body = ok_refresh(live, body["refresh_token"])
    assert body["refresh_expires_in"] == 1
    live.clock.advance(1)  # t = 250: the session's absolute end
    assert_problem(refresh(live, body["refresh_token"]), 401, "invalid_grant")


def test_refresh_of_a_logged_out_session(server: LiveServer) -> None:
    body = server.register(new_email())
    r = server.http.post("/auth/logout", headers=bearer(body["access_token"]))
    assert r.status_code == 204
    assert_problem(refresh(server, body["refresh_token"]), 401, "invalid_grant")


def test_refresh_of_a_disabled_user(server: LiveServer) -> None:
    body = server.register(new_email())
    # Disabling through the store only (no session end), to check refresh re-reads the user.
    user_id = body["user"]["id"]
    server.call(server.services.directory.set_disabled(user_id, True))
    assert_problem(refresh(server, body["refresh_token"]), 401, "invalid_grant")
