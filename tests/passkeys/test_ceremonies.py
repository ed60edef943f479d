"""Passkeys end to end over HTTP with a software authenticator: registration, a second
factor through /auth/login -> /auth/login/mfa, a passwordless login, and the refusals
(a wrong origin, a wrong RP ID, a used challenge, a cloned counter)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from _support.http import assert_problem, bearer
from lifecycle.conftest import Server

from ._authenticator import CredentialExcluded, SoftAuthenticator, b64, unb64
from .conftest import RP_ID, Account

AMR_PASSWORD_AND_KEY = ["pwd", "hwk", "mfa"]


def claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (only read)."""
    out: dict[str, Any] = json.loads(unb64(token.split(".")[1]))
    return out


def mfa_options(server: Server, mfa_token: str) -> dict[str, Any]:
    answer = server.http.post("/auth/passkeys/login/options", json={"mfa_token": mfa_token})
    assert answer.status_code == 200, answer.text
    out: dict[str, Any] = answer.json()
    return out


def passwordless_options(server: Server) -> dict[str, Any]:
    answer = server.http.post("/auth/passkeys/login/options")
    assert answer.status_code == 200, answer.text
    out: dict[str, Any] = answer.json()
    return out


# --- registration ----------------------------------------------------------------------


def test_registration_options_and_a_passkey_added(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    options = account.post("/auth/passkeys/register/options").json()
    assert options["rp"] == {"id": RP_ID, "name": "authgate"}
    assert options["attestation"] == "none"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert options["excludeCredentials"] == []
    assert unb64(options["user"]["id"]).decode() == claims(account.token)["sub"]
    done = account.post(
        "/auth/passkeys/register/verify",
        json={"credential": authenticator.create(options), "name": "Laptop"},
    )
    assert done.status_code == 201, done.text
    body = done.json()
    assert body["passkey"]["name"] == "Laptop"
    assert body["passkey"]["backed_up"] is False
    # The first second factor of the account: ten recovery codes, shown once.
    assert len(body["recovery_codes"]) == 10
    me = server.http.get("/auth/me", headers=account.auth).json()
    assert me["mfa"] == {"totp": False, "passkeys": 1, "recovery_codes_left": 10}
    assert [e["detail"]["passkey"] for e in server.audit("passkey_added")] == [
        body["passkey"]["id"]
    ]
    # With a second factor on, a password-only session adds no passkey.
    assert_problem(
        account.post("/auth/passkeys/register/options"), 401, "insufficient_user_authentication"
    )
    # The next registration (from a session that used the passkey) excludes it, and does
    # not mint new codes.
    account.login_with(authenticator)
    again = account.post("/auth/passkeys/register/options").json()
    assert [c["id"] for c in again["excludeCredentials"]] == [
        b64(next(iter(authenticator.credentials)))
    ]
    with pytest.raises(CredentialExcluded):
        authenticator.create(again)
    second = account.add_passkey(SoftAuthenticator(origin=authenticator.origin, rp_id=RP_ID))
    assert second["recovery_codes"] is None
    assert second["passkey"]["name"] == "Passkey 2"


def test_a_registration_needs_a_recent_login(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    server.clock.advance(601)
    # A refresh keeps the login's auth_time: the new access token is of a stale login.
    refreshed = server.http.post("/auth/refresh", json={"refresh_token": account.refresh})
    assert refreshed.status_code == 200, refreshed.text
    account.token = refreshed.json()["access_token"]
    stale = account.post("/auth/passkeys/register/options")
    assert_problem(stale, 401, "insufficient_user_authentication")
    assert 'max_age="600"' in stale.headers["www-authenticate"]


def test_a_registration_needs_a_bearer(server: Server) -> None:
    assert_problem(
        server.http.post("/auth/passkeys/register/options"), 401, "authentication_required"
    )


def test_a_registration_challenge_works_once(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    options = account.post("/auth/passkeys/register/options").json()
    response = authenticator.create(options)
    first = account.post("/auth/passkeys/register/verify", json={"credential": response})
    assert first.status_code == 201, first.text
    replay = account.post("/auth/passkeys/register/verify", json={"credential": response})
    assert_problem(replay, 400, "passkey_registration_refused")


def test_a_registration_challenge_is_bound_to_its_user(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    other = Account(server)
    options = account.post("/auth/passkeys/register/options").json()
    stolen = other.post(
        "/auth/passkeys/register/verify", json={"credential": authenticator.create(options)}
    )
    assert_problem(stolen, 400, "passkey_registration_refused")
    assert server.http.get("/auth/passkeys", headers=other.auth).json() == []


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("origin", "https://evil.example.com"),
        ("origin", "http://app.example.com"),
        ("rp_id", "evil.example.com"),
        ("rp_id", "example.com"),
    ],
)
def test_a_registration_from_a_wrong_origin_or_rp_id_is_refused(
    server: Server, account: Account, authenticator: SoftAuthenticator, where: str, value: str
) -> None:
    options = account.post("/auth/passkeys/register/options").json()
    forged = authenticator.create(options, **{where: value})
    refused = account.post("/auth/passkeys/register/verify", json={"credential": forged})
    assert_problem(refused, 400, "passkey_registration_refused")
    assert server.http.get("/auth/passkeys", headers=account.auth).json() == []
    assert server.audit("passkey_registration_failed")


def test_a_registration_challenge_expires(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    options = account.post("/auth/passkeys/register/options").json()
    server.clock.advance(301)
    late = account.post(
        "/auth/passkeys/register/verify", json={"credential": authenticator.create(options)}
    )
    assert_problem(late, 400, "passkey_registration_refused")


# --- a second factor -------------------------------------------------------------------


def test_a_passkey_as_the_second_factor(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    account.add_passkey(authenticator)
    challenge = account.first_step()
    assert "access_token" not in challenge
    assert set(challenge["methods"]) == {"webauthn", "recovery_code"}
    options = mfa_options(server, challenge["mfa_token"])
    assert [c["id"] for c in options["allowCredentials"]] == [
        b64(next(iter(authenticator.credentials)))
    ]
    done = server.http.post(
        "/auth/login/mfa",
        json={"mfa_token": challenge["mfa_token"], "webauthn": authenticator.get(options)},
    )
    assert done.status_code == 200, done.text
    token = done.json()["access_token"]
    assert claims(token)["amr"] == AMR_PASSWORD_AND_KEY
    assert server.http.get("/auth/me", headers=bearer(token)).status_code == 200
    [used] = server.audit("passkey_used")
    assert used["detail"]["purpose"] == "second_factor"
    # The mfa_token is used up with it.
    again = server.http.post(
        "/auth/login/mfa",
        json={"mfa_token": challenge["mfa_token"], "webauthn": authenticator.get(options)},
    )
    assert again.status_code == 401


def test_a_second_factor_challenge_is_bound_to_its_login(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    account.add_passkey(authenticator)
    first, second = account.first_step(), account.first_step()
    response = authenticator.get(mfa_options(server, first["mfa_token"]))
    crossed = server.http.post(
        "/auth/login/mfa", json={"mfa_token": second["mfa_token"], "webauthn": response}
    )
    assert_problem(crossed, 401, "passkey_refused")
    # A passwordless challenge does not finish a second step either, nor the reverse.
    loose = authenticator.get(passwordless_options(server))
    assert_problem(
        server.http.post(
            "/auth/login/mfa", json={"mfa_token": second["mfa_token"], "webauthn": loose}
        ),
        401,
        "passkey_refused",
    )
    bound = authenticator.get(mfa_options(server, second["mfa_token"]))
    assert_problem(
        server.http.post("/auth/passkeys/login/verify", json={"credential": bound}),
        401,
        "passkey_refused",
    )


def test_a_used_second_factor_assertion_is_refused(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    account.add_passkey(authenticator)
    challenge = account.first_step()
    response = authenticator.get(mfa_options(server, challenge["mfa_token"]))
    ok = server.http.post(
        "/auth/login/mfa", json={"mfa_token": challenge["mfa_token"], "webauthn": response}
    )
    assert ok.status_code == 200, ok.text
    # Replayed with a fresh login: the challenge it answers is used up.
    fresh = account.first_step()
    replay = server.http.post(
        "/auth/login/mfa", json={"mfa_token": fresh["mfa_token"], "webauthn": response}
    )
    assert_problem(replay, 401, "passkey_refused")


def test_second_factor_options_need_a_live_mfa_token(server: Server) -> None:
    refused = server.http.post("/auth/passkeys/login/options", json={"mfa_token": "x.y.z"})
    assert_problem(refused, 401, "invalid_mfa_token")


@pytest.mark.parametrize(
    ("where", "value"), [("origin", "https://evil.example.com"), ("rp_id", "evil.example.com")]
)
def test_a_second_factor_from_a_wrong_origin_or_rp_id_is_refused(
    server: Server, account: Account, authenticator: SoftAuthenticator, where: str, value: str
) -> None:
    account.add_passkey(authenticator)
    challenge = account.first_step()
    forged = authenticator.get(mfa_options(server, challenge["mfa_token"]), **{where: value})
    refused = server.http.post(
        "/auth/login/mfa", json={"mfa_token": challenge["mfa_token"], "webauthn": forged}
    )
    assert_problem(refused, 401, "passkey_refused")
    assert server.audit("passkey_failed")


# --- passwordless ----------------------------------------------------------------------


def test_a_passwordless_login_with_user_verification_counts_as_mfa(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    account.add_passkey(authenticator)
    options = passwordless_options(server)
    assert options["allowCredentials"] == []
    assert options["rpId"] == RP_ID
    done = server.http.post(
        "/auth/passkeys/login/verify", json={"credential": authenticator.get(options)}
    )
    assert done.status_code == 200, done.text
    token = done.json()["access_token"]
    assert claims(token)["sub"] == claims(account.token)["sub"]
    assert claims(token)["amr"] == ["hwk", "user", "mfa"]
    assert [e["detail"]["amr"] for e in server.audit("passkey_login")] == [["hwk", "user", "mfa"]]


def test_a_passwordless_login_without_user_verification_is_refused(
    server: Server, account: Account
) -> None:
    """Possession alone (a security key without a PIN) is one factor: weaker than what the
    account asks of every other login, so no session opens; the options require user
    verification. The same key still serves as the second factor after the password."""
    key = SoftAuthenticator(origin="https://app.example.com", rp_id=RP_ID, verifies_user=False)
    account.add_passkey(key)
    options = passwordless_options(server)
    assert options["userVerification"] == "required"
    done = server.http.post("/auth/passkeys/login/verify", json={"credential": key.get(options)})
    assert_problem(done, 401, "passkey_refused")
    assert server.audit("passkey_failed")[-1]["detail"]["reason"] == "no_uv"


def test_a_synced_passkey_is_a_software_key(server: Server, account: Account) -> None:
    synced = SoftAuthenticator(origin="https://app.example.com", rp_id=RP_ID, synced=True)
    added = account.add_passkey(synced)
    assert added["passkey"]["backed_up"] is True
    done = server.http.post(
        "/auth/passkeys/login/verify", json={"credential": synced.get(passwordless_options(server))}
    )
    assert claims(done.json()["access_token"])["amr"] == ["swk", "user", "mfa"]


def test_a_used_passwordless_challenge_is_refused(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    account.add_passkey(authenticator)
    response = authenticator.get(passwordless_options(server))
    ok = server.http.post("/auth/passkeys/login/verify", json={"credential": response})
    assert ok.status_code == 200, ok.text
    replay = server.http.post("/auth/passkeys/login/verify", json={"credential": response})
    assert_problem(replay, 401, "passkey_refused")


def test_an_expired_passwordless_challenge_is_refused(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    account.add_passkey(authenticator)
    options = passwordless_options(server)
    server.clock.advance(301)
    late = server.http.post(
        "/auth/passkeys/login/verify", json={"credential": authenticator.get(options)}
    )
    assert_problem(late, 401, "passkey_refused")


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("origin", "https://evil.example.com"),
        ("origin", "https://app.example.com:8443"),
        ("rp_id", "evil.example.com"),
        ("rp_id", "example.com"),
    ],
)
def test_a_passwordless_login_from_a_wrong_origin_or_rp_id_is_refused(
    server: Server, account: Account, authenticator: SoftAuthenticator, where: str, value: str
) -> None:
    account.add_passkey(authenticator)
    forged = authenticator.get(passwordless_options(server), **{where: value})
    refused = server.http.post("/auth/passkeys/login/verify", json={"credential": forged})
    assert_problem(refused, 401, "passkey_refused")


def test_an_unknown_credential_and_a_disabled_account_are_refused(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    stranger = SoftAuthenticator(origin="https://app.example.com", rp_id=RP_ID)
    stranger.credentials = {}
    other = Account(server)
    other.add_passkey(stranger)
    account.add_passkey(authenticator)
    # A credential that the server forgets: refused.
    server.call(server.services.storage.delete_passkeys(claims(other.token)["sub"]))
    gone = stranger.get(passwordless_options(server))
    assert_problem(
        server.http.post("/auth/passkeys/login/verify", json={"credential": gone}),
        401,
        "passkey_refused",
    )
    server.call(server.services.directory.set_disabled(claims(account.token)["sub"], True))
    disabled = authenticator.get(passwordless_options(server))
    assert_problem(
        server.http.post("/auth/passkeys/login/verify", json={"credential": disabled}),
        401,
        "passkey_refused",
    )


# --- clones ----------------------------------------------------------------------------


def test_a_cloned_counter_is_refused_and_audited(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    account.add_passkey(authenticator)
    clone = authenticator.clone()
    first = server.http.post(
        "/auth/passkeys/login/verify",
        json={"credential": authenticator.get(passwordless_options(server))},
    )
    assert first.status_code == 200, first.text
    # The clone's counter is where the original's was: it does not increase.
    cloned = server.http.post(
        "/auth/passkeys/login/verify", json={"credential": clone.get(passwordless_options(server))}
    )
    assert_problem(cloned, 401, "passkey_cloned")
    [event] = server.audit("passkey_clone_suspected")
    assert (event["detail"]["stored"], event["detail"]["presented"]) == (1, 1)
    # The original goes on (counter 2); the clone, at 2 as well, fails as a second factor.
    again = server.http.post(
        "/auth/passkeys/login/verify",
        json={"credential": authenticator.get(passwordless_options(server))},
    )
    assert again.status_code == 200, again.text
    challenge = account.first_step()
    response = clone.get(mfa_options(server, challenge["mfa_token"]))
    assert_problem(
        server.http.post(
            "/auth/login/mfa", json={"mfa_token": challenge["mfa_token"], "webauthn": response}
        ),
        401,
        "passkey_cloned",
    )
    stored = server.http.get("/auth/passkeys", headers=account.auth).json()
    assert len(stored) == 1


def test_an_authenticator_without_a_counter_works(server: Server, account: Account) -> None:
    key = SoftAuthenticator(origin="https://app.example.com", rp_id=RP_ID, counting=False)
    account.add_passkey(key)
    for _ in range(2):
        done = server.http.post(
            "/auth/passkeys/login/verify",
            json={"credential": key.get(passwordless_options(server))},
        )
        assert done.status_code == 200, done.text


# --- more refusals ---------------------------------------------------------------------


def test_a_credential_registered_already_is_refused(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    account.add_passkey(authenticator)
    [taken] = authenticator.credentials
    other = Account(server)
    options = other.post("/auth/passkeys/register/options").json()
    again = other.post(
        "/auth/passkeys/register/verify",
        json={"credential": authenticator.create(options, reuse=taken)},
    )
    assert_problem(again, 409, "passkey_exists")


def test_registration_needs_a_verified_address_when_required(tmp_path: Any) -> None:
    from lifecycle.conftest import running

    with running(tmp_path, AUTHGATE_REQUIRE_VERIFIED_EMAIL="true") as live:
        user = live.call(
            live.services.accounts.create_user("unverified@example.com", "correct horse 9 staple")
        )
        pair = live.call(live.services.sessions.start(user, ip=None, user_agent=None))
        refused = live.http.post(
            "/auth/passkeys/register/options", headers=bearer(pair.access_token)
        )
        assert_problem(refused, 403, "email_not_verified")


def test_a_concurrent_replay_of_one_assertion_has_one_winner(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    account.add_passkey(authenticator)
    response = authenticator.get(passwordless_options(server))

    def post(_: int) -> int:
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            answer = client.post("/auth/passkeys/login/verify", json={"credential": response})
            return answer.status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(post, range(8)))
    assert statuses == [200] + [401] * 7


def test_second_factor_failures_count_against_the_otp_throttle(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    account.add_passkey(authenticator)
    statuses = []
    for _ in range(12):
        challenge = account.first_step()
        forged = authenticator.get(
            mfa_options(server, challenge["mfa_token"]), origin="https://evil.example.com"
        )
        statuses.append(
            server.http.post(
                "/auth/login/mfa", json={"mfa_token": challenge["mfa_token"], "webauthn": forged}
            ).status_code
        )
    assert statuses[0] == 401
    assert statuses[-1] == 429
