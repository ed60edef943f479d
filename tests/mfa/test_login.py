"""The two-step login over HTTP: the challenge, the second step, the claims it gives, the
time-step window, replays, recovery codes, the OTP throttle, and the mfa_token's limits."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from _support.http import PASSWORD, assert_problem, basic, bearer
from authgate.errors import InvalidToken

from .conftest import (
    INTROSPECT,
    STEP,
    Account,
    Server,
    Smtp,
    claims,
    code_at,
    enrolled,
    first_step,
    fresh_code,
    guard_for,
    header,
    me,
    mfa_login,
    running,
    second_step,
    session_count,
)

ADDRESS = "login@example.com"
OTHER = "other@example.com"


@pytest.fixture
def account(server: Server) -> Account:
    return enrolled(server, ADDRESS)


def test_the_first_step_answers_a_challenge_and_opens_no_session(
    server: Server, account: Account
) -> None:
    before = session_count(server, account.user_id)
    r = server.http.post("/auth/login", json={"email": ADDRESS, "password": PASSWORD})
    assert r.status_code == 200, r.text
    assert "no-store" in r.headers["cache-control"]
    body = r.json()
    assert body["mfa_required"] is True
    assert set(body["methods"]) == {"totp", "recovery_code"}
    assert isinstance(body["mfa_token"], str)
    assert body["expires_in"] == 300
    assert not {"access_token", "refresh_token", "token_type"} & set(body)
    assert session_count(server, account.user_id) == before
    assert header(body["mfa_token"])["typ"] != "at+jwt"
    assert claims(body["mfa_token"])["aud"] != claims(account.access_token)["aud"]
    # The wrong password is still a plain 401, and gives no mfa_token.
    r = server.http.post("/auth/login", json={"email": ADDRESS, "password": "wrong password!"})
    assert_problem(r, 401, "invalid_credentials")


def test_the_second_step_gives_a_pair_with_amr_and_auth_time_that_refresh_keeps(
    server: Server, account: Account
) -> None:
    challenge = first_step(server, ADDRESS)
    server.clock.advance(STEP)
    logged_in_at = int(server.clock.now())
    r = second_step(server, challenge["mfa_token"], code=code_at(server, account.secret))
    assert r.status_code == 200, r.text
    assert "no-store" in r.headers["cache-control"]
    pair = r.json()
    assert pair["token_type"].lower() == "bearer"
    access = claims(pair["access_token"])
    assert {"pwd", "otp", "mfa"} <= set(access["amr"])
    assert access["auth_time"] == logged_in_at
    assert access["sub"] == account.user_id
    assert me(server, pair["access_token"])["mfa"]["totp"] is True
    [row] = server.audit("mfa_ok")
    assert row["user_id"] == account.user_id

    # A refresh much later keeps both, unchanged.
    server.clock.advance(600)
    r = server.http.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert r.status_code == 200, r.text
    refreshed = claims(r.json()["access_token"])
    assert refreshed["amr"] == access["amr"]
    assert refreshed["auth_time"] == logged_in_at
    assert refreshed["iat"] > access["iat"]


def test_a_password_only_session_never_gains_mfa_by_refreshing(
    server: Server, account: Account
) -> None:
    """The registration's session was opened by the password alone, before TOTP was on."""
    access = claims(account.access_token)
    assert access["amr"] == ["pwd"]
    registered_at = access["auth_time"]
    refresh = account.refresh_token
    for _ in range(2):
        server.clock.advance(STEP)
        r = server.http.post("/auth/refresh", json={"refresh_token": refresh})
        assert r.status_code == 200, r.text
        refresh = r.json()["refresh_token"]
        got = claims(r.json()["access_token"])
        assert got["amr"] == ["pwd"]
        assert got["auth_time"] == registered_at


def test_codes_one_step_either_side_are_accepted_two_steps_away_refused(
    server: Server, account: Account
) -> None:
    server.clock.advance(10 * STEP)
    for steps in (-2, 2, -3, 3, -10):
        # A fresh login each time: an mfa_token dies after three wrong factors.
        challenge = first_step(server, ADDRESS)
        r = second_step(server, challenge["mfa_token"], code=code_at(server, account.secret, steps))
        assert_problem(r, 401, "invalid_mfa_code")
    challenge = first_step(server, ADDRESS)
    # In ascending order, so that each step is later than the last one accepted.
    for steps in (-1, 0, 1):
        r = second_step(server, challenge["mfa_token"], code=code_at(server, account.secret, steps))
        assert r.status_code == 200, (steps, r.text)
        challenge = first_step(server, ADDRESS)
    assert len(server.audit("mfa_failed")) == 5


