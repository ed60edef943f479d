"""/auth/passkeys: WebAuthn registration and authentication ceremonies, and the user's list.

Each ceremony is two calls: ``.../options`` answers the options of the browser's WebAuthn
call (``PublicKeyCredentialCreationOptionsJSON`` or ``...RequestOptionsJSON``), with a
challenge stored server side (single use, five minutes); ``.../verify`` takes the
``PublicKeyCredential.toJSON()`` the browser answered.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from authgate.errors import InvalidRequest
from authgate.jsonbody import loads_body
from authgate.server.deps import NO_STORE, Authenticated, Svc, client_ip, metrics
from authgate.server.routes.auth import token_response
from authgate.server.routing import PrefixRouter
from authgate.server.schemas import (
    COMMON_ERRORS,
    PasskeyLoginIn,
    PasskeyLoginOptionsIn,
    PasskeyOut,
    PasskeyRegisteredOut,
    PasskeyRegisterIn,
    PasskeyRenameIn,
    PasswordOnlyIn,
    TokenOut,
    problem_responses,
)
from authgate.service.mfa import LoginFacts
from authgate.storage.base import PasskeyRecord

PER_IP_OPTIONS = 300  # anonymous passwordless challenges per IP an hour

router = PrefixRouter(prefix="/auth/passkeys", tags=["passkeys"])

_OPTIONS = {
    "description": "The options of the browser's WebAuthn call, as JSON (base64url bytes)",
    "content": {"application/json": {"schema": {"type": "object"}}},
}


def _out(passkey: PasskeyRecord) -> PasskeyOut:
    return PasskeyOut(
        id=passkey.id,
        name=passkey.name,
        created_at=passkey.created_at,
        last_used_at=passkey.last_used_at,
        transports=list(passkey.transports),
        aaguid=passkey.aaguid,
        backed_up=passkey.backed_up,
    )


def _no_store(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, headers=NO_STORE)


@router.post(
    "/register/options",
    responses=COMMON_ERRORS | problem_responses(403) | {200: _OPTIONS},
)
async def register_options(request: Request, ctx: Authenticated, svc: Svc) -> JSONResponse:
    """Start adding a passkey: the options of ``navigator.credentials.create()`` (no
    attestation; the user's passkeys excluded; user verification preferred). It needs a
    login of the last ten minutes and, for an account with a second factor, one made
    with it: else 401 ``insufficient_user_authentication`` (RFC 9470). 403
    ``email_not_verified`` when a verified address is required."""
    options = await svc.mfa.passkey_registration_options(
        ctx.user, login=LoginFacts.of(ctx.claims), ip=client_ip(request)
    )
    return _no_store(options)


@router.post(
    "/register/verify",
    status_code=201,
    response_model=PasskeyRegisteredOut,
    responses=COMMON_ERRORS | problem_responses(409),
)
async def register_verify(
    body: PasskeyRegisterIn, request: Request, ctx: Authenticated, svc: Svc
) -> JSONResponse:
    """Finish adding a passkey with the browser's answer. 400 ``passkey_registration_refused``
    (a wrong origin or RP ID, an unknown or used challenge), 409 ``passkey_exists``. The
    first second factor of an account also gets ten recovery codes, shown once."""
    passkey, codes = await svc.mfa.add_passkey(
        ctx.user,
        body.credential,
        name=body.name,
        login=LoginFacts.of(ctx.claims),
        ip=client_ip(request),
    )
    out = PasskeyRegisteredOut(passkey=_out(passkey), recovery_codes=codes)
    return JSONResponse(out.model_dump(), status_code=201, headers=NO_STORE)


@router.post(
    "/login/options",
    responses=COMMON_ERRORS | {200: _OPTIONS},
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": PasskeyLoginOptionsIn.model_json_schema()}},
        }
    },
)
async def login_options(request: Request, svc: Svc) -> JSONResponse:
    """The options of ``navigator.credentials.get()``. With ``{mfa_token}`` (the answer of
    ``POST /auth/login``): a challenge for that login's second step, the user's passkeys
    allowed; send the answer to ``POST /auth/login/mfa {mfa_token, webauthn}``. Without:
    a passwordless login with a discoverable passkey (``POST .../login/verify``)."""
    raw = await request.body()
    try:
        body = (
            PasskeyLoginOptionsIn.model_validate(loads_body(raw))
            if raw.strip()
            else PasskeyLoginOptionsIn()
        )
    except (ValidationError, ValueError, TypeError) as exc:
        raise InvalidRequest("send nothing, or {mfa_token}") from exc
    if body.mfa_token is not None:
        options = await svc.mfa.webauthn_options(body.mfa_token)
    else:
        # Anonymous, and each one stores a challenge: a budget per IP.
        await svc.links.limit.ip_budget("passkey-options", client_ip(request), PER_IP_OPTIONS)
        options = await svc.passkeys.authentication_options()
    return _no_store(options)


@router.post(
    "/login/verify", response_model=TokenOut, responses=COMMON_ERRORS | problem_responses(403)
)
async def login_verify(body: PasskeyLoginIn, request: Request, svc: Svc) -> JSONResponse:
    """A passwordless login: the browser's answer to the options of ``.../login/options``
    (without an mfa_token). The session's ``amr`` is ``hwk`` (a device-bound key) or
    ``swk`` (a synced one), with ``user`` and ``mfa`` when the authenticator verified the
    user. 401 ``passkey_refused`` or ``passkey_cloned`` (a signature counter that went
    back)."""
    pair = await svc.passkeys.login(
        body.credential, ip=client_ip(request), user_agent=request.headers.get("user-agent")
    )
    metrics(request).logins.labels("ok").inc()
    return token_response(pair)


@router.get("", response_model=list[PasskeyOut], responses=COMMON_ERRORS)
async def list_passkeys(ctx: Authenticated, svc: Svc) -> list[PasskeyOut]:
    """The user's passkeys, oldest first."""
    return [_out(p) for p in await svc.passkeys.list_passkeys(ctx.user.id)]


@router.patch(
    "/{passkey_id}",
    status_code=204,
    responses=COMMON_ERRORS | problem_responses(404),
)
async def rename_passkey(
    passkey_id: str, body: PasskeyRenameIn, request: Request, ctx: Authenticated, svc: Svc
) -> Response:
    """Rename one of the user's passkeys."""
    await svc.passkeys.rename(ctx.user, passkey_id, body.name, ip=client_ip(request))
    return Response(status_code=204)


@router.delete(
    "/{passkey_id}",
    status_code=204,
    responses=COMMON_ERRORS | problem_responses(404),
)
async def delete_passkey(
    passkey_id: str, body: PasswordOnlyIn, request: Request, ctx: Authenticated, svc: Svc
) -> Response:
    """Delete one of the user's passkeys, with the password (401 if wrong; the login
    throttle counts it), from a session that used the second factor (else 401
    ``insufficient_user_authentication``). With the last second factor gone, the
    recovery codes go too."""
    await svc.mfa.delete_passkey(
        ctx.user,
        passkey_id,
        password=body.password,
        login=LoginFacts.of(ctx.claims),
        ip=client_ip(request),
    )
    return Response(status_code=204)
