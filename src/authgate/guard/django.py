"""Django: a middleware and a view decorator (install the ``django`` extra).

Settings: ``AUTHGATE_GUARD`` is a Guard, or the dotted path of one
(``"myproject.auth.guard"``). Add ``"authgate.guard.django.GuardMiddleware"`` to
``MIDDLEWARE``: every request gets ``request.principal`` (None without a token), and an
invalid token is answered 401 ``Bearer error="invalid_token"``. Decorate views with
``@guard.django_required("posts:read")`` (it works with or without the middleware).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped,unused-ignore]
from django.http import HttpRequest, HttpResponse  # type: ignore[import-untyped,unused-ignore]
from django.utils.module_loading import import_string  # type: ignore[import-untyped,unused-ignore]

from authgate.bearer import CSRF_HEADER, check_cookie_csrf, csrf_cookie_for, parse_bearer
from authgate.errors import AuthenticationRequired, CsrfFailed, InvalidRequest, InvalidToken
from authgate.guard.guard import Guard
from authgate.guard.principal import Principal, Requirement
from authgate.guard.responses import REFUSALS, challenge

_View = Callable[..., Any]


def configured_guard() -> Guard:
    """The Guard named by ``settings.AUTHGATE_GUARD``."""
    from django.conf import settings  # type: ignore[import-untyped,unused-ignore]

    value = getattr(settings, "AUTHGATE_GUARD", None)
    if isinstance(value, str):
        value = import_string(value)
    if not isinstance(value, Guard):
        raise ImproperlyConfigured("settings.AUTHGATE_GUARD must be a Guard or its dotted path")
    return value


def refusal(exc: Exception, realm: str | None) -> HttpResponse:
    """An RFC 6750 refusal as a Django response."""
    ch = challenge(exc, realm=realm)  # type: ignore[arg-type]
    return HttpResponse(ch.body, status=ch.status, headers=ch.headers)


def request_token(
    request: HttpRequest, cookie: str | None, *, csrf_cookie: str | None = None
) -> str:
    """The bearer token of ``request`` (AuthenticationRequired without one); CsrfFailed
    for a token from ``cookie`` on an unsafe request without its CSRF proof."""
    header = request.META.get("HTTP_AUTHORIZATION")
    values = [header] if isinstance(header, str) else []
    value = request.COOKIES.get(cookie) if cookie and not values else None
    if cookie and value:
        check_cookie_csrf(
            request.method or "GET",
            header=request.headers.get(CSRF_HEADER),
            cookie=request.COOKIES.get(csrf_cookie or csrf_cookie_for(cookie)),
        )
    return parse_bearer(values, cookie=value or None)


def _token(request: HttpRequest, guard: Guard) -> str:
    return request_token(request, guard.cookie, csrf_cookie=guard.csrf_cookie)


def _seen(request: HttpRequest, guard: Guard) -> Principal | None:
    seen = getattr(request, "_authgate", None)
    if seen is not None and seen[0] is guard:
        principal: Principal = seen[1]
        return principal
    return None


def _remember(request: HttpRequest, guard: Guard, principal: Principal) -> None:
    request._authgate = (guard, principal)  # type: ignore[attr-defined,unused-ignore]
    request.principal = principal  # type: ignore[attr-defined,unused-ignore]


class GuardMiddleware:
    """Sets ``request.principal``; answers 401 for an invalid token."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.guard = configured_guard()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        guard = self.guard
        request.principal = None  # type: ignore[attr-defined,unused-ignore]
        try:
            principal = guard.verify_sync(_token(request, guard))
        except AuthenticationRequired:
            return self.get_response(request)
        except (InvalidRequest, InvalidToken, CsrfFailed) as exc:
            return refusal(exc, guard.realm)
        _remember(request, guard, principal)
        return self.get_response(request)


def required(guard: Guard, requirement: Requirement) -> Callable[[_View], _View]:
    """The decorator behind :meth:`Guard.django_required` (sync and async views)."""

    def decorate(view: _View) -> _View:
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                try:
                    principal = _seen(request, guard)
                    if principal is None:
                        principal = await guard.verify(_token(request, guard))
                        _remember(request, guard, principal)
                    requirement.check(principal)
                except REFUSALS as exc:
                    return refusal(exc, guard.realm)
                return await view(request, *args, **kwargs)

            return async_wrapper

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            try:
                principal = _seen(request, guard)
                if principal is None:
                    principal = guard.verify_sync(_token(request, guard))
                    _remember(request, guard, principal)
                requirement.check(principal)
            except REFUSALS as exc:
                return refusal(exc, guard.realm)
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


__all__ = ["GuardMiddleware", "configured_guard", "refusal", "request_token", "required"]
