"""/oauth2 (token, revoke, introspect), /admin/clients, and the feed read by a client."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from _support.http import TOKEN_FIELDS, assert_problem, basic, bearer, new_email
from _support.tokens import claims_of, header_of
from authgate.jose import ClaimsPolicy, Key, KeySet, decode, encode

from .server import LiveServer

FEED_SCOPE = "authgate:revocations"


@pytest.fixture
def admin(server: LiveServer) -> str:
    token = server.make_admin()
    server.call(server.services.directory.put_role("blog", ["posts:read", "posts:write"]))
    return token


def create_client(live: LiveServer, admin: str, scopes: list[str], **extra: Any) -> dict[str, Any]:
    r = live.http.post(
        "/admin/clients",
        json={"name": "svc", "scopes": scopes, **extra},
        headers=bearer(admin),
    )
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    body: dict[str, Any] = r.json()
    return body


def assert_oauth_error(r: httpx.Response, status: int, error: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].split(";")[0] == "application/json"
    assert r.json() == {"error": error}
    assert r.headers["cache-control"] == "no-store"


def token(live: LiveServer, data: dict[str, str], **kw: Any) -> httpx.Response:
    return live.http.post("/oauth2/token", data=data, **kw)


# --- /admin/clients ------------------------------------------------------------------------


def test_client_crud(server: LiveServer, admin: str) -> None:
    created = create_client(server, admin, [FEED_SCOPE, "posts:read"])
    assert created["client_id"].startswith("cli_")
    assert created["scopes"] == [FEED_SCOPE, "posts:read"]
    assert created["auth_method"] == "client_secret_basic"
    assert created["revoked_at"] is None
    secret = created["client_secret"]
    assert len(secret) >= 40

    r = server.http.get("/admin/clients", headers=bearer(admin))
    assert r.status_code == 200
    (listed,) = r.json()
    assert "client_secret" not in listed
    assert secret not in r.text  # shown once, never again
    assert listed["client_id"] == created["client_id"]

    assert (
        server.http.delete(
            f"/admin/clients/{created['client_id']}", headers=bearer(admin)
        ).status_code
        == 204
    )
    (listed,) = server.http.get("/admin/clients", headers=bearer(admin)).json()
    assert listed["revoked_at"] == server.clock.now()
    r = token(
        server, {"grant_type": "client_credentials"}, headers=basic(created["client_id"], secret)
    )
    assert_oauth_error(r, 401, "invalid_client")
    r = server.http.delete("/admin/clients/cli_ghost", headers=bearer(admin))
    assert_problem(r, 404, "not_found")


def test_client_creation_errors(server: LiveServer, admin: str) -> None:
    r = server.http.post(
        "/admin/clients", json={"name": "x", "scopes": ["not:defined"]}, headers=bearer(admin)
    )
    assert_problem(r, 400, "invalid_scope")
    r = server.http.post(
        "/admin/clients", json={"name": "x", "scopes": [], "secret": "mine"}, headers=bearer(admin)
    )
    assert_problem(r, 422, "validation_error")
    private = Key.generate("ES256").to_jwk(private=True)
    r = server.http.post(
        "/admin/clients", json={"name": "x", "scopes": [], "jwk": private}, headers=bearer(admin)
    )
    assert_problem(r, 400, "invalid_request")
    user = server.register(new_email())
    r = server.http.post(
        "/admin/clients", json={"name": "x", "scopes": []}, headers=bearer(user["access_token"])
    )
    assert_problem(r, 403, "insufficient_scope")
    assert server.http.get("/admin/clients", headers=bearer(admin)).json() == []


# --- client_credentials --------------------------------------------------------------------


def test_client_credentials_with_basic(server: LiveServer, admin: str) -> None:
    client = create_client(server, admin, ["posts:read", "posts:write"])
    r = token(
        server,
        {"grant_type": "client_credentials"},
        headers=basic(client["client_id"], client["client_secret"]),
    )
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}  # no refresh
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "posts:read posts:write"
    assert header_of(body["access_token"])["typ"] == "at+jwt"
    jwks = KeySet.from_jwks(server.http.get("/.well-known/jwks.json").json())
    claims = decode(
        body["access_token"],
        jwks,
        algorithms=["ES256"],
        policy=ClaimsPolicy.access_token(issuer=server.settings.issuer, audience="authgate"),
        now=server.clock.now(),
    )
    assert claims["sub"] == claims["client_id"] == client["client_id"]
    assert claims["scope"] == "posts:read posts:write"


def test_client_credentials_with_post_and_a_narrowed_scope(server: LiveServer, admin: str) -> None:
    client = create_client(server, admin, ["posts:read", "posts:write"])
    form = {
        "grant_type": "client_credentials",
        "client_id": client["client_id"],
        "client_secret": client["client_secret"],
    }
    r = token(server, {**form, "scope": "posts:read"})
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "posts:read"
    assert claims_of(r.json()["access_token"])["scope"] == "posts:read"
    assert_oauth_error(
        token(server, {**form, "scope": "posts:read authgate:admin"}), 400, "invalid_scope"
    )


def test_client_authentication_failures(server: LiveServer, admin: str) -> None:
    client = create_client(server, admin, ["posts:read"])
    cid = client["client_id"]
    wrong = token(server, {"grant_type": "client_credentials"}, headers=basic(cid, "wrong"))
    assert_oauth_error(wrong, 401, "invalid_client")
    assert wrong.headers["www-authenticate"].startswith("Basic")
    unknown = token(
        server, {"grant_type": "client_credentials"}, headers=basic("cli_nobody", "wrong")
    )
    assert_oauth_error(unknown, 401, "invalid_client")
    assert unknown.content == wrong.content
    r = token(
        server, {"grant_type": "client_credentials", "client_id": cid, "client_secret": "wrong"}
    )
    assert_oauth_error(r, 401, "invalid_client")
    r = token(server, {"grant_type": "client_credentials"})
    assert_oauth_error(r, 401, "invalid_client")
    r = token(server, {"grant_type": "client_credentials", "client_id": "authgate"})
    assert_oauth_error(r, 401, "invalid_client")
    both = token(
        server,
        {
            "grant_type": "client_credentials",
            "client_id": cid,
            "client_secret": client["client_secret"],
        },
        headers=basic(cid, client["client_secret"]),
    )
    assert_oauth_error(both, 400, "invalid_request")


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"grant_type": "password", "username": "a", "password": "b"}, "unsupported_grant_type"),
        ({"grant_type": "implicit", "code": "x"}, "unsupported_grant_type"),
        ({}, "invalid_request"),
        ({"grant_type": "refresh_token", "client_id": "authgate"}, "invalid_request"),
    ],
)
def test_token_endpoint_request_errors(
    shared: LiveServer, data: dict[str, str], error: str
) -> None:
    assert_oauth_error(token(shared, data), 400, error)


def test_token_endpoint_refuses_json_and_repeated_parameters(shared: LiveServer) -> None:
    r = shared.http.post("/oauth2/token", json={"grant_type": "client_credentials"})
    assert_oauth_error(r, 400, "invalid_request")
    r = shared.http.post(
        "/oauth2/token",
        content=b"grant_type=refresh_token&grant_type=client_credentials",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_oauth_error(r, 400, "invalid_request")


# --- refresh_token grant -------------------------------------------------------------------


def test_refresh_grant_for_the_first_party_client(server: LiveServer) -> None:
    user = server.register(new_email())
    data = {
        "grant_type": "refresh_token",
        "client_id": "authgate",
        "refresh_token": user["refresh_token"],
    }
    r = token(server, data)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert set(body) >= TOKEN_FIELDS
    assert claims_of(body["access_token"])["sid"] == claims_of(user["access_token"])["sid"]
    # The rotated token, replayed outside the grace window: invalid_grant and the family dies.
    server.clock.advance(server.settings.refresh_grace + 1)
    assert_oauth_error(token(server, data), 400, "invalid_grant")
    assert_oauth_error(
        token(server, {**data, "refresh_token": body["refresh_token"]}), 400, "invalid_grant"
    )


def test_refresh_grant_needs_the_client_it_was_issued_to(server: LiveServer, admin: str) -> None:
    user = server.register(new_email())
    client = create_client(server, admin, ["posts:read"])
    r = token(
        server,
        {"grant_type": "refresh_token", "refresh_token": user["refresh_token"]},
        headers=basic(client["client_id"], client["client_secret"]),
    )
    assert_oauth_error(r, 400, "invalid_grant")
    r = token(server, {"grant_type": "refresh_token", "refresh_token": user["refresh_token"]})
    assert_oauth_error(r, 401, "invalid_client")


# --- revoke --------------------------------------------------------------------------------


def test_revoke_a_refresh_token_ends_the_session(server: LiveServer) -> None:
    user = server.register(new_email())
    r = server.http.post(
        "/oauth2/revoke",
        data={
            "token": user["refresh_token"],
            "token_type_hint": "refresh_token",
            "client_id": "authgate",
        },
    )
    assert r.status_code == 200, r.text
    assert_problem(
        server.http.get("/auth/me", headers=bearer(user["access_token"])), 401, "invalid_token"
    )
    r = server.http.post("/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert_problem(r, 401, "invalid_grant")


def test_revoke_an_access_token_by_jti(server: LiveServer, admin: str) -> None:
    email = new_email()
    user = server.register(email)
    other = server.login(email)
    cursor = server.http.get("/auth/revocations", headers=bearer(admin)).json()["cursor"]
    r = server.http.post(
        "/oauth2/revoke", data={"token": user["access_token"], "client_id": "authgate"}
    )
    assert r.status_code == 200, r.text
    assert_problem(
        server.http.get("/auth/me", headers=bearer(user["access_token"])), 401, "invalid_token"
    )
    assert server.http.get("/auth/me", headers=bearer(other["access_token"])).status_code == 200
    page = server.http.get(
        "/auth/revocations", params={"after": cursor}, headers=bearer(admin)
    ).json()
    jti = claims_of(user["access_token"])["jti"]
    assert [(e["kind"], e["value"]) for e in page["events"]] == [("jti", jti)]
    # Kept one token lifetime past exp: a margin for the clocks of the instances.
    exp = claims_of(user["access_token"])["exp"]
    assert page["events"][0]["expires_at"] == exp + server.settings.access_ttl


def test_revoke_unknown_or_foreign_tokens_answers_200_and_changes_nothing(
    server: LiveServer, admin: str
) -> None:
    user = server.register(new_email())
    client = create_client(server, admin, ["posts:read"])
    for value in ("garbage", "rt_" + "A" * 43, user["refresh_token"], user["access_token"]):
        r = server.http.post(
            "/oauth2/revoke",
            data={"token": value},
            headers=basic(client["client_id"], client["client_secret"]),
        )
        assert r.status_code == 200, r.text
    assert server.http.get("/auth/me", headers=bearer(user["access_token"])).status_code == 200
    assert_oauth_error(
        server.http.post("/oauth2/revoke", data={"client_id": "authgate"}), 400, "invalid_request"
    )
    assert_oauth_error(
        server.http.post("/oauth2/revoke", data={"token": "x"}), 401, "invalid_client"
    )


# --- introspect ----------------------------------------------------------------------------


def test_introspection(server: LiveServer, admin: str) -> None:
    client = create_client(server, admin, ["posts:read", "authgate:introspect"])
    auth = basic(client["client_id"], client["client_secret"])
    user = server.register(new_email())

    r = server.http.post("/oauth2/introspect", data={"token": user["access_token"]}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["active"] is True
    assert body["sub"] == user["user"]["id"]
    assert body["client_id"] == "authgate"

    # A refresh token is active only to the client it was issued to (here the first-party
    # one, which cannot authenticate): introspection never tells a thief whether it is live.
    r = server.http.post("/oauth2/introspect", data={"token": user["refresh_token"]}, headers=auth)
    assert r.json() == {"active": False}

    for dead in ("garbage", "rt_" + "A" * 43):
        r = server.http.post("/oauth2/introspect", data={"token": dead}, headers=auth)
        assert r.json() == {"active": False}

    server.http.post("/auth/logout", headers=bearer(user["access_token"]))
    for value in (user["access_token"], user["refresh_token"]):
        r = server.http.post("/oauth2/introspect", data={"token": value}, headers=auth)
        assert r.json() == {"active": False}

    r = server.http.post("/oauth2/introspect", data={"token": user["access_token"]})
    assert_oauth_error(r, 401, "invalid_client")
    r = server.http.post(
        "/oauth2/introspect", data={"token": user["access_token"], "client_id": "authgate"}
    )
    assert_oauth_error(r, 401, "invalid_client")


def test_revoked_client_tokens_die(server: LiveServer, admin: str) -> None:
    client = create_client(server, admin, ["posts:read"])
    auth = basic(client["client_id"], client["client_secret"])
    access = token(server, {"grant_type": "client_credentials"}, headers=auth).json()[
        "access_token"
    ]
    other = create_client(server, admin, ["authgate:introspect"])
    other_auth = basic(other["client_id"], other["client_secret"])
    r = server.http.post("/oauth2/introspect", data={"token": access}, headers=other_auth)
    assert r.json()["active"] is True
    server.clock.advance(1)
    assert (
        server.http.delete(
            f"/admin/clients/{client['client_id']}", headers=bearer(admin)
        ).status_code
        == 204
    )
    r = server.http.post("/oauth2/introspect", data={"token": access}, headers=other_auth)
    assert r.json() == {"active": False}


def test_introspection_for_anyone_is_refused_without_the_introspect_scope(
    server: LiveServer, admin: str
) -> None:
    """Any authenticated client, a feed-only one included, used to introspect any user's
    tokens (sub, sid, roles). Without authgate:introspect it now gets 403
    insufficient_scope and never a claim, whatever the token."""
    user = server.register(new_email())
    for scopes in (["posts:read"], ["authgate:revocations"]):
        client = create_client(server, admin, scopes)
        auth = basic(client["client_id"], client["client_secret"])
        for value in (user["access_token"], user["refresh_token"], "garbage"):
            r = server.http.post("/oauth2/introspect", data={"token": value}, headers=auth)
            assert_oauth_error(r, 403, "insufficient_scope")
            assert user["user"]["id"] not in r.text


def test_introspection_of_a_stolen_refresh_token_tells_nothing(
    server: LiveServer, admin: str
) -> None:
    """A client with authgate:introspect learns nothing of a refresh token issued to another
    client, live or not; the token keeps working for its owner, and the call is no use."""
    user = server.register(new_email())
    client = create_client(server, admin, ["authgate:introspect"])
    auth = basic(client["client_id"], client["client_secret"])
    r = server.http.post("/oauth2/introspect", data={"token": user["refresh_token"]}, headers=auth)
    assert r.status_code == 200
    assert r.json() == {"active": False}
    r = server.http.post("/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert r.status_code == 200, r.text


# --- the feed, read by a client ------------------------------------------------------------


def test_feed_with_client_credentials(server: LiveServer, admin: str) -> None:
    reader = create_client(server, admin, [FEED_SCOPE])
    user = server.register(new_email())
    server.http.post("/auth/logout", headers=bearer(user["access_token"]))
    r = server.http.get(
        "/auth/revocations", headers=basic(reader["client_id"], reader["client_secret"])
    )
    assert r.status_code == 200, r.text
    sid = claims_of(user["access_token"])["sid"]
    assert ("sid", sid) in [(e["kind"], e["value"]) for e in r.json()["events"]]

    no_scope = create_client(server, admin, ["posts:read"])
    r = server.http.get(
        "/auth/revocations", headers=basic(no_scope["client_id"], no_scope["client_secret"])
    )
    assert_problem(r, 403, "insufficient_scope")
    r = server.http.get("/auth/revocations", headers=basic(reader["client_id"], "wrong"))
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"


# --- private_key_jwt -----------------------------------------------------------------------


def test_private_key_jwt_client(server: LiveServer, admin: str) -> None:
    key = Key.generate("ES256")
    client = create_client(server, admin, ["posts:read"], jwk=key.public().to_jwk())
    assert client["client_secret"] is None
    assert client["auth_method"] == "private_key_jwt"
    now = int(server.clock.now())
    assertion = encode(
        {
            "iss": client["client_id"],
            "sub": client["client_id"],
            "aud": f"{server.settings.issuer}/oauth2/token",
            "exp": now + 60,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
        },
        key,
    )
    data = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    r = token(server, data)
    assert r.status_code == 200, r.text
    assert claims_of(r.json()["access_token"])["sub"] == client["client_id"]
    assert_oauth_error(token(server, data), 401, "invalid_client")  # the jti is single-use
    forged = encode(claims_of(assertion) | {"jti": "another"}, Key.generate("ES256", kid=key.kid))
    assert_oauth_error(token(server, {**data, "client_assertion": forged}), 401, "invalid_client")
