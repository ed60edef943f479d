"""The ASGI middleware's edges, on uvicorn with local keys: WebSockets, the cookie option, a
repeated Authorization header, the realm, and a guard that cannot start."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from authgate.clock import FixedClock
from authgate.guard import Guard, Principal
from authgate.guard.asgi import SCOPE_KEY
from authgate.jose import Key, encode

from ._support import AppServer

NOW = 1_700_000_000.0
ISS = "https://auth.example.com"


@pytest.fixture(scope="module")
def key() -> Key:
    return Key.from_secret(b"asgi-tests-secret-" + b"x" * 20, kid="k")


def token(key: Key, **changes: Any) -> str:
    claims = {
        "iss": ISS,
        "sub": "usr_1",
        "aud": "api",
        "exp": NOW + 600,
        "iat": NOW,
        "jti": "j",
        "sid": "s",
        "scope": "posts:read",
        **changes,
    }
    return encode(claims, key, typ="at+jwt")


def guard_for(key: Key, **options: Any) -> Guard:
    return Guard(
        keys=key, issuer=ISS, audience="api", revocation="off", clock=FixedClock(NOW), **options
    )


def starlette(guard: Guard) -> Starlette:
    async def whoami(request: Request) -> JSONResponse:
        user = request.user
        return JSONResponse(
            {
                "authenticated": user.is_authenticated,
                "sub": getattr(user, "sub", None),
                "scopes": sorted(request.auth.scopes),
                "same": request.scope.get(SCOPE_KEY, (None, None))[1] is user,
            }
        )

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        user = websocket.scope["user"]
        await websocket.send_json({"sub": user.sub if isinstance(user, Principal) else None})
        await websocket.close()

    app = Starlette(routes=[Route("/", whoami), WebSocketRoute("/ws", ws)])
    app.add_middleware(guard.asgi_middleware)
    return app


@pytest.fixture(scope="module")
def server(key: Key) -> Iterator[AppServer]:
    server = AppServer(starlette(guard_for(key)))
    with server:
        yield server


@pytest.fixture
def client(server: AppServer) -> httpx.Client:
    assert server.http is not None
    return server.http


def test_anonymous_and_authenticated(client: httpx.Client, key: Key) -> None:
    assert client.get("/").json() == {
        "authenticated": False,
        "sub": None,
        "scopes": [],
        "same": False,
    }
    body = client.get("/", headers={"Authorization": f"Bearer {token(key)}"}).json()
    assert body == {
        "authenticated": True,
        "sub": "usr_1",
        "scopes": ["authenticated", "posts:read"],
        "same": True,
    }


def test_a_repeated_authorization_header_is_400_invalid_request(
    client: httpx.Client, key: Key
) -> None:
    headers = [("Authorization", f"Bearer {token(key)}"), ("Authorization", "Bearer x")]
    r = client.get("/", headers=headers)
    assert r.status_code == 400
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_request"'
    assert r.json() == {"error": "invalid_request"}


def test_websockets(server: AppServer, key: Key) -> None:
    url = server.url.replace("http://", "ws://") + "/ws"
    with connect(url, additional_headers={"Authorization": f"Bearer {token(key)}"}) as ws:
        assert json.loads(ws.recv()) == {"sub": "usr_1"}
    with connect(url) as ws:
        assert json.loads(ws.recv()) == {"sub": None}
    with pytest.raises(InvalidStatus) as info:
        connect(url, additional_headers={"Authorization": "Bearer a.b.c"})
    assert info.value.response.status_code == 403  # closed (1008) before the handshake


def test_the_cookie_only_when_configured(client: httpx.Client, key: Key) -> None:
    tok = token(key)
    assert client.get("/", headers={"Cookie": f"access_token={tok}"}).json()["sub"] is None
    with AppServer(starlette(guard_for(key, cookie="access_token"))) as with_cookie:
        assert with_cookie.get("/", headers={"Cookie": f"access_token={tok}"}).json()["sub"] == (
            "usr_1"
        )
        # The header wins over the cookie.
        other = token(key, sub="usr_2")
        r = with_cookie.get(
            "/", headers={"Authorization": f"Bearer {other}", "Cookie": f"access_token={tok}"}
        )
        assert r.json()["sub"] == "usr_2"
        r = with_cookie.get("/", headers={"Cookie": "access_token=a.b.c"})
        assert (r.status_code, r.headers["www-authenticate"]) == (
            401,
            'Bearer error="invalid_token"',
        )


def test_the_query_string_is_never_read(client: httpx.Client, key: Key) -> None:
    for name in ("access_token", "token", "authorization"):
        assert client.get("/", params={name: token(key)}).json()["authenticated"] is False


def test_the_realm_is_announced(key: Key) -> None:
    with AppServer(starlette(guard_for(key, realm="posts"))) as c:
        r = c.get("/", headers={"Authorization": "Bearer a.b.c"})
        assert r.headers["www-authenticate"] == 'Bearer realm="posts", error="invalid_token"'


def test_a_guard_that_cannot_start_fails_the_startup() -> None:
    # Nothing listens on port 9 (discard): discovery never answers, start-up gives up.
    guard = Guard(issuer="http://127.0.0.1:9", audience="api", client_id="c", client_secret="s")

    async def refuse() -> None:
        raise RuntimeError("the authorization server refused the guard")

    guard.start = refuse  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="did not start"):
        AppServer(starlette(guard)).__enter__()
    guard.close_sync()
