"""Pure-ASGI middleware: body and header caps, security headers, request metrics."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authgate.server.metrics import Metrics

MAX_AUTHORIZATION = 8192
# Probes are never shed; the revocation feed's long polls mostly wait, so they neither
# count against the limit nor are shed.
_NEVER_SHED = frozenset({"/healthz", "/readyz", "/metrics", "/auth/revocations"})


async def _send_problem(
    send: Send, status: int, code: str, title: str, headers: list[tuple[bytes, bytes]]
) -> None:
    body = json.dumps(
        {"type": "about:blank", "title": title, "status": status, "code": code}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class HardeningMiddleware:
    """Caps bodies (413) and the Authorization header (401), adds security headers to every
    response (HSTS when served over TLS), and records request metrics."""

    def __init__(
        self, app: ASGIApp, *, max_body: int, metrics: Metrics, max_in_flight: int = 0
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics
        self.max_in_flight = max_in_flight  # 0: no limit
        self.in_flight = 0

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
                    await _send_problem(
                        send, 413, "body_too_large", "The request body is too large", security
                    )
                    return
            elif name == b"authorization" and len(value) > MAX_AUTHORIZATION:
                await _send_problem(
                    send,
                    401,
                    "invalid_token",
                    "The token is invalid",
                    [
                        *security,
                        (b"www-authenticate", b'Bearer realm="authgate", error="invalid_token"'),
                    ],
                )
                return
        if (
            self.max_in_flight
            and self.in_flight >= self.max_in_flight
            and scope["path"] not in _NEVER_SHED
        ):
            # Shed load early and cheaply, before any work: a quick 503 the client can retry
            # beats a queue that grows until every request times out.
            self.metrics.shed.inc()
            await _send_problem(
                send,
                503,
                "overloaded",
                "The server is busy",
                [*security, (b"retry-after", b"1")],
            )
            return
        counted = scope["path"] not in _NEVER_SHED
        if counted:
            self.in_flight += 1
        received = 0
        max_body = self.max_body
        state: dict[str, Any] = {"status": 500, "started": False, "rejected": False}

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request" and not state["rejected"]:
                received += len(message.get("body", b""))
                if received > max_body:
                    # A chunked body with no Content-Length went over the cap: answer 413
                    # now, and tell the app the client left, so that it answers nothing.
                    state["rejected"] = True
                    if not state["started"]:
                        state["started"] = True
                        state["status"] = 413
                        await _send_problem(
                            send, 413, "body_too_large", "The request body is too large", security
                        )
                    return {"type": "http.disconnect"}
            return message

        started = time.perf_counter()

        async def secured_send(message: Message) -> None:
            if state["rejected"]:
                return
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                message = {**message, "headers": [*message.get("headers", []), *security]}
            await send(message)

        try:
            await self.app(scope, capped_receive, secured_send)
        finally:
            if counted:
                self.in_flight -= 1
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(
                scope["method"], path, int(state["status"]), time.perf_counter() - started
            )
