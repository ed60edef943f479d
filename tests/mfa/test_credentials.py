"""Who may turn a second factor on, and what turning it on does to the sessions that were
open before; an account with MFA changes its credentials only from an MFA session."""

from __future__ import annotations

import pytest

from _support.http import PASSWORD, assert_problem, bearer
from authgate.clock import FixedClock
from authgate.errors import InsufficientUserAuthentication
from authgate.guard.principal import Principal, Requirement
from lifecycle.conftest import eventually

from .conftest import Server, Smtp, code_at, enrol, enrolled, fresh_code, mfa_login

ADDRESS = "creds@example.com"
TEN_MINUTES = 600


def test_a_stale_session_cannot_turn_totp_on_without_the_password(server: Server) -> None:
    """A stolen access token of a login over ten minutes old cannot enrol a factor that
    would lock the owner out; with the password it can."""
    tokens = server.register(ADDRESS)
    server.clock.advance(TEN_MINUTES + 1)
    token = server.http.post(
        "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    ).json()["access_token"]
    r = server.http.post("/auth/mfa/totp", headers=bearer(token))
    body = assert_problem(r, 401, "insufficient_user_authentication")
    assert 'error="insufficient_user_authentication"' in r.headers["www-authenticate"]
    assert 'max_age="600"' in r.headers["www-authenticate"], body
    r = server.http.post("/auth/mfa/totp", headers=bearer(token), json={"password": "wrong!!"})
    assert_problem(r, 401, "invalid_credentials")
    r = server.http.post("/auth/mfa/totp", headers=bearer(token), json={"password": PASSWORD})
    assert r.status_code == 200, r.text


def test_an_enrolment_left_over_ten_minutes_starts_over(server: Server) -> None:
    tokens = server.register(ADDRESS)
    secret = enrol(server, tokens["access_token"])["secret"]
    server.clock.advance(TEN_MINUTES + 1)
    token = server.http.post(
        "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    ).json()["access_token"]
    r = server.http.post(
        "/auth/mfa/totp/confirm", headers=bearer(token), json={"code": code_at(server, secret)}
    )
    assert_problem(r, 404, "mfa_not_enabled")


def test_turning_totp_on_ends_the_other_sessions_and_mails_the_user(
    server: Server, smtp: Smtp
) -> None:
    """An intruder's password-only session, open before the owner turned MFA on, ends."""
    owner = server.register(ADDRESS)
    intruder = server.login(ADDRESS)
    secret = enrol(server, owner["access_token"])["secret"]
    r = server.http.post(
        "/auth/mfa/totp/confirm",
        headers=bearer(owner["access_token"]),
        json={"code": code_at(server, secret)},
    )
    assert r.status_code == 200, r.text
    refused = server.http.post("/auth/refresh", json={"refresh_token": intruder["refresh_token"]})
    assert refused.status_code == 401, refused.text
    assert server.http.get("/auth/me", headers=bearer(intruder["access_token"])).status_code == 401
    # The owner's own session goes on.
    assert server.http.get("/auth/me", headers=bearer(owner["access_token"])).status_code == 200
    mails = eventually(
        lambda: [m for m in smtp.mailbox.to(ADDRESS) if "two-step" in m["Subject"].lower()],
        what="the MFA notice",
    )
    assert "turned on" in str(mails[0].get_body(("plain",)).get_content())  # type: ignore[union-attr]


def test_an_mfa_account_changes_credentials_only_from_an_mfa_session(server: Server) -> None:
    account = enrolled(server, ADDRESS)
    # The session that enrolled logged in with the password only.
    for path, body in (
        ("/auth/password", {"current_password": PASSWORD, "new_password": "another 2026 phrase"}),
        ("/auth/email", {"new_email": "moved@example.com", "current_password": PASSWORD}),
    ):
        r = server.http.post(path, headers=bearer(account.access_token), json=body)
        assert_problem(r, 401, "insufficient_user_authentication")
        assert 'acr_values="mfa"' in r.headers["www-authenticate"]
    token = mfa_login(server, account)["access_token"]
    r = server.http.post(
        "/auth/email",
        headers=bearer(token),
        json={"new_email": "moved@example.com", "current_password": PASSWORD},
    )
    assert r.status_code == 202, r.text
    r = server.http.post(
        "/auth/password",
        headers=bearer(token),
        json={"current_password": PASSWORD, "new_password": "another 2026 phrase"},
    )
    assert r.status_code == 204, r.text
    assert fresh_code(server, account.secret)  # the factor is still there


def test_max_auth_age_refuses_an_auth_time_after_the_token_was_issued() -> None:
    """A signed auth_time in the future (a skewed or buggy issuer) is never a negative age
    that passes any max_auth_age."""
    now = 1_700_000_000
    requirement = Requirement.of((), max_auth_age=300, clock=FixedClock(float(now)))
    claims = {"sub": "u", "jti": "j", "exp": now + 60, "iat": now, "scope": ""}
    fine = Principal.from_claims({**claims, "auth_time": now - 10}, "t")
    requirement.check(fine)
    future = Principal.from_claims({**claims, "auth_time": now + 10**9}, "t")
    with pytest.raises(InsufficientUserAuthentication):
        requirement.check(future)
