"""The code flow over HTTP through a real server: /oauth2/token (authorization_code and
refresh_token), /userinfo, discovery; the code is issued through the service (the hosted
pages come later). Its ID token is checked with PyJWT against the served JWKS."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt as pyjwt
import pytest

from _support.http import basic, bearer, new_email
from api.server import LiveServer, running_server

from .conftest import REDIRECT, pkce


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with running_server(tmp_path) as live:
        yield live


@pytest.fixture
def admin(server: LiveServer) -> str:
    """An admin access token of the server."""
    return server.make_admin()


def new_client(server: LiveServer, admin: str, **more: Any) -> dict[str, Any]:
    r = server.http.post(
        "/admin/clients",
        json={"name": "app", "redirect_uris": [REDIRECT], **more},
        headers=bearer(admin),
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def issue(server: LiveServer, client_id: str, user_id: str, challenge: str) -> str:
    oidc = server.services.oidc
    params = {
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "openid email",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "nonce": "abc",
        "state": "xyz",
    }

    async def go() -> str:
        request = await oidc.authorization_request(params)
        user = await server.services.accounts.get(user_id)
        login = await server.services.web_logins.start(user, amr=["pwd"], ip=None, user_agent=None)
        return await oidc.issue_code(
            request,
            user_id=user_id,
            login_sid=login.login.sid,
            auth_time=server.clock.now(),
            amr=["pwd"],
        )

    return parse_qs(urlsplit(server.call(go())).query)["code"][0]


def form(code: str, verifier: str, **more: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        **more,
    }


def test_public_client_code_flow(server: LiveServer, admin: str) -> None:
    client = new_client(server, admin, public=True)
    assert client["client_secret"] is None
    assert client["auth_method"] == "none"
    user = server.register(new_email())["user"]
    verifier, challenge = pkce()
    code = issue(server, client["client_id"], user["id"], challenge)
    r = server.http.post("/oauth2/token", data=form(code, verifier, client_id=client["client_id"]))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    tokens = r.json()
    keys = server.http.get("/.well-known/jwks.json").json()["keys"]
    kid = pyjwt.get_unverified_header(tokens["id_token"])["kid"]
    key = pyjwt.PyJWK(next(k for k in keys if k["kid"] == kid)).key
    claims = pyjwt.decode(
        tokens["id_token"],
        key,
        algorithms=["RS256"],
        audience=client["client_id"],
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["sub"] == user["id"]
    assert claims["nonce"] == "abc"
    # userinfo, GET and POST.
    for method in ("GET", "POST"):
        info = server.http.request(method, "/userinfo", headers=bearer(tokens["access_token"]))
        assert info.status_code == 200, info.text
        assert info.json() == {
            "sub": user["id"],
            "email": user["email"],
            "email_verified": False,
        }
    # A first-party token has no openid scope: 403 insufficient_scope.
    first = server.register(new_email())["access_token"]
    r = server.http.get("/userinfo", headers=bearer(first))
    assert r.status_code == 403
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    r = server.http.get("/userinfo", headers=bearer("nope"))
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    # The ID token is no access token.
    assert server.http.get("/userinfo", headers=bearer(tokens["id_token"])).status_code == 401
    # Refresh: the public client by its client_id; another client is refused.
    other = new_client(server, admin, public=True)
    refused = server.http.post(
        "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": other["client_id"],
        },
    )
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    r = server.http.post(
        "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": client["client_id"],
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "email openid"


def test_confidential_client_and_refusals(server: LiveServer, admin: str) -> None:
    client = new_client(server, admin)
    cid, secret = client["client_id"], client["client_secret"]
    user = server.register(new_email())["user"]
    verifier, challenge = pkce()
    code = issue(server, cid, user["id"], challenge)
    # Without its secret a confidential client is no client.
    r = server.http.post("/oauth2/token", data=form(code, verifier, client_id=cid))
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client")
    r = server.http.post("/oauth2/token", data=form(code, pkce()[0]), headers=basic(cid, secret))
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")
    # The code is spent: the right verifier fails too.
    r = server.http.post("/oauth2/token", data=form(code, verifier), headers=basic(cid, secret))
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")
    code = issue(server, cid, user["id"], challenge)
    r = server.http.post("/oauth2/token", data=form(code, verifier), headers=basic(cid, secret))
    assert r.status_code == 200, r.text
    # client_credentials is not this client's grant.
    r = server.http.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic(cid, secret)
    )
    assert (r.status_code, r.json()["error"]) == (400, "unauthorized_client")
    # After 60 s a code is dead.
    code = issue(server, cid, user["id"], challenge)
    server.clock.advance(60)
    r = server.http.post("/oauth2/token", data=form(code, verifier), headers=basic(cid, secret))
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")


def test_twenty_concurrent_exchanges_one_success(server: LiveServer, admin: str) -> None:
    client = new_client(server, admin, public=True)
    user = server.register(new_email())["user"]
    verifier, challenge = pkce()
    code = issue(server, client["client_id"], user["id"], challenge)
    body = form(code, verifier, client_id=client["client_id"])

    def exchange(_: int) -> int:
        return server.http.post("/oauth2/token", data=body).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(exchange, range(20)))
    assert statuses.count(200) == 1
    assert statuses.count(400) == 19


def test_discovery(server: LiveServer) -> None:
    r = server.http.get("/.well-known/openid-configuration")
    assert r.status_code == 200
    doc = r.json()
    issuer = server.settings.issuer
    assert doc["issuer"] == issuer
    assert doc["authorization_endpoint"] == f"{issuer}/authorize"
    assert doc["token_endpoint"] == f"{issuer}/oauth2/token"
    assert doc["userinfo_endpoint"] == f"{issuer}/userinfo"
    assert doc["end_session_endpoint"] == f"{issuer}/logout"
    assert doc["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
    assert doc["response_types_supported"] == ["code"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert doc["subject_types_supported"] == ["public"]
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert "none" in doc["token_endpoint_auth_methods_supported"]
    assert "registration_endpoint" not in doc
    oauth = server.http.get("/.well-known/oauth-authorization-server").json()
    assert oauth["authorization_endpoint"] == doc["authorization_endpoint"]
    assert "authorization_code" in oauth["grant_types_supported"]
