"""/auth: the account lifecycle by mail: email verification, password reset, email change.

The anonymous requests (forgot-password, resend-verification) answer 202 with one body
whether or not an account has the address; what they send is decided after the answer.
"""

from __future__ import annotations

from fastapi import Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from authgate.errors import InvalidRequest
from authgate.jsonbody import loads_body
from authgate.server.deps import (
    NO_STORE,
    Authenticated,
    Svc,
    authenticated,
    bearer_scheme,
    client_ip,
)
from authgate.server.routing import PrefixRouter
from authgate.server.schemas import (
    COMMON_ERRORS,
    AcceptedOut,
    EmailChangeIn,
    EmailIn,
    LinkTokenIn,
    ResetIn,
    problem_responses,
)
from authgate.service.mfa import LoginFacts

router = PrefixRouter(prefix="/auth", tags=["account"])

SENT = "If an account has this address, a mail is on its way to it."
CHECK_MAILBOX = "Check your mailbox: the next step is in a mail."


def accepted(detail: str) -> JSONResponse:
    """The 202 of a request whose outcome arrives by mail: the same for every address."""
    return JSONResponse(
        AcceptedOut(status="accepted", detail=detail).model_dump(),
        status_code=202,
        headers=NO_STORE,
    )


_OPTIONAL_EMAIL = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": EmailIn.model_json_schema()}},
    }
}


@router.post(
    "/verify-email/request",
    status_code=202,
    response_model=AcceptedOut,
    responses=COMMON_ERRORS,
    openapi_extra=_OPTIONAL_EMAIL,
    dependencies=[Depends(bearer_scheme)],
)
async def request_verification(request: Request, svc: Svc) -> JSONResponse:
    """Mail a new verification link. With a Bearer token, to the signed-in user's address
    (unless it is verified already). Without one, ``{email}``: to that address if an
    account has it and it is not verified yet (for an account that cannot sign in before
    it is verified); the answer is the same either way."""
    ip = client_ip(request)
    if request.headers.get("authorization"):
        ctx = await authenticated(request, None)
        await svc.links.resend_verification(ctx.user, ip=ip)
        return accepted(SENT)
    try:
        body = EmailIn.model_validate(loads_body(await request.body()))
    except (ValidationError, ValueError, TypeError) as exc:
        raise InvalidRequest("send {email}, or a Bearer token") from exc
    await svc.links.request_verification(body.email, ip=ip)
    return accepted(SENT)


@router.post(
    "/verify-email",
    status_code=204,
    responses=COMMON_ERRORS | problem_responses(400),
)
async def verify_email(body: LinkTokenIn, request: Request, svc: Svc) -> Response:
    """Confirm an address with the token of its verification link."""
    await svc.links.verify_email(body.token, ip=client_ip(request))
    return Response(status_code=204, headers=NO_STORE)


@router.post(
    "/password/forgot",
    status_code=202,
    response_model=AcceptedOut,
    responses=COMMON_ERRORS,
)
async def forgot_password(body: EmailIn, request: Request, svc: Svc) -> JSONResponse:
    """Mail a password-reset link to the address, if an account has it; the answer (status,
    body, headers and time) is the same either way."""
    await svc.links.forgot_password(body.email, ip=client_ip(request))
    return accepted(SENT)


@router.post(
    "/password/reset",
    status_code=204,
    responses=COMMON_ERRORS | problem_responses(400),
)
async def reset_password(body: ResetIn, request: Request, svc: Svc) -> Response:
    """Set a new password with the token of a reset link. Every session of the account
    ends (at every guard, through the revocation feed); it signs no one in."""
    await svc.links.reset_password(body.token, body.new_password, ip=client_ip(request))
    return Response(status_code=204, headers=NO_STORE)


@router.post(
    "/email",
    status_code=202,
    response_model=AcceptedOut,
    responses=COMMON_ERRORS,
)
async def change_email(
    body: EmailChangeIn, request: Request, ctx: Authenticated, svc: Svc
) -> JSONResponse:
    """Ask to change the account's address: a confirmation link goes to the new address
    and a notice to the old one; nothing changes until the link is used. The current
    password is checked through the login throttle. On an account with a second factor,
    only a session that logged in with it may (401 ``insufficient_user_authentication``)."""
    await svc.mfa.require_second_factor(ctx.user.id, LoginFacts.of(ctx.claims))
    await svc.links.request_email_change(
        ctx.user, body.new_email, body.current_password, ip=client_ip(request)
    )
    return accepted(CHECK_MAILBOX)


@router.post(
    "/email/confirm",
    status_code=204,
    responses=COMMON_ERRORS | problem_responses(400, 409),
)
async def confirm_email(body: LinkTokenIn, request: Request, svc: Svc) -> Response:
    """Make the new address the account's, with the token of its confirmation link. The
    account's access tokens die; a refresh carries the new address."""
    await svc.links.confirm_email_change(body.token, ip=client_ip(request))
    return Response(status_code=204, headers=NO_STORE)
