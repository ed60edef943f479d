"""The ONE place that maps AuthgateError to an HTTP status, headers and body.

/auth and /admin answer RFC 9457 problem+json with a stable ``code``; /oauth2 answers the
RFC 6749 error body. The reason of an error goes to the log, never to the client.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authgate import errors as e

log = logging.getLogger("authgate.server")

PROBLEM_JSON = "application/problem+json"

_STATUS: list[tuple[type[e.AuthgateError], int, str]] = [
    (e.AuthenticationRequired, 401, "Authentication required"),
    (e.InvalidToken, 401, "The token is invalid"),
    (e.InvalidMfaCode, 401, "The second factor is wrong"),
    (e.PasskeyCloned, 401, "The passkey's signature counter went back: it may be cloned"),
    (e.PasskeyRefused, 401, "The passkey response is refused"),
    (e.InvalidCredentials, 401, "Invalid email or password"),
    (e.InvalidMfaToken, 401, "The MFA login is invalid, expired or used"),
    (e.InsufficientUserAuthentication, 401, "A stronger or more recent login is needed"),
    (e.MfaConflict, 409, "A second factor is on already"),
    (e.PasskeyExists, 409, "This passkey is registered already"),
    (e.InvalidGrant, 401, "The grant is invalid, expired or revoked"),
    (e.UnauthorizedClient, 400, "The client is not allowed this grant"),
    (e.AuthorizeError, 400, "The authorization request is refused"),
    (e.InvalidScope, 400, "The requested scope is not allowed"),
    (e.WeakPassword, 400, "The password is too weak"),
    (e.PasskeyRegistrationRefused, 400, "The passkey registration is refused"),
    (e.InvalidRequest, 400, "The request is invalid"),
    (e.InvalidKey, 400, "The key is invalid"),
    (e.EmailTaken, 409, "An account with this email exists"),
    (e.Conflict, 409, "Conflict"),
    (e.RegistrationClosed, 403, "Registration is closed"),
    (e.InsufficientScope, 403, "The token lacks a needed permission"),
    (e.EmailNotVerified, 403, "The email address is not verified"),
    (e.CsrfFailed, 403, "The CSRF proof is missing or wrong"),
    (e.CookieModeOff, 400, "The cookie mode is off"),
    (e.LinkTokenRefused, 400, "The link is invalid, used, expired or replaced"),
    (e.Forbidden, 403, "Forbidden"),
    (e.NotFound, 404, "Not found"),
    (e.RequestTimeout, 408, "The request did not arrive in time"),
    (e.BodyTooLarge, 413, "The request body is too large"),
    (e.Throttled, 429, "Too many attempts"),
    (e.Overloaded, 503, "The server is busy"),
    (e.StorageUnavailable, 503, "The database is unavailable"),
    (e.MailError, 503, "Mail cannot be sent now"),
]


def status_of(exc: e.AuthgateError) -> tuple[int, str]:
    """The HTTP status and title of an error."""
    for cls, status, title in _STATUS:
        if isinstance(exc, cls):
            return status, title
    return 400, "The request was refused"


def insufficient_user_authentication(
    exc: e.AuthgateError, *, realm: str | None = "authgate"
) -> str:
    """The RFC 9470 challenge: ``error="insufficient_user_authentication"``, with the
    ``max_age`` and ``acr_values`` the demand names."""
    params = [f'realm="{realm}"'] if realm else []
    params.append('error="insufficient_user_authentication"')
    params.append(f'error_description="{exc.context.get("description", "step-up needed")}"')
    if exc.context.get("max_age") is not None:
        params.append(f'max_age="{int(exc.context["max_age"])}"')
    if exc.context.get("acr_values"):
        params.append(f'acr_values="{exc.context["acr_values"]}"')
    return "Bearer " + ", ".join(params)


def headers_of(exc: e.AuthgateError, status: int) -> dict[str, str]:
    """RFC 6750 challenges and Retry-After."""
    headers: dict[str, str] = {}
    if isinstance(exc, e.AuthenticationRequired):
        headers["WWW-Authenticate"] = 'Bearer realm="authgate"'
    elif isinstance(exc, e.InvalidToken):
        headers["WWW-Authenticate"] = 'Bearer realm="authgate", error="invalid_token"'
    elif isinstance(exc, e.InsufficientUserAuthentication):
        headers["WWW-Authenticate"] = insufficient_user_authentication(exc)
    elif isinstance(exc, e.InsufficientScope):
        scope = " ".join(exc.context.get("scope", ()))
        headers["WWW-Authenticate"] = (
            f'Bearer realm="authgate", error="insufficient_scope", scope="{scope}"'
        )
    if status in (429, 503):
        headers["Retry-After"] = str(int(exc.context.get("retry_after", 1)))
    return headers


def problem_parts(exc: e.AuthgateError) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and problem+json body of an error, for an answer sent below the
    framework (the ASGI middleware): the same mapping as :func:`error_response`."""
    status, title = status_of(exc)
    code = "invalid_token" if isinstance(exc, e.InvalidToken) else exc.code
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "code": code})
    headers = {"Content-Type": PROBLEM_JSON, **headers_of(exc, status)}
    return status, headers, body.encode()


def problem(
    status: int,
    code: str,
    title: str,
    *,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "code": code}
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def oauth_error(status: int, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An RFC 6749 section 5.2 error body."""
    hdrs = {"Cache-Control": "no-store", **(headers or {})}
    return JSONResponse({"error": code}, status_code=status, headers=hdrs)


def error_response(request: Request, exc: e.AuthgateError) -> Response:
    """Map an AuthgateError to its response; log the reason, not the client."""
    status, title = status_of(exc)
    headers = headers_of(exc, status)
    log.info(
        "refused %s %s: %s (%s)",
        request.method,
        request.url.path,
        exc.code,
        exc.reason,
    )
    if request.url.path.startswith("/oauth2/"):
        # RFC 6749 5.2: 400 for every error but invalid_client (401); an authenticated
        # client without the scope an endpoint needs is 403 (RFC 6750 3.1).
        if status not in (403, 429, 503):
            status = 401 if exc.code == "invalid_client" else 400
            headers = {}
        if isinstance(exc, e.InvalidClient) and exc.context.get("basic"):
            headers = {**headers, "WWW-Authenticate": 'Basic realm="authgate"'}
        code = (
            exc.code if exc.code in _OAUTH_CODES else _OAUTH_FALLBACK.get(status, "invalid_request")
        )
        return oauth_error(status, code, headers)
    code = "invalid_token" if isinstance(exc, e.InvalidToken) else exc.code
    extra = (
        {"scope": " ".join(exc.context.get("scope", ()))}
        if isinstance(exc, e.InsufficientScope)
        else None
    )
    return problem(status, code, title, headers=headers, extra=extra)


_OAUTH_CODES = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "invalid_token",
        "insufficient_scope",
    }
)
_OAUTH_FALLBACK = {401: "invalid_request", 429: "slow_down", 503: "temporarily_unavailable"}
