"""Every refusal of /oauth2 is the exact RFC 6749 section 5.2 error: status, ``error``
member, ``Cache-Control: no-store``, and ``WWW-Authenticate: Basic`` after a failed Basic
attempt. Revocation (RFC 7009) and introspection (RFC 7662) of dead tokens."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from _support.http import PASSWORD, basic, bearer, new_email
from authgate.jose import Key, encode

from .conftest import make_client
from .harness import FIRST_PARTY, LiveServer, assert_oauth_error

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CC = {"grant_type": "client_credentials"}


def assertion(
    key: Key, client_id: str, aud: str, *, iat: int | None = None, lifetime: int = 60, **extra: Any
) -> str:
    """An RFC 7523 client assertion, signed with the client's private key."""
    now = int(time.time()) if iat is None else iat
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "iat": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
        **extra,
    }
    return encode(claims, key)


def with_assertion(value: str, **form: str) -> dict[str, str]:
    return {**form, "client_assertion_type": ASSERTION_TYPE, "client_assertion": value}


def token(live: LiveServer, data: dict[str, str] | None = None, **kwargs: Any) -> Any:
    return live.http.post("/oauth2/token", data=data, **kwargs)


def fresh_user(live: LiveServer) -> dict[str, Any]:
    """A new user (no role) logged in through /auth/login: client ``authgate``."""
    return live.register(new_email())


# --- client authentication --------------------------------------------------------------


def test_success_is_no_store(live: LiveServer, secret_client: dict[str, Any]) -> None:
    r = token(live, CC, headers=basic(secret_client["client_id"], secret_client["client_secret"]))
    assert r.status_code == 200, r.text
    assert "no-store" in r.headers["cache-control"]
    assert r.headers["content-type"].split(";")[0] == "application/json"


def test_wrong_secret_basic(live: LiveServer, secret_client: dict[str, Any]) -> None:
    r = token(live, CC, headers=basic(secret_client["client_id"], "not-the-secret"))
    assert_oauth_error(r, 401, "invalid_client", basic_challenge=True)


def test_wrong_secret_post(live: LiveServer, secret_client: dict[str, Any]) -> None:
    data = CC | {"client_id": secret_client["client_id"], "client_secret": "not-the-secret"}
    assert_oauth_error(token(live, data), 401, "invalid_client")


def test_unknown_client_basic(live: LiveServer) -> None:
    r = token(live, CC, headers=basic("cli_nobody", "whatever"))
    assert_oauth_error(r, 401, "invalid_client", basic_challenge=True)


def test_malformed_basic_header(live: LiveServer) -> None:
    r = token(live, CC, headers={"Authorization": "Basic !!!not-base64!!!"})
    assert_oauth_error(r, 401, "invalid_client", basic_challenge=True)


def test_secret_for_a_private_key_jwt_client(live: LiveServer, jwt_client: dict[str, Any]) -> None:
    r = token(live, CC, headers=basic(jwt_client["client_id"], "anything"))
    assert_oauth_error(r, 401, "invalid_client", basic_challenge=True)


def test_client_credentials_without_client_auth(live: LiveServer) -> None:
    assert_oauth_error(token(live, CC), 401, "invalid_client")
    # The public first-party client cannot use client_credentials.
    assert_oauth_error(token(live, CC | {"client_id": FIRST_PARTY}), 401, "invalid_client")


def test_two_authentication_methods_at_once(
    live: LiveServer, secret_client: dict[str, Any]
) -> None:
    """RFC 6749 2.3: a client MUST NOT use more than one authentication method."""
    cid, secret = secret_client["client_id"], secret_client["client_secret"]
    data = CC | {"client_id": cid, "client_secret": secret}
    assert_oauth_error(token(live, data, headers=basic(cid, secret)), 400, "invalid_request")


# --- private_key_jwt ----------------------------------------------------------------------


def test_assertion_is_accepted_once_then_replay_refused(
    live: LiveServer, jwt_client: dict[str, Any], rsa_key: Key
) -> None:
    value = assertion(rsa_key, jwt_client["client_id"], live.token_endpoint)
    first = token(live, with_assertion(value, **CC))
    assert first.status_code == 200, first.text
    assert first.json()["scope"] == "posts:read"
    assert_oauth_error(token(live, with_assertion(value, **CC)), 401, "invalid_client")


