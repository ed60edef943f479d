"""One regression test per MFA-bypass advisory class of issue 13, over HTTP against a real
server (and a real guard where the class is about one):

- a session cached before the second factor finished (better-auth GHSA-xg6x-h9c9-2m83);
- the wrong assurance level accepted (Kratos GHSA-wc43-73w7-x2f5);
- a reset that logs the user in past MFA (flask-security#258);
- TOTP codes that can be replayed (pyotp#61).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from _support.http import PASSWORD, assert_problem, bearer
from authgate.errors import InsufficientUserAuthentication, InvalidToken
from authgate.guard.principal import Requirement
from lifecycle.conftest import link_token

from .conftest import (
    Account,
    Server,
    Smtp,
    claims,
    code_at,
    enrolled,
    first_step,
    fresh_code,
    guard_for,
    live_sessions,
    me,
    mfa_login,
    second_step,
    session_count,
)

ADDRESS = "advisory@example.com"
PLAIN = "plain@example.com"  # an account without MFA
RACERS = 8


@pytest.fixture
def account(server: Server) -> Account:
    return enrolled(server, ADDRESS)


def race(server: Server, bodies: list[dict[str, str]]) -> list[httpx.Response]:
    """POST every body to /auth/login/mfa at once, each on a client of its own."""
    clients = [httpx.Client(base_url=server.url, timeout=30.0) for _ in bodies]
    try:
        with ThreadPoolExecutor(len(bodies)) as pool:
            futures = [
                pool.submit(c.post, "/auth/login/mfa", json=b)
                for c, b in zip(clients, bodies, strict=True)
            ]
            return [f.result() for f in futures]
    finally:
        for c in clients:
            c.close()


# --- GHSA-xg6x-h9c9-2m83: a session cached before the second factor finished ---------------


def test_no_session_or_refresh_token_exists_after_the_first_step(
    server: Server, account: Account
) -> None:
    before = session_count(server, account.user_id)
    listed = server.http.get("/auth/sessions", headers=bearer(account.access_token))
    assert listed.status_code == 200, listed.text
    sids = {s["sid"] if "sid" in s else s["id"] for s in listed.json()}

    r = server.http.post("/auth/login", json={"email": ADDRESS, "password": PASSWORD})
    assert r.status_code == 200, r.text
    assert "set-cookie" not in r.headers
    mfa_token = r.json()["mfa_token"]
    assert session_count(server, account.user_id) == before
    listed = server.http.get("/auth/sessions", headers=bearer(account.access_token))
    assert {s["sid"] if "sid" in s else s["id"] for s in listed.json()} == sids
    # Nothing the first step gave is a refresh token, and nothing opens without a factor.
    r = server.http.post("/auth/refresh", json={"refresh_token": mfa_token[:200]})
    assert r.status_code in (400, 401), r.text
    r = second_step(server, mfa_token, code="")
    assert r.status_code in (400, 401, 422), r.text
    r = second_step(server, mfa_token, code="000000")
    assert r.status_code == 401, r.text
    assert session_count(server, account.user_id) == before

    # Only the second step opens one, with both factors in its amr.
    r = second_step(server, mfa_token, code=fresh_code(server, account.secret))
    assert r.status_code == 200, r.text
    sessions, refresh = session_count(server, account.user_id)
    assert (sessions, refresh) == (before[0] + 1, before[1] + 1)


def test_racing_second_steps_of_one_mfa_token_open_one_session(
    server: Server, account: Account
) -> None:
    mfa_token = first_step(server, ADDRESS)["mfa_token"]
    before = session_count(server, account.user_id)
    codes = account.recovery_codes[:RACERS]
    answers = race(server, [{"mfa_token": mfa_token, "recovery_code": c} for c in codes])
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] + [401] * (RACERS - 1), [(r.status_code, r.text) for r in answers]
    assert session_count(server, account.user_id)[0] == before[0] + 1


def test_a_refused_racer_does_not_burn_its_recovery_code(server: Server, account: Account) -> None:
    """The losers of a race on one mfa_token are refused with invalid_mfa_token: their
    recovery codes were not the reason, opened nothing, and must stay usable."""
    mfa_token = first_step(server, ADDRESS)["mfa_token"]
    codes = account.recovery_codes[:RACERS]
    answers = race(server, [{"mfa_token": mfa_token, "recovery_code": c} for c in codes])
    losers = [c for c, r in zip(codes, answers, strict=True) if r.status_code != 200]
    assert len(losers) == RACERS - 1
    for r in answers:
        if r.status_code != 200:
            assert_problem(r, 401, "invalid_mfa_token")
    assert me(server, account.access_token)["mfa"]["recovery_codes_left"] == 10 - 1
    challenge = first_step(server, ADDRESS)
    r = second_step(server, challenge["mfa_token"], recovery_code=losers[0])
    assert r.status_code == 200, r.text


def test_a_login_refused_after_a_password_change_does_not_burn_its_recovery_code(
    server: Server, account: Account
) -> None:
    """Step 1, then the password changes, then step 2 with a recovery code: no session
    opens (right), and the recovery code must not be used up by that refused login."""
    # On an account with MFA, only a session that logged in with it changes the password.
    token = mfa_login(server, account)["access_token"]
    mfa_token = first_step(server, ADDRESS)["mfa_token"]
    new_password = "changed meanwhile 2026 passphrase"
    r = server.http.post(
        "/auth/password",
        headers=bearer(token),
        json={"current_password": PASSWORD, "new_password": new_password},
    )
    assert r.status_code == 204, r.text
    before = session_count(server, account.user_id)
    r = second_step(server, mfa_token, recovery_code=account.recovery_codes[0])
    assert r.status_code == 401, r.text
    assert session_count(server, account.user_id) == before
    assert me(server, token)["mfa"]["recovery_codes_left"] == 10


# --- GHSA-wc43-73w7-x2f5: the wrong assurance level accepted --------------------------------


def test_a_password_only_token_never_meets_an_mfa_requirement(
    server: Server, account: Account
) -> None:
    guard = guard_for(server)
    try:
        needs_mfa = Requirement.of((), mfa=True, clock=server.clock)
        server.register(PLAIN)
        plain = server.login(PLAIN)["access_token"]
        for token in (account.access_token, plain):
            principal = guard.verify_sync(token)
            assert principal.claims["amr"] == ["pwd"]
            with pytest.raises(InsufficientUserAuthentication):
                needs_mfa.check(principal)
        # A refresh of the password-only session never gains the factor.
        r = server.http.post("/auth/refresh", json={"refresh_token": account.refresh_token})
        assert r.status_code == 200, r.text
        refreshed = guard.verify_sync(r.json()["access_token"])
        assert "mfa" not in refreshed.claims["amr"]
        with pytest.raises(InsufficientUserAuthentication):
            needs_mfa.check(refreshed)
        # The mfa_token is not a token of any level at the guard.
        with pytest.raises(InvalidToken):
            guard.verify_sync(first_step(server, ADDRESS)["mfa_token"])
        # Both factors meet it.
        needs_mfa.check(guard.verify_sync(mfa_login(server, account)["access_token"]))
    finally:
        guard.close_sync()


# --- flask-security#258: a reset that logs the user in past MFA ------------------------------


def test_a_password_reset_leaves_the_second_factor_in_front_of_the_login(
    server: Server, smtp: Smtp, account: Account
) -> None:
    r = server.http.post("/auth/password/forgot", json={"email": ADDRESS})
    assert r.status_code == 202, r.text
    token = link_token(smtp.mailbox.wait(ADDRESS, "reset_password"), "reset_password")
    new_password = "after the reset 2026 passphrase"
    r = server.http.post(
        "/auth/password/reset", json={"token": token, "new_password": new_password}
    )
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert live_sessions(server, account.user_id) == 0  # every session ended
    assert server.http.get("/auth/me", headers=bearer(account.access_token)).status_code == 401
    challenge = first_step(server, ADDRESS, new_password)
    assert "totp" in challenge["methods"]
    r = second_step(server, challenge["mfa_token"], code=fresh_code(server, account.secret))
    assert r.status_code == 200, r.text


# --- pyotp#61: TOTP codes that can be replayed ------------------------------------------------


def test_one_code_raced_over_many_logins_opens_one_session(
    server: Server, account: Account
) -> None:
    tokens = [first_step(server, ADDRESS)["mfa_token"] for _ in range(RACERS)]
    code = fresh_code(server, account.secret)
    before = session_count(server, account.user_id)
    answers = race(server, [{"mfa_token": t, "code": code} for t in tokens])
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] + [401] * (RACERS - 1), [(r.status_code, r.text) for r in answers]
    for r in answers:
        if r.status_code == 401:
            assert_problem(r, 401, "invalid_mfa_code")
    assert session_count(server, account.user_id)[0] == before[0] + 1


def test_one_recovery_code_raced_over_many_logins_opens_one_session(
    server: Server, account: Account
) -> None:
    tokens = [first_step(server, ADDRESS)["mfa_token"] for _ in range(RACERS)]
    code = account.recovery_codes[3]
    before = session_count(server, account.user_id)
    answers = race(server, [{"mfa_token": t, "recovery_code": code} for t in tokens])
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] + [401] * (RACERS - 1), [(r.status_code, r.text) for r in answers]
    assert session_count(server, account.user_id)[0] == before[0] + 1
    assert me(server, account.access_token)["mfa"]["recovery_codes_left"] == 9
    # Neither the codes nor the secret are written to the audit log.
    audit = repr([server.audit(e) for e in ("mfa_failed", "recovery_code_used", "mfa_ok")])
    assert code not in audit
    assert code.replace("-", "") not in audit
    assert account.secret not in audit


def test_a_code_used_for_reauthentication_cannot_log_in(server: Server, account: Account) -> None:
    """The step accepted by a re-authentication (regenerating the recovery codes) is used
    up for the login too."""
    token = mfa_login(server, account)["access_token"]  # regenerating needs an MFA login
    code = fresh_code(server, account.secret)
    r = server.http.post(
        "/auth/mfa/recovery-codes",
        headers=bearer(token),
        json={"password": PASSWORD, "code": code},
    )
    assert r.status_code == 200, r.text
    assert "no-store" in r.headers["cache-control"]
    challenge = first_step(server, ADDRESS)
    r = second_step(server, challenge["mfa_token"], code=code)
    assert_problem(r, 401, "invalid_mfa_code")
    r = second_step(server, challenge["mfa_token"], code=code_at(server, account.secret, -1))
    assert_problem(r, 401, "invalid_mfa_code")


def test_the_confirming_code_cannot_log_in(server: Server) -> None:
    """The code that turned TOTP on is used up: the login right after needs a later one."""
    tokens = server.register(ADDRESS)
    r = server.http.post("/auth/mfa/totp", headers=bearer(tokens["access_token"]))
    secret = r.json()["secret"]
    code = code_at(server, secret)
    r = server.http.post(
        "/auth/mfa/totp/confirm", headers=bearer(tokens["access_token"]), json={"code": code}
    )
    assert r.status_code == 200, r.text
    challenge = first_step(server, ADDRESS)
    r = second_step(server, challenge["mfa_token"], code=code)
    assert_problem(r, 401, "invalid_mfa_code")
    assert claims(tokens["access_token"])["amr"] == ["pwd"]
