"""/auth/mfa and /auth/login/mfa: TOTP enrolment, recovery codes, the second login step."""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from authgate.errors import InvalidRequest
from authgate.jsonbody import loads_body
from authgate.server.cookies import wants_cookies
from authgate.server.deps import NO_STORE, Authenticated, Svc, client_ip, metrics
from authgate.server.routes.auth import DeliveryHeader, deliver
from authgate.server.routing import PrefixRouter
from authgate.server.schemas import (
    COMMON_ERRORS,
    CodeIn,
    CookieTokenOut,
    MfaLoginIn,
    ReauthIn,
    RecoveryCodesOut,
    TokenOut,
    TotpEnrolIn,
    TotpEnrolOut,
    problem_responses,
)
from authgate.service.mfa import LoginFacts

router = PrefixRouter(prefix="/auth", tags=["mfa"])


def _no_store(body: dict[str, object]) -> JSONResponse:
    return JSONResponse(body, headers=NO_STORE)


@router.post(
    "/mfa/totp",
    response_model=TotpEnrolOut,
    responses=COMMON_ERRORS | problem_responses(403, 409),
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": TotpEnrolIn.model_json_schema()}},
        }
    },
)
async def begin_totp(request: Request, ctx: Authenticated, svc: Svc) -> JSONResponse:
    """Start enrolling TOTP: the secret, its ``otpauth://`` URI and a QR code (SVG). It is
    not active until confirmed (within ten minutes). Without ``{password}``, the session
    must have logged in within ten minutes (401 ``insufficient_user_authentication``
    otherwise); replacing an active TOTP needs ``{password, code}``."""
    raw = await request.body()
    try:
        body = TotpEnrolIn.model_validate(loads_body(raw)) if raw.strip() else TotpEnrolIn()
    except (ValidationError, ValueError, TypeError) as exc:
        raise InvalidRequest("send nothing, or {password, code}") from exc
    enrolment = await svc.mfa.begin_totp(
        ctx.user,
        login=LoginFacts.of(ctx.claims),
        password=body.password,
        code=body.code,
        ip=client_ip(request),
    )
    return _no_store(
        {
            "secret": enrolment.secret,
            "otpauth_uri": enrolment.otpauth_uri,
            "qr_svg": enrolment.qr_svg,
        }
    )


@router.post(
    "/mfa/totp/confirm",
    response_model=RecoveryCodesOut,
    responses=COMMON_ERRORS | problem_responses(404),
)
async def confirm_totp(
    body: CodeIn, request: Request, ctx: Authenticated, svc: Svc
) -> JSONResponse:
    """Turn TOTP on with a current code of the new secret; answers ten recovery codes,
    shown this once (an older set dies). Every other session of the user ends, and the
    user is told by mail."""
    codes = await svc.mfa.confirm_totp(
        ctx.user, body.code, login=LoginFacts.of(ctx.claims), ip=client_ip(request)
    )
    return _no_store({"recovery_codes": codes})


@router.delete("/mfa/totp", status_code=204, responses=COMMON_ERRORS | problem_responses(404))
async def disable_totp(body: ReauthIn, request: Request, ctx: Authenticated, svc: Svc) -> Response:
    """Turn TOTP off, with the password and a current code."""
    await svc.mfa.disable_totp(
        ctx.user, password=body.password, code=body.code, ip=client_ip(request)
    )
    return Response(status_code=204)


@router.post(
    "/mfa/recovery-codes",
    response_model=RecoveryCodesOut,
    responses=COMMON_ERRORS | problem_responses(404),
)
async def regenerate_recovery_codes(
    body: ReauthIn, request: Request, ctx: Authenticated, svc: Svc
) -> JSONResponse:
    """A new set of ten recovery codes, from a session that logged in with the second
    factor, with the password and a current code; the old set dies."""
    codes = await svc.mfa.regenerate_recovery_codes(
        ctx.user,
        password=body.password,
        code=body.code,
        login=LoginFacts.of(ctx.claims),
        ip=client_ip(request),
    )
    return _no_store({"recovery_codes": codes})


@router.post("/login/mfa", response_model=TokenOut | CookieTokenOut, responses=COMMON_ERRORS)
async def login_mfa(
    body: MfaLoginIn, request: Request, svc: Svc, delivery: DeliveryHeader = None
) -> JSONResponse:
    """The second step of a login: the ``mfa_token`` of the first, and a TOTP ``code``, a
    ``recovery_code`` or a passkey assertion (``webauthn``, answering
    ``POST /auth/passkeys/login/options {mfa_token}``). Failures count against a throttle
    of their own (429 while locked); the mfa_token works once and for five minutes. With
    ``Authgate-Token-Delivery: cookie``, the cookie mode's answer, as ``/auth/login``."""
    wants_cookies(delivery, svc.settings)
    pair = await svc.mfa.finish_login(
        body.mfa_token,
        code=body.code,
        recovery_code=body.recovery_code,
        webauthn=body.webauthn,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    metrics(request).logins.labels("ok").inc()
    return deliver(pair, svc, delivery)
