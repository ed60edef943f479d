"""The FastAPI dependency: ``p: Principal = Depends(guard.require("posts:read"))``.

It is a security scheme itself (HTTP Bearer, JWT), so the route shows in the OpenAPI
security schemes and the docs' "Authorize" button sends the token. It takes the only
``request`` parameter, so FastAPI does the least work per request.
"""

# No `from __future__ import annotations`: FastAPI reads this signature at runtime.

from fastapi import HTTPException, Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase

from authgate.errors import AuthenticationRequired, CsrfFailed, InvalidRequest, InvalidToken
from authgate.guard.asgi import SCOPE_KEY, token_from_scope
from authgate.guard.guard import Guard
from authgate.guard.principal import Principal, Requirement
from authgate.guard.responses import REFUSALS, challenge

SCHEME_NAME = "authgate"


def http_error(exc: Exception, realm: "str | None") -> HTTPException:
    """An RFC 6750 refusal as FastAPI's HTTPException (``detail`` is the error code)."""
    ch = challenge(exc, realm=realm)  # type: ignore[arg-type]
    return HTTPException(ch.status, detail=ch.error, headers=ch.headers)


class GuardDependency(SecurityBase):
    """Answers the request's Principal, or raises a 401/403 HTTPException per RFC 6750."""

    def __init__(self, guard: Guard, requirement: Requirement) -> None:
        self.guard = guard
        self.requirement = requirement
        source = f" issued by {guard.issuer}" if guard.issuer else ""
        self.model = HTTPBearerModel(
            bearerFormat="JWT", description=f"An authgate access token{source}."
        )
        self.scheme_name = SCHEME_NAME

    async def __call__(self, request: Request) -> Principal:
        guard = self.guard
        scope = request.scope
        seen = scope.get(SCOPE_KEY)
        if seen is not None and seen[0] is guard:
            principal: Principal = seen[1]
        else:
            try:
                token = token_from_scope(scope, guard.cookie, csrf_cookie=guard.csrf_cookie)
                if token is None:
                    raise AuthenticationRequired("no bearer token")
                found = guard.verify_cached(token)  # the hot path: no coroutine
                # None: only I/O can decide (start the guard, or fetch a key).
                principal = found if found is not None else await guard.verify(token)
            except (AuthenticationRequired, CsrfFailed, InvalidRequest, InvalidToken) as exc:
                raise http_error(exc, guard.realm) from None
            scope[SCOPE_KEY] = (guard, principal)
        try:
            self.requirement.check(principal)
        except REFUSALS as exc:
            raise http_error(exc, guard.realm) from None
        return principal


__all__ = ["SCHEME_NAME", "GuardDependency", "http_error"]