@pytest.mark.parametrize("steps", [-1, 1])
def test_a_code_one_step_away_is_accepted_on_its_own(
    server: Server, account: Account, steps: int
) -> None:
    server.clock.advance(10 * STEP)
    challenge = first_step(server, ADDRESS)
    r = second_step(server, challenge["mfa_token"], code=code_at(server, account.secret, steps))
    assert r.status_code == 200, r.text


def test_a_replayed_code_is_refused(server: Server, account: Account) -> None:
    code = fresh_code(server, account.secret)
    first = first_step(server, ADDRESS)
    assert second_step(server, first["mfa_token"], code=code).status_code == 200
    again = first_step(server, ADDRESS)
    r = second_step(server, again["mfa_token"], code=code)
    assert_problem(r, 401, "invalid_mfa_code")
    # An earlier step's code, still inside the window, is refused too: its step is not
    # later than the last one accepted.
    r = second_step(server, again["mfa_token"], code=code_at(server, account.secret, -1))
    assert_problem(r, 401, "invalid_mfa_code")
    # Still within the window 20 s later: the same code is still refused.
    server.clock.advance(20)
    r = second_step(server, again["mfa_token"], code=code)
    assert_problem(r, 401, "invalid_mfa_code")
    # Three wrong factors, and that mfa_token is dead, even for a right code.
    r = second_step(server, again["mfa_token"], code=fresh_code(server, account.secret))
    assert_problem(r, 401, "invalid_mfa_token")
    # A new login with the next step's code works.
    r = second_step(
        server, first_step(server, ADDRESS)["mfa_token"], code=fresh_code(server, account.secret)
    )
    assert r.status_code == 200, r.text
    assert len(server.audit("mfa_failed")) == 3


def test_recovery_codes_are_single_use_and_counted_down(server: Server, account: Account) -> None:
    token = account.access_token
    assert me(server, token)["mfa"]["recovery_codes_left"] == 10
    used = account.recovery_codes[0]
    challenge = first_step(server, ADDRESS)
    # Typed loosely (upper case, without the hyphens): still the same code.
    r = second_step(server, challenge["mfa_token"], recovery_code=used.upper().replace("-", ""))
    assert r.status_code == 200, r.text
    amr = claims(r.json()["access_token"])["amr"]
    assert "pwd" in amr
    assert "mfa" in amr
    assert "otp" not in amr
    assert me(server, token)["mfa"]["recovery_codes_left"] == 9
    assert len(server.audit("recovery_code_used")) == 1

    again = first_step(server, ADDRESS)
    r = second_step(server, again["mfa_token"], recovery_code=used)
    assert_problem(r, 401, "invalid_mfa_code")
    r = second_step(server, again["mfa_token"], recovery_code="abcd-efgh-jkmn")
    assert_problem(r, 401, "invalid_mfa_code")
    assert me(server, token)["mfa"]["recovery_codes_left"] == 9
    for n, code in enumerate(account.recovery_codes[1:], start=1):
        challenge = first_step(server, ADDRESS)
        r = second_step(server, challenge["mfa_token"], recovery_code=code)
        assert r.status_code == 200, (n, r.text)
    assert me(server, token)["mfa"]["recovery_codes_left"] == 0
    assert first_step(server, ADDRESS)["methods"] == ["totp"]


def test_the_second_step_takes_exactly_one_factor(server: Server, account: Account) -> None:
    challenge = first_step(server, ADDRESS)
    r = second_step(server, challenge["mfa_token"])
    assert r.status_code in (400, 422), r.text
    r = second_step(
        server,
        challenge["mfa_token"],
        code=fresh_code(server, account.secret),
        recovery_code=account.recovery_codes[0],
    )
    assert r.status_code in (400, 422), r.text
    assert me(server, account.access_token)["mfa"]["recovery_codes_left"] == 10


def wrong_code(server: Server, account: Account) -> str:
    """A six-digit code that matches none of the steps in the window."""
    window = {code_at(server, account.secret, s) for s in (-1, 0, 1)}
    return next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in window)