def test_assertion_audience_may_be_the_issuer(
    live: LiveServer, jwt_client: dict[str, Any], rsa_key: Key
) -> None:
    value = assertion(rsa_key, jwt_client["client_id"], live.url)
    r = token(live, with_assertion(value, **CC, client_id=jwt_client["client_id"]))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "aud",
    [
        "https://elsewhere.example/oauth2/token",
        "http://127.0.0.1:1/oauth2/token",
        "authgate",
    ],
)
def test_assertion_with_the_wrong_audience(
    live: LiveServer, jwt_client: dict[str, Any], rsa_key: Key, aud: str
) -> None:
    value = assertion(rsa_key, jwt_client["client_id"], aud)
    assert_oauth_error(token(live, with_assertion(value, **CC)), 401, "invalid_client")


def test_expired_assertion(live: LiveServer, jwt_client: dict[str, Any], rsa_key: Key) -> None:
    value = assertion(
        rsa_key, jwt_client["client_id"], live.token_endpoint, iat=int(time.time()) - 120
    )
    assert_oauth_error(token(live, with_assertion(value, **CC)), 401, "invalid_client")


def test_assertion_signed_by_another_key(live: LiveServer, jwt_client: dict[str, Any]) -> None:
    other = Key.generate("RS256")
    value = assertion(other, jwt_client["client_id"], live.token_endpoint)
    assert_oauth_error(token(live, with_assertion(value, **CC)), 401, "invalid_client")


def test_assertion_naming_another_client(
    live: LiveServer, jwt_client: dict[str, Any], secret_client: dict[str, Any], rsa_key: Key
) -> None:
    """iss/sub of client A, client_id of client B in the form: refused."""
    value = assertion(rsa_key, jwt_client["client_id"], live.token_endpoint)
    data = with_assertion(value, **CC, client_id=secret_client["client_id"])
    assert_oauth_error(token(live, data), 401, "invalid_client")


def test_wrong_assertion_type(live: LiveServer, jwt_client: dict[str, Any], rsa_key: Key) -> None:
    value = assertion(rsa_key, jwt_client["client_id"], live.token_endpoint)
    data = CC | {"client_assertion_type": "urn:example:other", "client_assertion": value}
    assert_oauth_error(token(live, data), 401, "invalid_client")


# --- grants -------------------------------------------------------------------------------


def test_confidential_client_with_a_users_refresh_token(
    live: LiveServer, secret_client: dict[str, Any]
) -> None:
    """The refresh token was issued to ``authgate``: another client gets invalid_grant
    (RFC 6749 5.2: 400)."""
    user = fresh_user(live)
    data = {"grant_type": "refresh_token", "refresh_token": user["refresh_token"]}
    cid, secret = secret_client["client_id"], secret_client["client_secret"]
    assert_oauth_error(token(live, data, headers=basic(cid, secret)), 400, "invalid_grant")
    post = data | {"client_id": cid, "client_secret": secret}
    assert_oauth_error(token(live, post), 400, "invalid_grant")


def test_unknown_refresh_token(live: LiveServer) -> None:
    data = {"grant_type": "refresh_token", "refresh_token": "rt_" + "A" * 43}
    assert_oauth_error(token(live, data | {"client_id": FIRST_PARTY}), 400, "invalid_grant")


def test_refresh_token_grant_without_a_client(live: LiveServer) -> None:
    user = fresh_user(live)
    data = {"grant_type": "refresh_token", "refresh_token": user["refresh_token"]}
    assert_oauth_error(token(live, data), 401, "invalid_client")


@pytest.mark.parametrize("scope", ["posts:read posts:write", "posts:write", "authgate:admin"])
def test_widened_scope(live: LiveServer, secret_client: dict[str, Any], scope: str) -> None:
    cid, secret = secret_client["client_id"], secret_client["client_secret"]
    r = token(live, CC | {"scope": scope}, headers=basic(cid, secret))
    assert_oauth_error(r, 400, "invalid_scope")


def test_widened_scope_on_refresh(live: LiveServer) -> None:
    user = fresh_user(live)
    data = {
        "grant_type": "refresh_token",
        "refresh_token": user["refresh_token"],
        "client_id": FIRST_PARTY,
        "scope": "authgate:admin",
    }
    assert_oauth_error(token(live, data), 400, "invalid_scope")


@pytest.mark.parametrize(
    "grant_type",
    [
        "password",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "implicit",
    ],
)
def test_unsupported_grant_type(
    live: LiveServer, secret_client: dict[str, Any], grant_type: str
) -> None:
    cid, secret = secret_client["client_id"], secret_client["client_secret"]
    data = {"grant_type": grant_type, "username": "a@example.com", "password": PASSWORD}
    r = token(live, data, headers=basic(cid, secret))
    assert_oauth_error(r, 400, "unsupported_grant_type")


