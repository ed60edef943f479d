"""An account whose second factor is a passkey: a password-only session (an intruder's,
opened before the passkey) is ended when the first passkey is added, and no session that
did not use the passkey adds another factor; the anonymous ceremony is budgeted per IP."""

from __future__ import annotations

from _support.http import PASSWORD, assert_problem, bearer

from .conftest import Account, Server, SoftAuthenticator


def test_the_first_passkey_ends_the_other_sessions(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    intruder = server.login(account.email)
    added = account.add_passkey(authenticator)
    assert len(added["recovery_codes"]) == 10
    refused = server.http.post("/auth/refresh", json={"refresh_token": intruder["refresh_token"]})
    assert refused.status_code == 401, refused.text
    assert server.http.get("/auth/me", headers=bearer(intruder["access_token"])).status_code == 401
    assert server.http.get("/auth/me", headers=account.auth).status_code == 200


def test_a_passkey_only_account_adds_totp_only_from_a_session_that_used_the_passkey(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    account.add_passkey(authenticator)
    # The registration's session (password only), even with the password, may not.
    for body in (None, {"password": PASSWORD}):
        r = server.http.post("/auth/mfa/totp", headers=account.auth, json=body)
        assert_problem(r, 401, "insufficient_user_authentication")
        assert 'acr_values="mfa"' in r.headers["www-authenticate"]
    account.login_with(authenticator)
    r = server.http.post("/auth/mfa/totp", headers=account.auth)
    assert r.status_code == 200, r.text


def test_anonymous_passwordless_options_have_a_budget_per_ip(server: Server) -> None:
    codes = []
    for _ in range(301):
        codes.append(server.http.post("/auth/passkeys/login/options").status_code)
    assert codes[:300] == [200] * 300
    assert codes[300] == 429


def test_a_credential_id_over_1023_bytes_is_refused(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    """WebAuthn caps credential ids at 1023 bytes: a longer one is a 400 with its code on
    every backend, never a storage error."""
    options = account.post("/auth/passkeys/register/options").json()
    long_id = b"\x01" * 1024
    credential = authenticator.create(options, reuse=long_id)
    r = account.post("/auth/passkeys/register/verify", json={"credential": credential})
    assert_problem(r, 400, "passkey_registration_refused")
    assert server.http.get("/auth/passkeys", headers=account.auth).json() == []
