"""Pure-ASGI gates every request passes before routing: the allowed Host names, and the one
strict parse of every JSON body.

Both answer through ``problems.error_response``, so a refusal has the same status, code
and body shape (problem+json, or the RFC 6749 body under /oauth2) as one raised in a route.
"""

from __future__ import annotations

import email.message
import ipaddress
from collections.abc import Iterable

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authgate.errors import AuthgateError, InvalidHost, InvalidJSON
from authgate.jsonbody import loads_body, media_type
from authgate.server.problems import error_response

# Orchestrators probe liveness and readiness by address, with whatever Host that gives;
# both answers are constant and carry nothing built from the request.
HOST_EXEMPT_PATHS = frozenset({"/healthz", "/readyz"})


async def _refuse(scope: Scope, receive: Receive, send: Send, exc: AuthgateError) -> None:
    response = error_response(Request(scope), exc)
    await response(scope, receive, send)


def host_name(value: str) -> str | None:
    """The lower-case host name of a Host header value, without its port; None when the
    value is not ``host[:port]``."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
    else:
        name, sep, port = value.partition(":")
        rest = sep + port
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        return None
    return name or None


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A receive that answers ``body`` (already read in full) once, then ``receive``'s own
    messages (``http.disconnect``, when the client leaves)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class AllowedHostsMiddleware:
    """Refuses (400 ``invalid_host``) a request whose Host is not an allowed name, so that
    nothing the app builds can ever come from a forged Host."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(h.lower() for h in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in HOST_EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        hosts = [value for name, value in scope["headers"] if name == b"host"]
        name = host_name(hosts[0].decode("latin-1")) if len(hosts) == 1 else None
        if name is None or name not in self.allowed:
            await _refuse(scope, receive, send, InvalidHost("the Host is not allowed"))
            return
        await self.app(scope, receive, send)


def _is_json(content_type: str) -> bool:
    """JSON by our reading or by FastAPI's (``application/json``, ``application/*+json``):
    whatever either would parse as JSON is checked here first."""
    simple = media_type(content_type)
    if simple == "application/json" or (
        simple.startswith("application/") and simple.endswith("+json")
    ):
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


class StrictJSONMiddleware:
    """Reads every JSON request body whole and parses it with :func:`loads_body` before the
    app sees it: a body that is not one strict JSON object within the depth cap gets 400
    ``invalid_json`` and never reaches a route. The body is then replayed unchanged.

    It sits inside the body-size cap, so the body it buffers is bounded."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not any(
            name == b"content-type" and _is_json(value.decode("latin-1"))
            for name, value in scope["headers"]
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left, or the size cap already answered 413
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body:
            try:
                loads_body(body)
            except InvalidJSON as exc:
                await _refuse(scope, receive, send, exc)
                return
        await self.app(scope, replay_body(body, receive), send)