def test_authorization_code_is_not_a_service_clients_grant(
    live: LiveServer, secret_client: dict[str, Any]
) -> None:
    cid, secret = secret_client["client_id"], secret_client["client_secret"]
    data = {"grant_type": "authorization_code", "code": "x", "redirect_uri": "https://a/cb"}
    r = token(live, data, headers=basic(cid, secret))
    assert_oauth_error(r, 400, "unauthorized_client")


def test_missing_grant_type(live: LiveServer, secret_client: dict[str, Any]) -> None:
    cid, secret = secret_client["client_id"], secret_client["client_secret"]
    r = token(live, {"scope": "posts:read"}, headers=basic(cid, secret))
    assert_oauth_error(r, 400, "invalid_request")


@pytest.mark.parametrize(
    "body",
    [
        "grant_type=client_credentials&grant_type=client_credentials",
        "grant_type=client_credentials&scope=posts:read&scope=reports:read",
    ],
)
def test_repeated_parameters(live: LiveServer, secret_client: dict[str, Any], body: str) -> None:
    """RFC 6749 3.2: request parameters MUST NOT be included more than once."""
    cid, secret = secret_client["client_id"], secret_client["client_secret"]
    headers = basic(cid, secret) | {"Content-Type": "application/x-www-form-urlencoded"}
    r = live.http.post("/oauth2/token", content=body, headers=headers)
    assert_oauth_error(r, 400, "invalid_request")


def test_json_body_instead_of_a_form(live: LiveServer, secret_client: dict[str, Any]) -> None:
    cid, secret = secret_client["client_id"], secret_client["client_secret"]
    headers = basic(cid, secret) | {"Content-Type": "application/json"}
    r = live.http.post("/oauth2/token", content=json.dumps(CC), headers=headers)
    assert_oauth_error(r, 400, "invalid_request")


# --- introspection ----------------------------------------------------------------------


def test_introspection_without_client_auth(live: LiveServer, secret_client: dict[str, Any]) -> None:
    good = token(
        live, CC, headers=basic(secret_client["client_id"], secret_client["client_secret"])
    ).json()["access_token"]
    r = live.http.post("/oauth2/introspect", data={"token": good})
    assert_oauth_error(r, 401, "invalid_client")
    # Nor as the public first-party client.
    r = live.http.post("/oauth2/introspect", data={"token": good, "client_id": FIRST_PARTY})
    assert_oauth_error(r, 401, "invalid_client")
    # A wrong secret over Basic: the Basic challenge.
    r = live.http.post(
        "/oauth2/introspect",
        data={"token": good},
        headers=basic(secret_client["client_id"], "wrong"),
    )
    assert_oauth_error(r, 401, "invalid_client", basic_challenge=True)


def _introspect(live: LiveServer, client: dict[str, Any], value: str) -> Any:
    r = live.http.post(
        "/oauth2/introspect",
        data={"token": value},
        headers=basic(client["client_id"], client["client_secret"]),
    )
    assert r.status_code == 200, r.text
    assert "no-store" in r.headers["cache-control"]
    return r.json()


def test_introspection_of_garbage_is_exactly_inactive(
    live: LiveServer, secret_client: dict[str, Any], introspector: dict[str, Any], rsa_key: Key
) -> None:
    forged = encode(
        {
            "iss": live.url,
            "aud": "authgate",
            "sub": secret_client["client_id"],
            "client_id": secret_client["client_id"],
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
            "jti": "x",
            "scope": "posts:read",
        },
        rsa_key,
        typ="at+jwt",
    )
    for value in ("garbage", "a.b.c", "rt_" + "A" * 43, "rt_short", forged, "x" * 2000):
        assert _introspect(live, introspector, value) == {"active": False}, value


def test_introspection_of_an_expired_token(own_server: LiveServer) -> None:
    client = make_client(own_server, ["posts:read", "authgate:introspect"])
    access = token(own_server, CC, headers=basic(client["client_id"], client["client_secret"]))
    assert access.status_code == 200, access.text
    value = access.json()["access_token"]
    assert _introspect(own_server, client, value)["active"] is True
    own_server.clock.advance(601)
    assert _introspect(own_server, client, value) == {"active": False}


def test_introspection_of_an_expired_refresh_token(own_server: LiveServer) -> None:
    client = make_client(own_server, ["posts:read", "authgate:introspect"])
    user = own_server.register(new_email())
    own_server.clock.advance(14 * 86400 + 1)  # past the refresh idle lifetime
    assert _introspect(own_server, client, user["refresh_token"]) == {"active": False}
    assert _introspect(own_server, client, user["access_token"]) == {"active": False}