def test_the_otp_lockout_is_apart_from_the_password_throttle(
    server: Server, account: Account
) -> None:
    """Nine wrong codes lock the second factor (429, even for the right code) while the
    password throttle is untouched; wrong passwords then do not lock the second factor."""
    server.clock.advance(STEP)
    bad = wrong_code(server, account)
    for _ in range(9):  # a login each time: an mfa_token dies after three wrong factors
        r = second_step(server, first_step(server, ADDRESS)["mfa_token"], code=bad)
        assert_problem(r, 401, "invalid_mfa_code")
    token = first_step(server, ADDRESS)["mfa_token"]
    r = second_step(server, token, code=code_at(server, account.secret))
    body = assert_problem(r, 429, "too_many_attempts")
    assert int(r.headers["retry-after"]) > 0, body
    r = second_step(server, token, recovery_code=account.recovery_codes[0])
    assert_problem(r, 429, "too_many_attempts")

    # The password throttle was not touched: eight wrong passwords and the right one
    # still answer a challenge (nine OTP failures on the same counter would lock it).
    for _ in range(8):
        r = server.http.post("/auth/login", json={"email": ADDRESS, "password": "wrong pw!!"})
        assert_problem(r, 401, "invalid_credentials")
    first_step(server, ADDRESS)

    # The lock ends with its window; then the right code works.
    server.clock.advance(901)
    fresh = first_step(server, ADDRESS)
    r = second_step(server, fresh["mfa_token"], code=code_at(server, account.secret))
    assert r.status_code == 200, r.text


def test_password_failures_do_not_lock_the_second_factor(server: Server, account: Account) -> None:
    challenge = first_step(server, ADDRESS)
    for _ in range(9):
        r = server.http.post("/auth/login", json={"email": ADDRESS, "password": "wrong pw!!"})
        assert_problem(r, 401, "invalid_credentials")
    r = server.http.post("/auth/login", json={"email": ADDRESS, "password": PASSWORD})
    assert_problem(r, 429, "too_many_attempts")
    # The mfa_token from before is finished with a code: the OTP throttle is its own.
    r = second_step(server, challenge["mfa_token"], code=fresh_code(server, account.secret))
    assert r.status_code == 200, r.text


def test_the_otp_throttle_is_per_account(server: Server, account: Account) -> None:
    other = enrolled(server, OTHER)
    server.clock.advance(STEP)
    bad = wrong_code(server, account)
    for _ in range(9):
        token = first_step(server, ADDRESS)["mfa_token"]
        assert second_step(server, token, code=bad).status_code == 401
    token = first_step(server, ADDRESS)["mfa_token"]
    assert second_step(server, token, code=code_at(server, account.secret)).status_code == 429
    theirs = first_step(server, OTHER)["mfa_token"]
    r = second_step(server, theirs, code=code_at(server, other.secret))
    assert r.status_code == 200, r.text


def test_the_mfa_token_is_refused_everywhere_else(server: Server, account: Account) -> None:
    mfa_token = first_step(server, ADDRESS)["mfa_token"]
    http = server.http
    r = http.get("/auth/me", headers=bearer(mfa_token))
    assert_problem(r, 401, "invalid_token")
    r = http.get("/auth/sessions", headers=bearer(mfa_token))
    assert_problem(r, 401, "invalid_token")
    r = http.post("/auth/logout", headers=bearer(mfa_token))
    assert_problem(r, 401, "invalid_token")
    r = http.post("/auth/mfa/totp", headers=bearer(mfa_token))
    assert_problem(r, 401, "invalid_token")
    r = http.post("/auth/refresh", json={"refresh_token": mfa_token})
    assert r.status_code in (400, 401, 422), r.text
    assert "access_token" not in r.text

    # RFC 7662 introspection by an authenticated client: not an active token.
    record, secret = server.call(server.services.clients.create("rs", [INTROSPECT]))
    assert secret is not None
    r = http.post(
        "/oauth2/introspect",
        data={"token": mfa_token},
        headers=basic(record.client_id, secret),
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"active": False}

    # A real guard refuses it too.
    guard = guard_for(server)
    try:
        with pytest.raises(InvalidToken):
            guard.verify_sync(mfa_token)
        guard.verify_sync(account.access_token)  # while it accepts an access token
    finally:
        guard.close_sync()

    # Conversely, an access token is not an mfa_token.
    r = second_step(server, account.access_token, code=fresh_code(server, account.secret))
    assert_problem(r, 401, "invalid_mfa_token")
    # After all that, the mfa_token still finishes its own login (nothing used it up).
    r = second_step(server, mfa_token, code=fresh_code(server, account.secret))
    assert r.status_code == 200, r.text


def test_the_mfa_token_works_once(server: Server, account: Account) -> None:
    mfa_token = first_step(server, ADDRESS)["mfa_token"]
    r = second_step(server, mfa_token, code=fresh_code(server, account.secret))
    assert r.status_code == 200, r.text
    before = session_count(server, account.user_id)
    r = second_step(server, mfa_token, code=fresh_code(server, account.secret))
    assert_problem(r, 401, "invalid_mfa_token")
    r = second_step(server, mfa_token, recovery_code=account.recovery_codes[0])
    assert_problem(r, 401, "invalid_mfa_token")
    assert session_count(server, account.user_id) == before
    assert me(server, account.access_token)["mfa"]["recovery_codes_left"] == 10


