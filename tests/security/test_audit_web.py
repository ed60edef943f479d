"""Proofs of the holes an outside audit found in the account page, the admin console, the
cookie mode and the guard's cookie option, kept as regression tests: each says what must
hold, by the finding it proved."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from _support.http import new_email
from api.server import LiveServer, running_server
from authgate.clock import FixedClock
from authgate.guard import Guard, Principal
from authgate.jose import Key, encode
from guard._support import AppServer
from web._browser import browser, sign_in

SPA = "http://localhost:5173"  # the first-party SPA of AUTHGATE_CORS_ORIGINS


def _admin_browser(site: LiveServer, client: httpx.Client) -> str:
    email = new_email("admin")
    site.make_admin(email)
    r = sign_in(client, email)
    assert r.status_code == 303, r.text
    return email


# --- finding 1: CORS hands the hosted pages to the SPA's origin, with the login cookie ----


@pytest.fixture
def cors_site(tmp_path: Path) -> Iterator[LiveServer]:
    env = {"AUTHGATE_COOKIE_MODE": "on", "AUTHGATE_CORS_ORIGINS": SPA}
    with running_server(tmp_path, env) as live:
        yield live


def test_cors_never_shares_the_hosted_pages_with_credentials(cors_site: LiveServer) -> None:
    """AUTHGATE_CORS_ORIGINS with the cookie mode is for /auth/login, /auth/refresh and
    /auth/logout. A credentialed fetch from that origin (same-site: the Lax login cookie
    goes with it) must not be allowed to read the pages of the hosted login: the account
    page (email, sessions, IPs, the CSRF token) or, for an admin, the whole console."""
    with browser(cors_site) as client:
        _admin_browser(cors_site, client)
        spa = {"Origin": SPA, "Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"}
        # The cookie mode keeps its CORS: the SPA still refreshes across origins.
        pre = client.options(
            "/auth/refresh",
            headers={
                "Origin": SPA,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authgate-token-delivery,x-csrf-token",
            },
        )
        assert pre.headers.get("access-control-allow-credentials") == "true"
        for path in ("/account", "/account/sessions", "/console/users", "/console/audit"):
            r = client.get(path, headers=spa)
            assert r.status_code == 200, (path, r.status_code)
            shared = (
                r.headers.get("access-control-allow-origin") == SPA
                and r.headers.get("access-control-allow-credentials") == "true"
            )
            assert not shared, f"{path} is readable by {SPA} with the login cookie"


# --- finding 2: every view of the audit page walks the whole hash chain ------------------


@pytest.fixture
def site(tmp_path: Path) -> Iterator[LiveServer]:
    with running_server(tmp_path) as live:
        yield live


def test_the_audit_page_does_not_walk_the_whole_chain_on_every_view(site: LiveServer) -> None:
    """Anyone can grow the audit log (every failed login is an event); a view of the audit
    page, or its next page, must not cost a walk over every event ever written. The first
    view may verify; the ones after it must not read the whole chain again."""
    store: Any = site.services.audit._store
    original = store.audit_chain
    read: list[int] = []

    async def counting(*args: Any, **kwargs: Any) -> Any:
        rows = await original(*args, **kwargs)
        read.append(len(rows))
        return rows

    store.audit_chain = counting

    async def fill(n: int) -> None:
        for _ in range(n):
            await site.services.audit.record("login_failed", ip="203.0.113.9")

    site.call(fill(1500))
    with browser(site) as client:
        _admin_browser(site, client)
        assert client.get("/console/audit").status_code == 200
        read.clear()
        r = client.get("/console/audit?event=login_failed")
        assert r.status_code == 200
        assert sum(read) < 750, f"one view read {sum(read)} events of the chain"


# --- finding 3: the guard takes a cookie token on a WebSocket from any origin ------------

NOW = 1_700_000_000.0
ISS = "https://auth.example.com"


def _ws_app(guard: Guard) -> Starlette:
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        user = websocket.scope["user"]
        await websocket.send_json({"sub": user.sub if isinstance(user, Principal) else None})
        await websocket.close()

    app = Starlette(routes=[WebSocketRoute("/ws", ws)])
    app.add_middleware(guard.asgi_middleware)
    return app


def test_the_guard_refuses_a_cookie_websocket_from_a_foreign_origin() -> None:
    """A browser attaches the access cookie to a WebSocket handshake that any page may
    open, and the socket is not covered by CORS: a page of another origin would talk to
    the API as the user and read every answer. With the token from a cookie, the
    handshake's Origin must be the app's own (the header cannot be forged by a page)."""
    key = Key.from_secret(b"audit-web-ws-secret-" + b"x" * 20, kid="k")
    claims = {
        "iss": ISS,
        "sub": "usr_victim",
        "aud": "api",
        "exp": NOW + 600,
        "iat": NOW,
        "jti": "j",
        "sid": "s",
        "scope": "posts:read",
    }
    tok = encode(claims, key, typ="at+jwt")
    guard = Guard(
        keys=key,
        issuer=ISS,
        audience="api",
        revocation="off",
        clock=FixedClock(NOW),
        cookie="authgate_access",
    )
    server = AppServer(_ws_app(guard))
    with server:
        url = server.url.replace("http://", "ws://") + "/ws"
        own = server.url
        # The app's own page still gets its socket.
        with connect(
            url, additional_headers={"Cookie": f"authgate_access={tok}", "Origin": own}
        ) as ws:
            assert json.loads(ws.recv()) == {"sub": "usr_victim"}
        hijack = {"Cookie": f"authgate_access={tok}", "Origin": "https://evil.example.net"}
        try:
            with connect(url, additional_headers=hijack) as ws:
                answer = json.loads(ws.recv())
        except InvalidStatus:
            return  # refused at the handshake
        assert answer == {"sub": None}, "a foreign page's socket runs as the cookie's user"


# --- finding 4: the audit filter by an unknown address breaks on PostgreSQL --------------


@pytest.fixture
def pg_site(tmp_path: Path) -> Iterator[LiveServer]:
    from storage._postgres import migrated_schema

    with migrated_schema() as url, running_server(tmp_path, {"AUTHGATE_DATABASE_URL": url}) as live:
        yield live


def test_the_audit_filter_by_an_unknown_address_works_on_postgresql(pg_site: LiveServer) -> None:
    with browser(pg_site) as client:
        _admin_browser(pg_site, client)
        r = client.get("/console/audit", params={"user": "nobody-here@example.com"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/html")
        assert "No event matches" in r.text
