"""The cookie mode of /auth/login, /auth/refresh and /auth/logout: browser sessions for
first-party single-page apps.

A request asks for it with ``Authgate-Token-Delivery: cookie`` (AUTHGATE_COOKIE_MODE must
be on; the default, ``body``, is the JSON token response as ever). Then:

* the refresh token goes in an HttpOnly, SameSite=Strict cookie scoped to ``/auth``
  (``__Secure-authgate_refresh``; ``authgate_refresh`` over plain http on loopback), never
  in the body;
* the CSRF proof (an HMAC of that refresh token, see ``Sessions.csrf_token``) goes in the
  body's ``csrf_token`` and in a cookie that scripts of the site may read
  (``__Host-authgate_csrf_token``, Path=/); a refresh or a Bearer-less logout must send it
  back in ``X-CSRF-Token``;
* with AUTHGATE_ACCESS_COOKIE, the access token goes in an HttpOnly cookie a guard reads
  (``__Host-authgate_access``, Path=/) instead of the body.

Every cookie is Secure when the public URL is https (the settings refuse the cookie mode
over plain http off loopback), and carries no Domain: it stays on authgate's own host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from authgate.errors import CookieModeOff, CsrfFailed
from authgate.server.deps import NO_STORE
from authgate.service.sessions import TokenPair
from authgate.settings import Settings
from authgate.wiring import Services

DELIVERY_HEADER = "Authgate-Token-Delivery"
CSRF_HEADER = "X-CSRF-Token"
REFRESH_COOKIE_PATH = "/auth"
Delivery = Literal["body", "cookie"]


@dataclass(frozen=True, slots=True)
class CookieNames:
    """The cookie mode's cookie names for one deployment: prefixed when Secure."""

    refresh: str
    csrf: str
    access: str
    secure: bool

    @classmethod
    def of(cls, settings: Settings) -> CookieNames:
        """``__Secure-`` for the refresh cookie (``__Host-`` needs Path=/, and it is scoped to
        /auth), ``__Host-`` for the others, when the public URL is https."""
        if settings.cookies_secure:
            return cls(
                "__Secure-authgate_refresh",
                "__Host-authgate_csrf_token",
                "__Host-authgate_access",
                True,
            )
        return cls("authgate_refresh", "authgate_csrf_token", "authgate_access", False)


def wants_cookies(delivery: Delivery | None, settings: Settings) -> bool:
    """Whether the request asked for cookie delivery; CookieModeOff (400) when it did and
    the setting is off: the tokens are never silently put in the body instead."""
    if delivery != "cookie":
        return False
    if not settings.cookie_mode:
        raise CookieModeOff("cookie delivery asked for, and AUTHGATE_COOKIE_MODE is off")
    return True


def allowed_origins(settings: Settings, request: Request | None = None) -> frozenset[str]:
    """The origins a cookie-mode request may come from: the public URL's, the issuer's,
    AUTHGATE_CORS_ORIGINS, and the request's own (its Host passed the allowed-hosts gate)."""
    own = set()
    if request is not None:
        own.add(f"{request.url.scheme}://{request.headers.get('host', '')}".lower())
    for url in (settings.public_base_url, settings.issuer):
        parts = urlsplit(url)
        own.add(f"{parts.scheme}://{parts.netloc}".lower())
    return frozenset({*own, *(o.lower() for o in settings.cors_origins)})


def check_origin(request: Request, settings: Settings) -> None:
    """Refuse (CsrfFailed) a request a browser says came from another site
    (``Sec-Fetch-Site: cross-site``), or whose ``Origin`` is not allowed."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "same-site", "none"):
        raise CsrfFailed("cross-site request")
    origin = request.headers.get("origin")
    if origin is not None and origin.lower() not in allowed_origins(settings, request):
        raise CsrfFailed("origin not allowed")


def refresh_cookie(request: Request, settings: Settings) -> str | None:
    """The refresh token of the request's cookie, if any."""
    return request.cookies.get(CookieNames.of(settings).refresh) or None


def token_cookies_response(pair: TokenPair, svc: Services, *, status: int = 200) -> JSONResponse:
    """The token response of the cookie mode: no ``refresh_token`` in the body (and no
    ``access_token`` with AUTHGATE_ACCESS_COOKIE), the ``csrf_token``, and the cookies."""
    settings = svc.settings
    names = CookieNames.of(settings)
    csrf = svc.sessions.csrf_token(pair.refresh_token)
    body = {k: v for k, v in pair.response().items() if k != "refresh_token"}
    if settings.access_cookie:
        del body["access_token"]
    body["csrf_token"] = csrf
    response = JSONResponse(body, status_code=status, headers=NO_STORE)
    age = pair.refresh_expires_in
    _set(response, names.refresh, pair.refresh_token, names, age, REFRESH_COOKIE_PATH, True)
    # Scripts of the site read it to send it back in X-CSRF-Token: not HttpOnly.
    _set(response, names.csrf, csrf, names, age, "/", False)
    if settings.access_cookie:
        _set(response, names.access, pair.access_token, names, pair.expires_in, "/", True)
    return response


def _set(
    response: Response,
    name: str,
    value: str,
    names: CookieNames,
    max_age: int,
    path: str,
    httponly: bool,
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        secure=names.secure,
        httponly=httponly,
        samesite="strict",
    )


def clear_cookies(response: Response, settings: Settings) -> None:
    """Remove every cookie of the cookie mode."""
    names = CookieNames.of(settings)
    for name, path, httponly in (
        (names.refresh, REFRESH_COOKIE_PATH, True),
        (names.csrf, "/", False),
        (names.access, "/", True),
    ):
        response.delete_cookie(
            name, path=path, secure=names.secure, httponly=httponly, samesite="strict"
        )


__all__ = [
    "CSRF_HEADER",
    "DELIVERY_HEADER",
    "REFRESH_COOKIE_PATH",
    "CookieNames",
    "Delivery",
    "allowed_origins",
    "check_origin",
    "clear_cookies",
    "refresh_cookie",
    "token_cookies_response",
    "wants_cookies",
]
