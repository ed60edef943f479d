"""/userinfo (OpenID Connect Core 5.3): the claims of an access token's user, by its scope.

The token comes in ``Authorization: Bearer`` only; failures carry the RFC 6750 challenge
(``invalid_token`` 401, ``insufficient_scope`` 403 for a token without ``openid``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials

from authgate.server.deps import NO_STORE, Svc, bearer_scheme, bearer_token
from authgate.server.schemas import problem_responses

router = APIRouter(tags=["oidc"])
_Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
_USERINFO: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The user's claims: sub; name (profile); email, email_verified (email)",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["sub"],
                    "properties": {
                        "sub": {"type": "string"},
                        "name": {"type": "string"},
                        "email": {"type": "string"},
                        "email_verified": {"type": "boolean"},
                    },
                }
            }
        },
    },
    **problem_responses(401, 403, 429, 503),
}


async def _userinfo(request: Request, svc: Svc) -> JSONResponse:
    claims = await svc.oidc.userinfo(bearer_token(request))
    return JSONResponse(claims, headers=NO_STORE)


@router.get("/userinfo", responses=_USERINFO)
async def userinfo_get(request: Request, svc: Svc, _: _Bearer) -> JSONResponse:
    """The claims of the Bearer token's user, by the token's scope."""
    return await _userinfo(request, svc)


@router.post("/userinfo", responses=_USERINFO)
async def userinfo_post(request: Request, svc: Svc, _: _Bearer) -> JSONResponse:
    """The same as GET (OpenID Connect Core 5.3.1)."""
    return await _userinfo(request, svc)
