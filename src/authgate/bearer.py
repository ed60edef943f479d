"""The one reader of ``Authorization: Bearer`` (RFC 6750 section 2.1), for the server and
the guard alike: a request with two Authorization headers is refused, never read as its
first or its last."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from authgate.errors import AuthenticationRequired, CsrfFailed, InvalidRequest, InvalidToken

CSRF_HEADER = "X-CSRF-Token"
"""The header that carries the CSRF proof of a request whose token is a cookie."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

_OWS = " \t\r\n\x0b\x0c"  # ASCII whitespace only: a header value is bytes read as latin-1


def parse_bearer(authorization: Sequence[str], *, cookie: str | None = None) -> str:
    """The bearer token of a request, given every ``Authorization`` header value it carries
    (in order) and, for a caller that reads one, the token of its cookie (used only when
    there is no Authorization header; the query string is never read).

    Raises InvalidRequest when the header is repeated, AuthenticationRequired when there is
    no bearer token (no header and no cookie, or another scheme), and InvalidToken when the
    token is empty; TypeError for one string instead of the list of values.
    """
    if isinstance(authorization, str):
        raise TypeError("pass every Authorization header value, as a list")
    count = len(authorization)
    if count != 1:
        if count:
            raise InvalidRequest("the Authorization header is repeated")
        if cookie:
            return cookie
        raise AuthenticationRequired("no bearer token")
    value = authorization[0]
    if value[:7] == "Bearer ":  # the usual spelling: no case folding, no split
        token = value[7:].strip(_OWS)
    else:
        scheme, _, rest = value.strip(_OWS).partition(" ")
        if not scheme.isascii() or scheme.lower() != "bearer":
            raise AuthenticationRequired("Authorization is not Bearer")
        token = rest.strip(_OWS)
    if not token:
        raise InvalidToken("empty bearer token")
    return token


def csrf_cookie_for(cookie: str) -> str:
    """The CSRF cookie that authgate's cookie mode sets beside an access cookie:
    ``__Host-authgate_csrf_token`` when the access cookie is prefixed (an https
    deployment), else ``authgate_csrf_token``."""
    prefixed = cookie.startswith(("__Host-", "__Secure-"))
    return "__Host-authgate_csrf_token" if prefixed else "authgate_csrf_token"


def check_cookie_csrf(method: str, *, header: str | None, cookie: str | None) -> None:
    """For a request whose token came from a cookie (which a browser attaches by itself):
    a safe method (GET, HEAD, OPTIONS, TRACE) passes; any other needs the CSRF header
    equal to the CSRF cookie (double submit, compared in constant time), or CsrfFailed."""
    if method.upper() in SAFE_METHODS:
        return
    if not header or not cookie:
        raise CsrfFailed("a cookie-authenticated unsafe request without its CSRF proof")
    if not hmac.compare_digest(header.encode("utf-8"), cookie.encode("utf-8")):
        raise CsrfFailed("the CSRF header does not match the CSRF cookie")


__all__ = [
    "CSRF_HEADER",
    "SAFE_METHODS",
    "check_cookie_csrf",
    "csrf_cookie_for",
    "parse_bearer",
]
