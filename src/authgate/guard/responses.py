"""The guard's answers to a refusal (RFC 6750 section 3), in one place: every adapter turns
the :class:`Challenge` of :func:`challenge` into its framework's response, and none builds a
status, a header or a body of its own."""

from __future__ import annotations

from dataclasses import dataclass

from authgate.errors import (
    AuthenticationRequired,
    AuthgateError,
    CsrfFailed,
    EmailNotVerified,
    InsufficientScope,
    InsufficientUserAuthentication,
    InvalidRequest,
    InvalidToken,
)

REFUSALS = (
    AuthenticationRequired,
    CsrfFailed,
    InvalidRequest,
    InvalidToken,
    InsufficientScope,
    EmailNotVerified,
    InsufficientUserAuthentication,
)
"""The errors a protected route answers with a challenge (anything else is a bug: a 500)."""


@dataclass(frozen=True, slots=True)
class Challenge:
    """A refusal as HTTP: status, ``WWW-Authenticate`` and a small JSON body."""

    status: int
    www_authenticate: str
    error: str

    @property
    def body(self) -> bytes:
        """``{"error": "..."}``; never the reason."""
        return b'{"error":"' + self.error.encode("ascii") + b'"}'

    @property
    def headers(self) -> dict[str, str]:
        """The response headers."""
        return {
            "WWW-Authenticate": self.www_authenticate,
            "Cache-Control": "no-store",
            "Content-Type": "application/json",
        }

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The response headers for raw ASGI, with the body's length."""
        return [
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()),
            (b"content-length", str(len(self.body)).encode("ascii")),
        ]


def challenge(exc: AuthgateError, *, realm: str | None = None) -> Challenge:
    """The RFC 6750 section 3 answer to a refusal: 401 ``Bearer`` without a token, 401
    ``error="invalid_token"`` for a bad one (the revocation feed or the keys unavailable
    included: no token is accepted then), 403 ``error="insufficient_scope"`` with the
    needed ``scope``, 403 ``error="insufficient_scope"`` with the body's error
    ``email_not_verified`` for a route that needs a verified address, 400
    ``error="invalid_request"`` for a malformed request, 403 with the body's error
    ``csrf_failed`` for a cookie-authenticated unsafe request without its CSRF proof."""
    params = [f'realm="{realm}"'] if realm else []
    if isinstance(exc, InsufficientScope):
        status, error = 403, "insufficient_scope"
        params.append('error="insufficient_scope"')
        scope = " ".join(exc.context.get("scope", ()))
        if scope:
            params.append(f'scope="{scope}"')
    elif isinstance(exc, InsufficientUserAuthentication):
        # RFC 9470 section 3: a 401 that names what the login lacks.
        status, error = 401, "insufficient_user_authentication"
        params.append('error="insufficient_user_authentication"')
        params.append(f'error_description="{exc.context.get("description", "step-up needed")}"')
        if exc.context.get("acr_values"):
            params.append(f'acr_values="{exc.context["acr_values"]}"')
        if exc.context.get("max_age") is not None:
            params.append(f'max_age="{int(exc.context["max_age"])}"')
    elif isinstance(exc, CsrfFailed):
        # A token from a cookie on an unsafe request without its CSRF proof: the token
        # itself is fine, the request is not the user's own.
        status, error = 403, "csrf_failed"
    elif isinstance(exc, EmailNotVerified):
        status, error = 403, "email_not_verified"
        params.append('error="insufficient_scope"')
    elif isinstance(exc, InvalidRequest):
        status, error = 400, "invalid_request"
        params.append('error="invalid_request"')
    elif isinstance(exc, InvalidToken):
        status, error = 401, "invalid_token"
        params.append('error="invalid_token"')
    else:  # AuthenticationRequired, and anything unexpected: no token was accepted
        status, error = 401, "authentication_required"
    value = "Bearer " + ", ".join(params) if params else "Bearer"
    return Challenge(status, value, error)


__all__ = ["REFUSALS", "Challenge", "challenge"]
