"""Authlib's AsyncOAuth2Client against a running authgate, used as Authlib's docs show:
client_credentials (client_secret_basic, client_secret_post, private_key_jwt), refresh_token
with the first-party public client, revoke_token and introspect_token.

Each request Authlib sends is recorded (an httpx event hook) so that every test also proves
which client authentication Authlib really used.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc.jwk import ECKey

from _support.http import bearer
from _support.tokens import claims_of, header_of
from authgate.jose import Key

from .harness import AUDIENCE, FIRST_PARTY, LiveServer

pytestmark = pytest.mark.anyio


class Recorder:
    """The requests an Authlib client sent: (headers, form fields)."""

    def __init__(self) -> None:
        self.requests: list[tuple[httpx.Headers, dict[str, list[str]]]] = []

    async def __call__(self, request: httpx.Request) -> None:
        body = request.content.decode()
        self.requests.append((request.headers, parse_qs(body, keep_blank_values=True)))

    @property
    def last(self) -> tuple[httpx.Headers, dict[str, list[str]]]:
        assert self.requests, "no request was sent"
        return self.requests[-1]


def recording(**kwargs: Any) -> tuple[AsyncOAuth2Client, Recorder]:
    rec = Recorder()
    client = AsyncOAuth2Client(event_hooks={"request": [rec]}, **kwargs)
    return client, rec


def registered(client: dict[str, Any], **kwargs: Any) -> AsyncOAuth2Client:
    """Authlib's client for a client_secret client made through POST /admin/clients."""
    return AsyncOAuth2Client(client["client_id"], client["client_secret"], **kwargs)


async def client_credentials(live: LiveServer, client: AsyncOAuth2Client) -> dict[str, Any]:
    """The token response to an RFC 6749 4.4 client_credentials grant, through Authlib."""
    token: dict[str, Any] = await client.fetch_token(
        live.token_endpoint, grant_type="client_credentials"
    )
    return token


def assert_client_token(
    live: LiveServer, token: dict[str, Any], client_id: str, scope: str
) -> None:
    """RFC 6749 5.1 response to client_credentials and the RFC 9068 access token in it."""
    assert token["token_type"] == "Bearer"
    assert token["scope"] == scope
    assert token["expires_in"] == 600
    assert "refresh_token" not in token  # client_credentials issues none (RFC 6749 4.4.3)
    header, claims = header_of(token["access_token"]), claims_of(token["access_token"])
    assert header["typ"] == "at+jwt"
    assert claims["sub"] == client_id
    assert claims["client_id"] == client_id
    assert claims["scope"] == scope
    assert claims["iss"] == live.url
    assert claims["aud"] == AUDIENCE
    assert claims["exp"] - int(claims["iat"]) == 600
    assert "sid" not in claims


async def test_client_credentials_with_client_secret_basic(
    live: LiveServer, secret_client: dict[str, Any]
) -> None:
    cid, secret = secret_client["client_id"], secret_client["client_secret"]
    client, rec = recording(client_id=cid, client_secret=secret, scope="posts:read")
    async with client:
        token = await client_credentials(live, client)
    headers, form = rec.last
    assert (
        headers["authorization"] == "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()
    )
    assert "client_secret" not in form
    assert form["grant_type"] == ["client_credentials"]
    assert_client_token(live, token, cid, "posts:read")


async def test_client_credentials_without_scope_gets_everything_allowed(
    live: LiveServer, secret_client: dict[str, Any]
) -> None:
    async with registered(secret_client) as client:
        token = await client_credentials(live, client)
    assert_client_token(live, token, secret_client["client_id"], "posts:read reports:read")


async def test_client_credentials_with_client_secret_post(
    live: LiveServer, secret_client: dict[str, Any]
) -> None:
    cid, secret = secret_client["client_id"], secret_client["client_secret"]
    client, rec = recording(
        client_id=cid,
        client_secret=secret,
        token_endpoint_auth_method="client_secret_post",
        scope="reports:read",
    )
    async with client:
        token = await client_credentials(live, client)
    headers, form = rec.last
    assert "authorization" not in headers
    assert form["client_id"] == [cid]
    assert form["client_secret"] == [secret]
    assert_client_token(live, token, cid, "reports:read")


async def test_client_credentials_with_private_key_jwt(
    live: LiveServer, jwt_client: dict[str, Any], rsa_key: Key
) -> None:
    """Authlib's docs: token_endpoint_auth_method="private_key_jwt" and a registered
    PrivateKeyJWT(token_endpoint), the client's private key as its "secret". Two grants in a
    row: each carries a fresh assertion (a new jti)."""
    cid = jwt_client["client_id"]
    assert jwt_client["client_secret"] is None
    assert jwt_client["auth_method"] == "private_key_jwt"
    client, rec = recording(
        client_id=cid,
        client_secret=rsa_key.to_pem(private=True),
        token_endpoint_auth_method="private_key_jwt",
    )
    client.register_client_auth_method(PrivateKeyJWT(live.token_endpoint))
    async with client:
        first = await client_credentials(live, client)
        second = await client_credentials(live, client)
    headers, form = rec.last
    assert "authorization" not in headers
    assert form["client_assertion_type"] == [
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    ]
    assertion = form["client_assertion"][0]
    assert header_of(assertion)["alg"] == "RS256"
    assert claims_of(assertion)["aud"] == live.token_endpoint
    for token in (first, second):
        assert_client_token(live, token, cid, "posts:read")
    assert first["access_token"] != second["access_token"]