def test_an_expired_mfa_token_is_refused(server: Server, account: Account) -> None:
    mfa_token = first_step(server, ADDRESS)["mfa_token"]
    before = session_count(server, account.user_id)
    server.clock.advance(301)
    r = second_step(server, mfa_token, code=code_at(server, account.secret))
    assert_problem(r, 401, "invalid_mfa_token")
    r = second_step(server, mfa_token, recovery_code=account.recovery_codes[0])
    assert_problem(r, 401, "invalid_mfa_token")
    assert session_count(server, account.user_id) == before
    assert me(server, account.access_token)["mfa"]["recovery_codes_left"] == 10


def test_an_mfa_token_cannot_finish_another_users_login(server: Server, account: Account) -> None:
    other = enrolled(server, OTHER)
    before = (session_count(server, account.user_id), session_count(server, other.user_id))
    mine = first_step(server, ADDRESS)["mfa_token"]
    # Alice's mfa_token with Bob's code and recovery code: refused.
    r = second_step(server, mine, code=fresh_code(server, other.secret))
    assert_problem(r, 401, "invalid_mfa_code")
    r = second_step(server, mine, recovery_code=other.recovery_codes[0])
    assert_problem(r, 401, "invalid_mfa_code")
    # Alice's token with its subject rewritten to Bob: the signature no longer holds.
    head, _payload, sig = mine.split(".")
    data = claims(mine) | {"sub": other.user_id}
    forged_payload = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    forged = f"{head}.{forged_payload}.{sig}"
    r = second_step(server, forged, code=fresh_code(server, other.secret))
    assert_problem(r, 401, "invalid_mfa_token")
    # Unsigned (alg none) with Bob's subject: refused too.
    none_head = base64.urlsafe_b64encode(
        json.dumps({"alg": "none", "typ": header(mine)["typ"]}).encode()
    )
    unsigned = f"{none_head.rstrip(b'=').decode()}.{forged_payload}."
    r = second_step(server, unsigned, code=fresh_code(server, other.secret))
    assert_problem(r, 401, "invalid_mfa_token")
    assert (
        session_count(server, account.user_id),
        session_count(server, other.user_id),
    ) == before
    assert me(server, other.access_token)["mfa"]["recovery_codes_left"] == 10


def test_an_mfa_token_dies_with_a_password_change(server: Server, account: Account) -> None:
    token = mfa_login(server, account)["access_token"]  # a password change needs MFA
    mfa_token = first_step(server, ADDRESS)["mfa_token"]
    new_password = "a brand new passphrase 43"
    r = server.http.post(
        "/auth/password",
        headers=bearer(token),
        json={"current_password": PASSWORD, "new_password": new_password},
    )
    assert r.status_code == 204, r.text
    before = session_count(server, account.user_id)
    r = second_step(server, mfa_token, code=fresh_code(server, account.secret))
    assert r.status_code == 401, r.text
    assert "access_token" not in r.text
    assert session_count(server, account.user_id) == before
    # The new password still needs the second factor.
    challenge = first_step(server, ADDRESS, new_password)
    r = second_step(server, challenge["mfa_token"], code=fresh_code(server, account.secret))
    assert r.status_code == 200, r.text


def test_a_disabled_account_cannot_finish_its_login(server: Server, account: Account) -> None:
    admin = server.make_admin()
    mfa_token = first_step(server, ADDRESS)["mfa_token"]
    r = server.http.patch(
        f"/admin/users/{account.user_id}", headers=bearer(admin), json={"disabled": True}
    )
    assert r.status_code == 200, r.text
    before = session_count(server, account.user_id)
    r = second_step(server, mfa_token, code=fresh_code(server, account.secret))
    assert r.status_code in (401, 403), r.text
    assert "access_token" not in r.text
    assert session_count(server, account.user_id) == before


def test_the_oauth2_refresh_grant_keeps_amr_and_auth_time(server: Server, account: Account) -> None:
    pair = mfa_login(server, account)
    access = claims(pair["access_token"])
    server.clock.advance(120)
    r = server.http.post(
        "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": pair["refresh_token"],
            "client_id": "authgate",
        },
    )
    assert r.status_code == 200, r.text
    got = claims(r.json()["access_token"])
    assert (got["amr"], got["auth_time"]) == (access["amr"], access["auth_time"])

    r = server.http.post(
        "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": account.refresh_token,
            "client_id": "authgate",
        },
    )
    assert r.status_code == 200, r.text
    assert claims(r.json()["access_token"])["amr"] == ["pwd"]


