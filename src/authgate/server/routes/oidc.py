"""/userinfo (OpenID Connect Core 5.3): the claims of an access token's user, by its scope;
and the user's remembered consents (``/auth/consents``): list, and revoke one.

The token comes in ``Authorization: Bearer`` only; failures carry the RFC 6750 challenge
(``invalid_token`` 401, ``insufficient_scope`` 403 for a token without ``openid``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials

from authgate.errors import NotFound
from authgate.server.deps import NO_STORE, Authenticated, Svc, bearer_scheme, bearer_token
from authgate.server.routing import PrefixRouter
from authgate.server.schemas import COMMON_ERRORS, ConsentOut, problem_responses

router = PrefixRouter(tags=["oidc"])
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


@router.get("/auth/consents", response_model=list[ConsentOut], responses=COMMON_ERRORS)
async def consents(ctx: Authenticated, svc: Svc) -> list[ConsentOut]:
    """The third-party clients the user let use the account, and with which scopes."""
    out = []
    for c in await svc.oidc.consents(ctx.user.id):
        client = await svc.clients.get(c.client_id)
        out.append(
            ConsentOut(
                client_id=c.client_id,
                client_name=client.name if client is not None else c.client_id,
                scope=sorted(c.scope.split()),
                granted_at=c.granted_at,
            )
        )
    return out


@router.delete(
    "/auth/consents/{client_id}",
    status_code=204,
    responses=COMMON_ERRORS | problem_responses(404),
)
async def revoke_consent(client_id: str, ctx: Authenticated, svc: Svc) -> Response:
    """Take a consent back: the client asks again next time, and the sessions the user
    gave it end now (the revocation feed)."""
    if not await svc.oidc.revoke_consent(ctx.user.id, client_id):
        raise NotFound("no such consent")
    return Response(status_code=204)