async def test_client_credentials_with_private_key_jwt_es256(live: LiveServer, es_key: Key) -> None:
    """The same with an EC key: Authlib's PrivateKeyJWT(alg="ES256") and a joserfc ECKey."""
    from .conftest import make_client

    created = make_client(live, ["posts:write"], jwk=es_key.public().to_jwk())
    cid = created["client_id"]
    private = ECKey.import_key(es_key.to_pem(private=True))
    client = AsyncOAuth2Client(
        cid,
        private,
        token_endpoint_auth_method=PrivateKeyJWT(live.token_endpoint, alg="ES256"),
    )
    async with client:
        token = await client_credentials(live, client)
    assert_client_token(live, token, cid, "posts:write")


async def test_refresh_token_with_the_public_first_party_client(
    live: LiveServer, user_tokens: dict[str, Any]
) -> None:
    """A user's refresh token from /auth/login, rotated by Authlib as the public client
    ``authgate`` (token_endpoint_auth_method "none": client_id in the body, no secret)."""
    original = claims_of(user_tokens["access_token"])
    assert original["client_id"] == FIRST_PARTY
    client, rec = recording(client_id=FIRST_PARTY, token_endpoint_auth_method="none")
    async with client:
        token = await client.refresh_token(
            live.token_endpoint, refresh_token=user_tokens["refresh_token"]
        )
        narrowed = await client.refresh_token(
            live.token_endpoint, refresh_token=token["refresh_token"], scope="posts:read"
        )
    headers, form = rec.requests[0]
    assert "authorization" not in headers
    assert form["client_id"] == [FIRST_PARTY]
    assert form["grant_type"] == ["refresh_token"]
    assert token["token_type"] == "Bearer"
    assert token["refresh_token"] != user_tokens["refresh_token"]
    assert token["refresh_token"].startswith("rt_")
    assert token["scope"] == "posts:read posts:write reports:read"
    claims = claims_of(token["access_token"])
    assert claims["sid"] == original["sid"]
    assert claims["sub"] == original["sub"]
    assert claims["client_id"] == FIRST_PARTY
    assert claims["jti"] != original["jti"]
    assert narrowed["scope"] == "posts:read"
    assert claims_of(narrowed["access_token"])["scope"] == "posts:read"
    # The refreshed access token works on the API.
    assert live.http.get("/auth/me", headers=bearer(narrowed["access_token"])).status_code == 200


async def test_revoke_token_refresh_token_ends_the_family(
    live: LiveServer, user_tokens: dict[str, Any]
) -> None:
    async with AsyncOAuth2Client(FIRST_PARTY, token_endpoint_auth_method="none") as client:
        resp = await client.revoke_token(
            live.revocation_endpoint,
            token=user_tokens["refresh_token"],
            token_type_hint="refresh_token",
        )
        assert resp.status_code == 200
        assert "no-store" in resp.headers["cache-control"]
        with pytest.raises(OAuthError) as caught:
            await client.refresh_token(
                live.token_endpoint, refresh_token=user_tokens["refresh_token"]
            )
    assert caught.value.error == "invalid_grant"
    # The family's access token died with it.
    assert live.http.get("/auth/me", headers=bearer(user_tokens["access_token"])).status_code == 401


async def test_revoke_token_access_token_of_a_client(
    live: LiveServer, introspector: dict[str, Any]
) -> None:
    async with registered(introspector) as client:
        token = await client_credentials(live, client)
        before = await client.introspect_token(
            live.introspection_endpoint, token=token["access_token"]
        )
        assert before.json()["active"] is True
        resp = await client.revoke_token(
            live.revocation_endpoint, token=token["access_token"], token_type_hint="access_token"
        )
        assert resp.status_code == 200
        after = await client.introspect_token(
            live.introspection_endpoint, token=token["access_token"]
        )
    assert after.status_code == 200
    assert after.json() == {"active": False}


async def test_introspect_token(
    live: LiveServer, introspector: dict[str, Any], user_tokens: dict[str, Any]
) -> None:
    """A client's access token and a user's access token, each introspected by a client
    with authgate:introspect and Basic auth (Authlib's default). A user's refresh token
    belongs to the first-party client: to any other client it is not active."""
    cid = introspector["client_id"]
    async with registered(introspector, scope="posts:read") as client:
        token = await client_credentials(live, client)
        own = await client.introspect_token(
            live.introspection_endpoint, token=token["access_token"]
        )
        user_access = await client.introspect_token(
            live.introspection_endpoint, token=user_tokens["access_token"]
        )
        user_refresh = await client.introspect_token(
            live.introspection_endpoint,
            token=user_tokens["refresh_token"],
            token_type_hint="refresh_token",
        )
    for resp in (own, user_access, user_refresh):
        assert resp.status_code == 200
        assert resp.headers["content-type"].split(";")[0] == "application/json"
        assert "no-store" in resp.headers["cache-control"]
    body = own.json()
    claims = claims_of(token["access_token"])
    assert body["active"] is True
    assert body["client_id"] == cid
    assert body["sub"] == cid
    assert body["scope"] == "posts:read"
    assert body["token_type"] == "Bearer"
    for name in ("exp", "iat", "iss", "aud", "jti"):
        assert body[name] == claims[name], name
    user_body = user_access.json()
    user_claims = claims_of(user_tokens["access_token"])
    assert user_body["active"] is True
    assert user_body["client_id"] == FIRST_PARTY
    assert user_body["sub"] == user_claims["sub"]
    assert user_body["sid"] == user_claims["sid"]
    assert user_refresh.json() == {"active": False}
