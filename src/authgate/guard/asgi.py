"""A pure-ASGI middleware, compatible with Starlette's ``request.user`` / ``request.auth``,
and a decorator for Starlette endpoints.

The middleware reads the token from ``Authorization: Bearer`` (or the configured cookie
when there is no Authorization header; never from the query string). Without a token the
request goes on as anonymous (``scope["user"]`` is Starlette's UnauthenticatedUser); with
a valid one ``scope["user"]`` is the Principal and ``scope["auth"]`` Starlette's
``AuthCredentials(["authenticated", *principal.permissions])`` (Starlette's convention, so
that its ``requires("authenticated")`` works too); an invalid one is answered 401
``Bearer error="invalid_token"`` at once (a WebSocket is closed with 1008). It starts the
guard when the app has started, and closes it when the app shuts down.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.authentication import AuthCredentials, UnauthenticatedUser
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request, cookie_parser
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authgate.bearer import CSRF_HEADER, check_cookie_csrf, csrf_cookie_for, parse_bearer
from authgate.errors import AuthenticationRequired, CsrfFailed, InvalidRequest, InvalidToken
from authgate.guard.guard import Guard
from authgate.guard.principal import Principal, Requirement
from authgate.guard.responses import REFUSALS, challenge

_CSRF_HEADER = CSRF_HEADER.lower().encode("latin-1")
SCOPE_KEY = "authgate.principal"
"""``scope[SCOPE_KEY]`` is ``(guard, principal)``: which guard verified the request, so that
a second guard (another audience) never takes a principal it did not verify."""


def _same_origin_handshake(origin: str | None, host: str | None) -> None:
    if not origin or not host:
        raise CsrfFailed("a cookie-authenticated WebSocket handshake without Origin or Host")
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or parts.netloc.lower() != host.lower():
        raise CsrfFailed("a cookie-authenticated WebSocket handshake from another origin")


def token_from_scope(
    scope: Scope, cookie: str | None, *, csrf_cookie: str | None = None
) -> str | None:
    """The bearer token of an ASGI scope, or None when it carries none (no Authorization
    header and no cookie, or another scheme). Raises what
    :func:`authgate.bearer.parse_bearer` raises for a repeated header or an empty token,
    and CsrfFailed for a token from ``cookie`` on an unsafe request without the
    ``X-CSRF-Token`` header equal to ``csrf_cookie`` (default: authgate's own CSRF cookie),
    or on a WebSocket handshake whose ``Origin`` is not this host's."""
    values: list[str] = []
    cookies: list[bytes] | None = None
    csrf: str | None = None
    origin: str | None = None
    host: str | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            values.append(value.decode("latin-1"))
        elif name == b"cookie" and cookie is not None:
            cookies = [value] if cookies is None else [*cookies, value]
        elif name == _CSRF_HEADER:
            csrf = value.decode("latin-1")
        elif name == b"origin":
            origin = value.decode("latin-1")
        elif name == b"host":
            host = value.decode("latin-1")
    if not values:
        if cookie is None or cookies is None:
            return None
        jar = cookie_parser(b"; ".join(cookies).decode("latin-1"))
        token = jar.get(cookie)
        if not token:
            return None
        if scope["type"] == "websocket":
            # No CORS and no custom header on a WebSocket: a cookie authenticates only a
            # handshake from this very origin (cross-site WebSocket hijacking).
            _same_origin_handshake(origin, host)
            return token
        check_cookie_csrf(
            scope.get("method", "GET"),
            header=csrf,
            cookie=jar.get(csrf_cookie or csrf_cookie_for(cookie)),
        )
        return token
    try:
        return parse_bearer(values)
    except AuthenticationRequired:
        return None


def credentials(principal: Principal) -> AuthCredentials:
    """Starlette's ``request.auth`` for a principal: ``authenticated`` and its permissions."""
    return AuthCredentials(["authenticated", *principal.permissions])


async def send_challenge(send: Send, exc: Exception, realm: str | None) -> None:
    """Answer a refusal per RFC 6750 over raw ASGI."""
    assert isinstance(exc, REFUSALS)
    ch = challenge(exc, realm=realm)
    await send({"type": "http.response.start", "status": ch.status, "headers": ch.raw_headers})
    await send({"type": "http.response.body", "body": ch.body})


class GuardMiddleware:
    """``app.add_middleware(guard.asgi_middleware)``, or ``GuardMiddleware(app, guard=g)``."""

    def __init__(self, app: ASGIApp, *, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" or kind == "websocket":
            guard = self.guard
            try:
                token = token_from_scope(scope, guard.cookie, csrf_cookie=guard.csrf_cookie)
                if token is None:
                    scope["user"] = UnauthenticatedUser()
                    scope["auth"] = AuthCredentials()
                else:
                    found = guard.verify_cached(token)  # the hot path: no coroutine
                    # None: only I/O can decide (start the guard, or fetch a key).
                    principal = found if found is not None else await guard.verify(token)
                    scope["user"] = principal
                    scope["auth"] = credentials(principal)
                    scope[SCOPE_KEY] = (guard, principal)
            except (InvalidRequest, InvalidToken, CsrfFailed) as exc:
                if kind == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                else:
                    await send_challenge(send, exc, guard.realm)
                return
            await self.app(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def lifespan_send(message: Message) -> None:
            nonlocal started
            kind = message["type"]
            if kind == "lifespan.startup.complete":
                try:
                    await self.guard.start()
                except Exception as exc:
                    message = {"type": "lifespan.startup.failed", "message": f"authgate: {exc}"}
                else:
                    started = True
            elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed") and started:
                await self.guard.close()
            await send(message)

        await self.app(scope, receive, lifespan_send)


_Endpoint = Callable[..., Any]


def required(guard: Guard, requirement: Requirement) -> Callable[[_Endpoint], _Endpoint]:
    """Wrap a Starlette endpoint ``(request) -> response``: 401/403 per RFC 6750 unless
    the request's token meets ``requirement``. Reuses the middleware's Principal."""

    def decorate(endpoint: _Endpoint) -> _Endpoint:
        is_async = inspect.iscoroutinefunction(endpoint)

        @functools.wraps(endpoint)
        async def wrapper(request: Request, *args: Any, **kwargs: Any) -> Any:
            scope = request.scope
            seen = scope.get(SCOPE_KEY)
            try:
                if seen is not None and seen[0] is guard:
                    principal: Principal = seen[1]
                else:
                    token = token_from_scope(scope, guard.cookie, csrf_cookie=guard.csrf_cookie)
                    if token is None:
                        raise AuthenticationRequired("no bearer token")
                    principal = await guard.verify(token)
                    scope["user"] = principal
                    scope["auth"] = credentials(principal)
                    scope[SCOPE_KEY] = (guard, principal)
                requirement.check(principal)
            except REFUSALS as exc:
                ch = challenge(exc, realm=guard.realm)
                return Response(ch.body, status_code=ch.status, headers=ch.headers)
            if is_async:
                result: Awaitable[Any] = endpoint(request, *args, **kwargs)
                return await result
            return await run_in_threadpool(endpoint, request, *args, **kwargs)

        return wrapper

    return decorate


__all__ = [
    "SCOPE_KEY",
    "GuardMiddleware",
    "credentials",
    "required",
    "send_challenge",
    "token_from_scope",
]
