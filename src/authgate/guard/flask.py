"""Flask: a view decorator and an extension (install the ``flask`` extra).

``@guard.flask_required("posts:read")`` answers 401/403 per RFC 6750 unless the request's
token meets the requirement; ``flask.g.principal`` is then the Principal.
``FlaskGuard(guard, app)`` also authenticates every request that carries a token
(``g.principal``, None without one) and answers 401 for an invalid one.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Collection
from typing import Any

from flask import Flask, Response, g, request

from authgate.bearer import CSRF_HEADER, check_cookie_csrf, csrf_cookie_for, parse_bearer
from authgate.errors import AuthenticationRequired, CsrfFailed, InvalidRequest, InvalidToken
from authgate.guard.guard import Guard
from authgate.guard.principal import Principal, Requirement
from authgate.guard.responses import REFUSALS, challenge

_View = Callable[..., Any]


def refusal(exc: Exception, realm: str | None) -> Response:
    """An RFC 6750 refusal as a Flask response."""
    ch = challenge(exc, realm=realm)  # type: ignore[arg-type]
    return Response(ch.body, status=ch.status, headers=ch.headers)


def request_token(cookie: str | None, *, csrf_cookie: str | None = None) -> str:
    """The bearer token of the current request (AuthenticationRequired without one);
    CsrfFailed for a token from ``cookie`` on an unsafe request without its CSRF proof."""
    values = request.headers.getlist("Authorization")
    value = request.cookies.get(cookie) if cookie and not values else None
    if cookie and value:
        check_cookie_csrf(
            request.method,
            header=request.headers.get(CSRF_HEADER),
            cookie=request.cookies.get(csrf_cookie or csrf_cookie_for(cookie)),
        )
    return parse_bearer(values, cookie=value or None)


def principal_of_request(guard: Guard) -> Principal:
    """The current request's Principal (verified once per request); raises the refusal."""
    seen = g.get("_authgate")
    if seen is not None and seen[0] is guard:
        principal: Principal = seen[1]
        return principal
    principal = guard.verify_sync(request_token(guard.cookie, csrf_cookie=guard.csrf_cookie))
    g._authgate = (guard, principal)
    g.principal = principal
    return principal


def current_principal() -> Principal | None:
    """The Principal of the current request, if one was verified."""
    principal: Principal | None = g.get("principal")
    return principal


def required(guard: Guard, requirement: Requirement) -> Callable[[_View], _View]:
    """The decorator behind :meth:`Guard.flask_required`."""

    def check() -> Response | None:
        try:
            requirement.check(principal_of_request(guard))
        except REFUSALS as exc:
            return refusal(exc, guard.realm)
        return None

    def decorate(view: _View) -> _View:
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                refused = check()
                return refused if refused is not None else await view(*args, **kwargs)

            return async_wrapper

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            refused = check()
            return refused if refused is not None else view(*args, **kwargs)

        return wrapper

    return decorate


class FlaskGuard:
    """The extension: ``FlaskGuard(guard, app)`` or ``ext = FlaskGuard(guard)`` then
    ``ext.init_app(app)``. The guard starts on the first request of each process."""

    def __init__(self, guard: Guard, app: Flask | None = None) -> None:
        self.guard = guard
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Authenticate every request that carries a token."""
        app.extensions["authgate"] = self
        app.before_request(self._authenticate)

    def _authenticate(self) -> Response | None:
        g.principal = None
        try:
            principal_of_request(self.guard)
        except AuthenticationRequired:
            return None
        except (InvalidRequest, InvalidToken, CsrfFailed) as exc:
            return refusal(exc, self.guard.realm)
        return None

    def required(
        self,
        *permissions: str,
        roles: Collection[str] = (),
        any_of: Collection[str] = (),
        verified: bool = False,
        mfa: bool = False,
        max_auth_age: int | None = None,
    ) -> Callable[[_View], _View]:
        """Same as :meth:`Guard.flask_required`."""
        return required(
            self.guard,
            self.guard.requirement(
                permissions,
                roles=roles,
                any_of=any_of,
                verified=verified,
                mfa=mfa,
                max_auth_age=max_auth_age,
            ),
        )


__all__ = [
    "FlaskGuard",
    "current_principal",
    "principal_of_request",
    "refusal",
    "request_token",
    "required",
]
