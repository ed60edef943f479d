"""A scripted issuer on a real HTTP server (uvicorn in a thread): RFC 8414 metadata, a JWKS
and a revocation feed whose answers each test controls, and a record of every request that
reached it (with its Authorization header, to prove where a client secret went).

``Resolver`` stands in for DNS and TLS termination: it sends requests for a named origin
(``https://keys.example.com``) over real TCP to a loopback server, so that tests can reach a
"foreign" origin, plain http off loopback or another https origin, on this machine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from authgate.jose import Key

from ._fake import NOW, token
from ._support import AppServer

METADATA_PATH = "/.well-known/oauth-authorization-server"
FEED_MEMBER = "authgate_revocation_feed_endpoint"


@dataclass(frozen=True)
class Seen:
    """One request the server received."""

    method: str
    path: str
    host: str | None
    authorization: str | None


class ScriptedIssuer:
    """The issuer's endpoints on a real server. ``metadata`` overrides members of the
    default metadata (which names this server's own ``/jwks.json`` and ``/feed``);
    ``redirects`` maps a path to the Location of a 302."""

    def __init__(self, keys: list[Key]) -> None:
        self.keys = keys
        self.url = ""
        self.metadata: dict[str, Any] = {}
        self.redirects: dict[str, str] = {}
        self.events: list[dict[str, Any]] = []
        self.seen: list[Seen] = []
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST"])])

    def document(self) -> dict[str, Any]:
        """The metadata this server answers."""
        return {
            "issuer": self.url,
            "jwks_uri": f"{self.url}/jwks.json",
            FEED_MEMBER: f"{self.url}/feed",
            **self.metadata,
        }

    def revoke_user(self, sub: str, *, ver: int, not_before: float | None = None) -> None:
        """Append a user event carrying ``ver`` (and ``not_before``, as a server may)."""
        event: dict[str, Any] = {
            "id": len(self.events) + 1,
            "kind": "user",
            "value": sub,
            "ver": ver,
            "expires_at": NOW + 3600,
        }
        if not_before is not None:
            event["not_before"] = not_before
        self.events.append(event)

    def token(self, **changes: Any) -> str:
        """An access token of this issuer, signed by its first key (``_fake.token``'s
        claims, with this issuer's URL)."""
        return token(self.keys[0], **{"iss": self.url, **changes})

    def paths(self) -> list[str]:
        """The paths requested so far, in order."""
        return [s.path for s in self.seen]

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        self.seen.append(
            Seen(
                request.method,
                path,
                request.headers.get("host"),
                request.headers.get("authorization"),
            )
        )
        if path in self.redirects:
            return RedirectResponse(self.redirects[path], status_code=302)
        if path == METADATA_PATH:
            return JSONResponse(self.document())
        if path == "/jwks.json":
            return JSONResponse({"keys": [k.public().to_jwk() for k in self.keys]})
        if path == "/feed":
            after = request.query_params.get("after")
            start = int(after) if after is not None else 0
            events = [e for e in self.events if e["id"] > start]
            cursor = events[-1]["id"] if events else max(start, len(self.events))
            return JSONResponse({"cursor": cursor, "events": events})
        return JSONResponse({"error": "not_found"}, status_code=404)


@contextlib.contextmanager
def serve(issuer: ScriptedIssuer) -> Iterator[ScriptedIssuer]:
    """Run ``issuer`` on a free loopback port; its ``url`` is set while it runs."""
    server = AppServer(issuer.app)
    with server:
        issuer.url = server.url
        yield issuer


class Resolver(httpx.AsyncBaseTransport):
    """An httpx transport that sends requests for the mapped origins to other base URLs
    (``{"https://keys.example.com": "http://127.0.0.1:PORT"}``), over real TCP, keeping the
    request's Host header; everything else goes where it says."""

    def __init__(self, routes: dict[str, str]) -> None:
        self.routes = {k: httpx.URL(v) for k, v in routes.items()}
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        target = self.routes.get(f"{url.scheme}://{url.netloc.decode()}")
        if target is not None:
            request.url = url.copy_with(scheme=target.scheme, host=target.host, port=target.port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