def test_an_mfa_token_lives_just_under_five_minutes(server: Server, account: Account) -> None:
    mfa_token = first_step(server, ADDRESS)["mfa_token"]
    server.clock.advance(299)
    r = second_step(server, mfa_token, code=code_at(server, account.secret))
    assert r.status_code == 200, r.text


def test_racing_wrong_codes_never_get_past_the_otp_lock(server: Server, account: Account) -> None:
    server.clock.advance(STEP)
    mfa_token = first_step(server, ADDRESS)["mfa_token"]
    bad = wrong_code(server, account)
    clients = [httpx.Client(base_url=server.url, timeout=30.0) for _ in range(24)]
    try:
        with ThreadPoolExecutor(len(clients)) as pool:
            answers = list(
                pool.map(
                    lambda c: c.post("/auth/login/mfa", json={"mfa_token": mfa_token, "code": bad}),
                    clients,
                )
            )
    finally:
        for c in clients:
            c.close()
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {401, 429}, statuses
    codes = [r.json()["code"] for r in answers if r.status_code == 401]
    # A racer that loses the claim on the pending login checks no code at all.
    assert set(codes) <= {"invalid_mfa_code", "invalid_mfa_token"}, codes
    checked = codes.count("invalid_mfa_code")
    assert 1 <= checked <= 9, statuses
    assert len(server.audit("mfa_failed")) == checked
    # Then one wrong code after another (a login each: an mfa_token dies after three
    # wrong factors): the lock comes at the 10th failure in all.
    for _ in range(9 - checked):
        fresh = first_step(server, ADDRESS)["mfa_token"]
        assert_problem(second_step(server, fresh, code=bad), 401, "invalid_mfa_code")
    r = second_step(
        server, first_step(server, ADDRESS)["mfa_token"], code=code_at(server, account.secret)
    )
    assert_problem(r, 429, "too_many_attempts")


def test_even_a_guard_for_the_mfa_audience_refuses_the_mfa_token(
    server: Server, account: Account
) -> None:
    """The mfa_token's typ is its own: a guard configured (wrongly) with the mfa_token's
    audience still does not take it for an access token."""
    mfa_token = first_step(server, ADDRESS)["mfa_token"]
    assert set(claims(mfa_token)) <= {"iss", "sub", "aud", "iat", "exp", "jti", "nbf"}
    guard = guard_for(server, audience=claims(mfa_token)["aud"])
    try:
        with pytest.raises(InvalidToken):
            guard.verify_sync(mfa_token)
    finally:
        guard.close_sync()


def test_the_otp_throttle_has_a_per_ip_limit_apart_from_passwords(
    tmp_path: Path, smtp: Smtp
) -> None:
    with running(tmp_path, **smtp.env(), AUTHGATE_THROTTLE_IP_LIMIT="4") as server:  # type: ignore[arg-type]
        alice = enrolled(server, ADDRESS)
        bob = enrolled(server, OTHER)
        server.clock.advance(STEP)
        tokens = {a.email: first_step(server, a.email)["mfa_token"] for a in (alice, bob)}
        for a in (alice, bob, alice, bob):
            r = second_step(server, tokens[a.email], code=wrong_code(server, a))
            assert_problem(r, 401, "invalid_mfa_code")
        # Four failures from this address: the fifth check, for either account, is refused.
        for a in (alice, bob):
            r = second_step(server, tokens[a.email], code=code_at(server, a.secret))
            assert_problem(r, 429, "too_many_attempts")
        # Passwords from the same address are counted apart.
        assert first_step(server, ADDRESS)["mfa_required"] is True


def test_the_password_step_is_audited_once_before_the_challenge(
    server: Server, account: Account
) -> None:
    """``login_ok`` (the password) is in the chain once, before ``mfa_required``; the
    second step adds ``mfa_ok``, not another ``login_ok``."""
    with server.db() as db:
        [start] = db.execute("SELECT coalesce(max(id), 0) FROM audit_events").fetchone()
    mfa_login(server, account)
    with server.db() as db:
        rows = db.execute(
            "SELECT event FROM audit_events WHERE id > ? AND user_id = ? ORDER BY id",
            (start, account.user_id),
        ).fetchall()
    events = [event for (event,) in rows]
    assert events[:2] == ["login_ok", "mfa_required"], events
    assert events.count("login_ok") == 1, events
    assert "mfa_ok" in events, events
