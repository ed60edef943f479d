"""Pure-ASGI middleware: body and header caps, the body deadline, load shedding, security
headers, request metrics."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authgate.errors import AuthgateError, BodyTooLarge, InvalidToken, Overloaded, RequestTimeout
from authgate.server.intake import replay_body
from authgate.server.metrics import Metrics
from authgate.server.problems import problem_parts

MAX_AUTHORIZATION = 8192
BODY_TIMEOUT = 30.0
# Probes are never shed; the revocation feed's long polls mostly wait, so they neither
# count against the limit nor are shed.
_NEVER_SHED = frozenset({"/healthz", "/readyz", "/metrics", "/auth/revocations"})
# The key, in the ASGI lifespan state, of the event the HTTP runtime sets when the server
# starts to shut down (see authgate.server.runtime).
DRAINING = "authgate.draining"
# How often a body read that is still waiting looks whether the server shuts down.
_DRAIN_CHECK = 0.25
_CLOSE = (b"connection", b"close")


def draining_event(scope: Scope) -> asyncio.Event | None:
    """The event set when the server starts to shut down, or None when the server running
    the app does not provide one. Every wait that a client can make long watches it."""
    event = scope.get("state", {}).get(DRAINING)
    return event if isinstance(event, asyncio.Event) else None


async def _send_error(
    send: Send, exc: AuthgateError, headers: list[tuple[bytes, bytes]], *, close: bool
) -> int:
    """Answer ``exc`` as problems.py maps it (below the framework, so by hand); with
    ``close``, close the connection too: its request was not read to the end."""
    status, mapped, body = problem_parts(exc)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *((k.lower().encode(), v.encode()) for k, v in mapped.items()),
                (b"content-length", str(len(body)).encode()),
                *headers,
                *([_CLOSE] if close else []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
    return status


class _ClientGone(Exception):
    pass


async def _next_message(
    receive: Receive, *, deadline: float, draining: asyncio.Event | None
) -> Message:
    """The next request message; RequestTimeout at ``deadline`` (loop time), Overloaded
    once the server drains."""
    loop = asyncio.get_running_loop()
    while True:
        if draining is not None and draining.is_set():
            raise Overloaded("the server is shutting down", retry_after=1)
        now = loop.time()
        if now >= deadline:
            raise RequestTimeout("the request body did not arrive in time")
        until = deadline if draining is None else min(deadline, now + _DRAIN_CHECK)
        # A receive cut short loses nothing: the server keeps what arrived for the next one.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(until):
                return await receive()


class HardeningMiddleware:
    """Caps bodies (413) and the Authorization header (401), reads the whole body within
    ``body_timeout`` seconds (408), and only then counts the request in flight and sheds
    load past ``max_in_flight`` (503). Adds security headers to every response (HSTS when
    served over TLS), and records request metrics."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int,
        metrics: Metrics,
        max_in_flight: int = 0,
        body_timeout: float = BODY_TIMEOUT,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics
        self.max_in_flight = max_in_flight  # 0: no limit
        self.body_timeout = body_timeout
        self.in_flight = 0

    async def _read_body(self, receive: Receive, draining: asyncio.Event | None) -> bytes:
        deadline = asyncio.get_running_loop().time() + self.body_timeout
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await _next_message(receive, deadline=deadline, draining=draining)
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise BodyTooLarge("the request body is over the cap")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        security = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
        ]
        if scope.get("scheme") == "https":
            security.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_body
                except ValueError:
                    too_big = True
                if too_big:
                    big = BodyTooLarge("Content-Length is over the cap")
                    await _send_error(send, big, security, close=False)
                    return
            elif name == b"authorization" and len(value) > MAX_AUTHORIZATION:
                bad = InvalidToken("the Authorization header is over the cap")
                await _send_error(send, bad, security, close=False)
                return
        started = time.perf_counter()
        # The whole body first, under its deadline: a slow client holds a connection, never
        # an in-flight slot, so slow uploads cannot turn other requests into 503s.
        try:
            body = await self._read_body(receive, draining_event(scope))
        except _ClientGone:
            return
        except (BodyTooLarge, RequestTimeout, Overloaded) as exc:
            # A chunked body over the cap, a late body, or a server that drains.
            status = await _send_error(send, exc, security, close=True)
            self.metrics.observe_request(
                scope["method"], "unmatched", status, time.perf_counter() - started
            )
            return
        counted = scope["path"] not in _NEVER_SHED
        if counted and self.max_in_flight and self.in_flight >= self.max_in_flight:
            # Shed load cheaply, before any work: a quick 503 the client can retry beats a
            # queue that grows until every request times out.
            self.metrics.shed.inc()
            shed = Overloaded("shed: too many requests in flight", retry_after=1)
            await _send_error(send, shed, security, close=False)
            return
        if counted:
            self.in_flight += 1
        status = 500

        async def secured_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                # A response that sets one of these itself (a page's Referrer-Policy) keeps it.
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in security if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, replay_body(body, receive), secured_send)
        finally:
            if counted:
                self.in_flight -= 1
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(
                scope["method"], path, int(status), time.perf_counter() - started
            )


# The JSON API: where a browser app on another origin may call (AUTHGATE_CORS_ORIGINS).
CORS_PREFIXES = ("/auth/", "/oauth2/", "/admin/", "/.well-known/", "/userinfo")
# The cookie mode's endpoints: the only ones a cross-origin call may send cookies to.
CREDENTIALED_PATHS = frozenset({"/auth/login", "/auth/login/mfa", "/auth/refresh", "/auth/logout"})


class ScopedCORSMiddleware:
    """CORS for the JSON API only, with credentials only on the cookie mode's endpoints.
    The hosted pages (``/login``, ``/account``, ``/console``, ``/authorize``...) never
    answer a cross-origin read: their login cookie must not become readable from an
    allowed origin."""

    def __init__(
        self,
        app: ASGIApp,
        credentials: bool = False,
        allow_origins: Sequence[str] = (),
        allow_methods: Sequence[str] = ("GET",),
        allow_headers: Sequence[str] = (),
        max_age: int = 600,
    ) -> None:
        self.app = app

        def cors(with_credentials: bool) -> CORSMiddleware:
            return CORSMiddleware(
                app,
                allow_origins=allow_origins,
                allow_methods=allow_methods,
                allow_headers=allow_headers,
                allow_credentials=with_credentials,
                max_age=max_age,
            )

        self.api = cors(False)
        self.credentialed = cors(True) if credentials else self.api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in CREDENTIALED_PATHS:
            await self.credentialed(scope, receive, send)
        elif path.startswith(CORS_PREFIXES):
            await self.api(scope, receive, send)
        else:
            await self.app(scope, receive, send)