# --- revocation ---------------------------------------------------------------------------


def test_revoke_of_an_unknown_token_is_200(live: LiveServer, secret_client: dict[str, Any]) -> None:
    headers = basic(secret_client["client_id"], secret_client["client_secret"])
    for value in ("garbage", "rt_" + "B" * 43, "a.b.c"):
        r = live.http.post("/oauth2/revoke", data={"token": value}, headers=headers)
        assert r.status_code == 200, (value, r.text)
        assert "no-store" in r.headers["cache-control"]
    r = live.http.post(
        "/oauth2/revoke",
        data={"token": "garbage", "token_type_hint": "refresh_token", "client_id": FIRST_PARTY},
    )
    assert r.status_code == 200, r.text


def test_revoke_with_a_wrong_secret(live: LiveServer, secret_client: dict[str, Any]) -> None:
    r = live.http.post(
        "/oauth2/revoke",
        data={"token": "garbage"},
        headers=basic(secret_client["client_id"], "wrong"),
    )
    assert_oauth_error(r, 401, "invalid_client", basic_challenge=True)


def test_revoked_refresh_token_kills_the_family(
    live: LiveServer, introspector: dict[str, Any]
) -> None:
    user = fresh_user(live)
    rotated = token(
        live,
        {
            "grant_type": "refresh_token",
            "refresh_token": user["refresh_token"],
            "client_id": FIRST_PARTY,
        },
    )
    assert rotated.status_code == 200, rotated.text
    pair = rotated.json()
    r = live.http.post(
        "/oauth2/revoke",
        data={
            "token": pair["refresh_token"],
            "token_type_hint": "refresh_token",
            "client_id": FIRST_PARTY,
        },
    )
    assert r.status_code == 200, r.text
    for at in (user["access_token"], pair["access_token"]):
        assert live.http.get("/auth/me", headers=bearer(at)).status_code == 401
        assert _introspect(live, introspector, at) == {"active": False}
    for rt in (user["refresh_token"], pair["refresh_token"]):
        assert _introspect(live, introspector, rt) == {"active": False}
        r = live.http.post("/auth/refresh", json={"refresh_token": rt})
        assert r.status_code == 401, r.text
        assert r.json()["code"] == "invalid_grant"
    for rt in (user["refresh_token"], pair["refresh_token"]):
        data = {"grant_type": "refresh_token", "refresh_token": rt, "client_id": FIRST_PARTY}
        assert_oauth_error(token(live, data), 400, "invalid_grant")


def test_revoked_access_token(live: LiveServer, introspector: dict[str, Any]) -> None:
    user = fresh_user(live)
    access = user["access_token"]
    assert live.http.get("/auth/me", headers=bearer(access)).status_code == 200
    assert _introspect(live, introspector, access)["active"] is True
    r = live.http.post(
        "/oauth2/revoke",
        data={"token": access, "token_type_hint": "access_token", "client_id": FIRST_PARTY},
    )
    assert r.status_code == 200, r.text
    assert _introspect(live, introspector, access) == {"active": False}
    me = live.http.get("/auth/me", headers=bearer(access))
    assert me.status_code == 401
    assert 'error="invalid_token"' in me.headers["www-authenticate"]
    # Only that token: the session goes on with a refreshed one.
    data = {"grant_type": "refresh_token", "refresh_token": user["refresh_token"]}
    fresh = token(live, data | {"client_id": FIRST_PARTY})
    assert fresh.status_code == 200, fresh.text
    assert (
        live.http.get("/auth/me", headers=bearer(fresh.json()["access_token"])).status_code == 200
    )


def test_a_client_cannot_revoke_another_clients_token(
    live: LiveServer, secret_client: dict[str, Any]
) -> None:
    """RFC 7009 2.1: the token must have been issued to the revoking client. The answer is
    200 (nothing to say), and the user's tokens live on."""
    user = fresh_user(live)
    headers = basic(secret_client["client_id"], secret_client["client_secret"])
    for value in (user["refresh_token"], user["access_token"]):
        r = live.http.post("/oauth2/revoke", data={"token": value}, headers=headers)
        assert r.status_code == 200, r.text
    assert live.http.get("/auth/me", headers=bearer(user["access_token"])).status_code == 200
    data = {"grant_type": "refresh_token", "client_id": FIRST_PARTY}
    assert token(live, data | {"refresh_token": user["refresh_token"]}).status_code == 200
