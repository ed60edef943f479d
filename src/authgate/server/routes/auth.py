"""/auth: register, login, refresh, logout, me, password, sessions, the revocation feed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import ValidationError

from authgate.errors import (
    AuthenticationRequired,
    InsufficientScope,
    InvalidClient,
    InvalidCredentials,
    InvalidGrant,
    InvalidRequest,
)
from authgate.jsonbody import loads_body
from authgate.server.cookies import (
    CSRF_HEADER,
    DELIVERY_HEADER,
    Delivery,
    check_origin,
    clear_cookies,
    refresh_cookie,
    token_cookies_response,
    wants_cookies,
)
from authgate.server.deps import (
    NO_STORE,
    Authenticated,
    AuthenticatedWithMfa,
    Svc,
    admin,
    authenticated,
    basic_credentials,
    basic_scheme,
    bearer_scheme,
    client_ip,
    metrics,
)
from authgate.server.problems import error_response
from authgate.server.routes.lifecycle import CHECK_MAILBOX, accepted
from authgate.server.routing import PrefixRouter
from authgate.server.schemas import (
    COMMON_ERRORS,
    AcceptedOut,
    CookieTokenOut,
    LoginIn,
    MfaOut,
    MfaRequiredOut,
    PasswordIn,
    RefreshIn,
    RegisterIn,
    RegisterOut,
    RevocationFeedOut,
    SessionOut,
    TokenOut,
    UserOut,
    problem_responses,
)
from authgate.service.clients import REVOCATIONS_SCOPE
from authgate.service.mfa import LoginFacts, MfaStatus
from authgate.service.sessions import FIRST_PARTY_CLIENT, TokenPair
from authgate.storage.base import UserRecord
from authgate.wiring import Services

router = PrefixRouter(prefix="/auth", tags=["auth"])


async def user_out(svc: Services, user: UserRecord) -> UserOut:
    """The shape of /auth/me."""
    return UserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        roles=list(user.roles),
        permissions=list(await svc.accounts.permissions(user)),
        created_at=user.created_at,
        email_verified=user.email_verified,
        mfa=await mfa_out(svc, user.id),
    )


async def mfa_out(svc: Services, user_id: str) -> MfaOut:
    """The user's second factors, as /auth/me shows them."""
    return mfa_of(await svc.mfa.status(user_id))


def mfa_of(status: MfaStatus) -> MfaOut:
    """A user's second factors as read (``Mfa.status``), in their JSON form."""
    return MfaOut(
        totp=status.totp,
        passkeys=status.passkeys,
        recovery_codes_left=status.recovery_codes_left,
    )


def token_response(
    pair: TokenPair, *, status: int = 200, extra: dict[str, Any] | None = None
) -> JSONResponse:
    """A token response, never cached."""
    return JSONResponse({**pair.response(), **(extra or {})}, status_code=status, headers=NO_STORE)


DeliveryHeader = Annotated[
    Delivery | None,
    Header(
        alias=DELIVERY_HEADER,
        description="``cookie``: the browser-session cookie mode (AUTHGATE_COOKIE_MODE must "
        "be on, 400 ``cookie_mode_off`` otherwise): the refresh token travels in an "
        "HttpOnly cookie scoped to /auth, never in the body. ``body`` (the default): the "
        "JSON token response.",
    ),
]
CsrfHeader = Annotated[
    str | None,
    Header(
        alias=CSRF_HEADER,
        max_length=128,
        description="In the cookie mode: the ``csrf_token`` of the last token response (or "
        "of the ``authgate_csrf_token`` cookie); 403 ``csrf_failed`` without it.",
    ),
]


def deliver(pair: TokenPair, svc: Services, delivery: Delivery | None) -> JSONResponse:
    """The token response the request asked for: the JSON body, or the cookie mode's."""
    if wants_cookies(delivery, svc.settings):
        return token_cookies_response(pair, svc)
    return token_response(pair)


@router.post(
    "/register",
    status_code=201,
    response_model=RegisterOut,
    responses=COMMON_ERRORS
    | problem_responses(403, 409)
    | {202: {"description": "Pending: the next step is in a mail", "model": AcceptedOut}},
)
async def register(body: RegisterIn, request: Request, svc: Svc) -> JSONResponse:
    """Create an account, mail its verification link and log it in (201). With
    AUTHGATE_REQUIRE_VERIFIED_EMAIL, 202 instead: the account logs in once verified. With
    AUTHGATE_ENUMERATION_SAFE_REGISTRATION, 202 for a new and a taken address alike; the
    owner of a taken address gets a mail instead."""
    ip = client_ip(request)
    user = await svc.links.self_register(
        body.email,
        body.password,
        name=body.name,
        ip=ip,
        quiet=svc.settings.enumeration_safe_registration,
    )
    metrics(request).registrations.inc()
    if user is None:
        return accepted(CHECK_MAILBOX)
    pair = await svc.sessions.start(user, ip=ip, user_agent=request.headers.get("user-agent"))
    me = await user_out(svc, user)
    return token_response(pair, status=201, extra={"user": me.model_dump()})


_LOGIN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": LoginIn.model_json_schema()},
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["username", "password"],
                    "properties": {
                        "username": {"type": "string", "maxLength": 320},
                        "password": {"type": "string", "maxLength": 4096},
                        "grant_type": {"type": "string"},
                        "scope": {"type": "string"},
                    },
                }
            },
        },
    }
}


async def _login_body(request: Request) -> LoginIn:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if ctype == "application/x-www-form-urlencoded":
            form = await request.form()
            return LoginIn(
                email=str(form.get("username", "")), password=str(form.get("password", ""))
            )
        if ctype != "application/json":
            raise InvalidRequest("send JSON or an OAuth2 password form", field="content-type")
        data = loads_body(await request.body())
        return LoginIn.model_validate(data)
    except (ValidationError, ValueError, TypeError) as exc:
        raise InvalidRequest("the login body is invalid") from exc


@router.post(
    "/login",
    response_model=TokenOut | CookieTokenOut | MfaRequiredOut,
    openapi_extra=_LOGIN_BODY,
    responses=COMMON_ERRORS | problem_responses(403),
)
async def login(request: Request, svc: Svc, delivery: DeliveryHeader = None) -> JSONResponse:
    """Log in with an email and password (JSON, or FastAPI's OAuth2 password form). When
    the account has a second factor, the answer is ``{mfa_required, mfa_token, methods}``
    and no token pair: ``POST /auth/login/mfa`` finishes the login. With
    ``Authgate-Token-Delivery: cookie``, the refresh token is set as an HttpOnly cookie and
    the body carries ``csrf_token`` instead (see the README, "Browser sessions")."""
    wants_cookies(delivery, svc.settings)  # refused before any password is checked
    body = await _login_body(request)
    ip = client_ip(request)
    try:
        user = await svc.accounts.authenticate(body.email, body.password, ip=ip, record_ok=False)
    except InvalidCredentials:
        metrics(request).logins.labels("failed").inc()
        raise
    # The password's login_ok goes in the chain with the session (one transaction fewer),
    # or before the challenge; if what follows fails, on its own.
    login_ok = svc.accounts.login_ok(user, ip=ip)
    recorded = False
    challenge = None
    try:
        status = await svc.mfa.status(user.id)
        if status.enabled:
            await svc.audit.record_entry(login_ok)
            recorded = True
            challenge = await svc.mfa.challenge(user, status=status)
        if challenge is None:
            pair = await svc.sessions.start(
                user, ip=ip, user_agent=request.headers.get("user-agent"), audit=login_ok
            )
    except InvalidCredentials:
        raise  # the session's transaction appended login_ok, then found the user disabled
    except Exception:
        if not recorded:
            await svc.audit.record_anyway(login_ok)
        raise
    if challenge is not None:
        metrics(request).logins.labels("mfa_required").inc()
        return JSONResponse(
            {
                "mfa_required": True,
                "mfa_token": challenge.mfa_token,
                "methods": list(challenge.methods),
                "expires_in": challenge.expires_in,
            },
            headers=NO_STORE,
        )
    metrics(request).logins.labels("ok").inc()
    return deliver(pair, svc, delivery)


@router.post(
    "/refresh",
    response_model=TokenOut | CookieTokenOut,
    responses=COMMON_ERRORS | problem_responses(403),
)
async def refresh(
    request: Request,
    svc: Svc,
    body: RefreshIn | None = None,
    delivery: DeliveryHeader = None,
    csrf: CsrfHeader = None,
) -> Response:
    """Rotate a refresh token for a new pair. In the cookie mode
    (``Authgate-Token-Delivery: cookie``, no body), the refresh token is read from its
    cookie, and ``X-CSRF-Token`` must carry the CSRF proof (and ``Origin``, when sent, be
    the public URL's or one of AUTHGATE_CORS_ORIGINS): 403 ``csrf_failed`` otherwise, and
    nothing rotates. A refused cookie (401 ``invalid_grant``) is cleared."""
    m = metrics(request)
    cookie_mode = wants_cookies(delivery, svc.settings)
    try:
        if not cookie_mode:
            if body is None:
                raise InvalidRequest("a refresh_token is needed", field="refresh_token")
            pair = await svc.sessions.refresh(body.refresh_token, ip=client_ip(request))
            m.refreshes.labels("ok").inc()
            return token_response(pair)
        if body is not None:
            raise InvalidRequest("in the cookie mode the refresh token is its cookie")
        check_origin(request, svc.settings)
        token = refresh_cookie(request, svc.settings)
        if token is None:
            raise InvalidGrant("no refresh cookie")
        svc.sessions.check_csrf(token, csrf)
        try:
            pair = await svc.sessions.refresh(token, ip=client_ip(request))
        except InvalidGrant as exc:
            # The cookie is dead (expired, ended, or reused): the browser forgets it.
            m.refreshes.labels("refused").inc()
            response = error_response(request, exc)
            clear_cookies(response, svc.settings)
            return response
    except Exception:
        m.refreshes.labels("refused").inc()
        raise
    m.refreshes.labels("ok").inc()
    return token_cookies_response(pair, svc)


@router.post("/logout", status_code=204, responses=COMMON_ERRORS | problem_responses(403))
async def logout(
    request: Request,
    svc: Svc,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    delivery: DeliveryHeader = None,
    csrf: CsrfHeader = None,
) -> Response:
    """End this session; its access tokens die at every guard. In the cookie mode
    (``Authgate-Token-Delivery: cookie``), the cookies are cleared too, and the session
    may be named by the refresh cookie instead of a Bearer token: then ``X-CSRF-Token``
    must carry the CSRF proof (403 ``csrf_failed`` otherwise, and nothing ends)."""
    cookie_mode = wants_cookies(delivery, svc.settings)
    if not cookie_mode or request.headers.get("authorization") is not None:
        ctx = await authenticated(request, None)
        await svc.sessions.end(ctx.sid, user_id=ctx.user.id, reason="logout")
    else:
        check_origin(request, svc.settings)
        token = refresh_cookie(request, svc.settings)
        if token is None:
            raise AuthenticationRequired("no bearer token and no refresh cookie")
        svc.sessions.check_csrf(token, csrf)
        # Any token of the family names it, a rotated one too: the session ends either way.
        await svc.sessions.revoke_refresh_token(
            token, client_id=FIRST_PARTY_CLIENT, reason="logout"
        )
    response = Response(status_code=204)
    if cookie_mode:
        clear_cookies(response, svc.settings)
    return response


@router.post("/logout-all", status_code=204, responses=COMMON_ERRORS)
async def logout_all(ctx: Authenticated, svc: Svc) -> Response:
    """End every session of the user."""
    await svc.sessions.end_all(ctx.user.id, reason="logout_all")
    return Response(status_code=204)


@router.get("/me", response_model=UserOut, responses=COMMON_ERRORS)
async def me(ctx: AuthenticatedWithMfa, svc: Svc) -> UserOut:
    """The current user, with the state of their second factors (read with the token's
    check, in one statement)."""
    user, summary = ctx.user, ctx.mfa_summary
    assert summary is not None  # authenticate(with_mfa=True) reads it
    return UserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        roles=list(user.roles),
        permissions=list(ctx.user_permissions),
        created_at=user.created_at,
        email_verified=user.email_verified,
        mfa=mfa_of(svc.mfa.status_of(summary)),
    )


@router.post("/password", status_code=204, responses=COMMON_ERRORS)
async def change_password(
    body: PasswordIn, request: Request, ctx: Authenticated, svc: Svc
) -> Response:
    """Change the password; every other session ends, this one goes on. The current
    password is checked through the login throttle (429 while locked). On an account with
    a second factor, only a session that logged in with it may (401
    ``insufficient_user_authentication`` otherwise)."""
    await svc.mfa.require_second_factor(ctx.user.id, LoginFacts.of(ctx.claims))
    await svc.accounts.change_password(
        ctx.user,
        body.current_password,
        body.new_password,
        ip=client_ip(request),
        keep_sid=ctx.sid,
    )
    return Response(status_code=204)


@router.get("/sessions", response_model=list[SessionOut], responses=COMMON_ERRORS)
async def sessions(ctx: Authenticated, svc: Svc) -> list[SessionOut]:
    """The user's live sessions."""
    return [
        SessionOut(
            sid=s.sid,
            created_at=s.created_at,
            last_used_at=s.last_used_at,
            ip=s.ip,
            user_agent=s.user_agent,
            current=s.sid == ctx.sid,
        )
        for s in await svc.sessions.list(ctx.user.id)
    ]


@router.delete("/sessions/{sid}", status_code=204, responses=COMMON_ERRORS | problem_responses(404))
async def end_session(sid: str, ctx: Authenticated, svc: Svc) -> Response:
    """End one of the user's sessions."""
    await svc.sessions.end(sid, user_id=ctx.user.id, reason="user_revoked")
    return Response(status_code=204)


async def _feed_reader(request: Request, svc: Services) -> None:
    """A client with the authgate:revocations scope (Basic), or an admin Bearer."""
    header = request.headers.get("authorization", "")
    if header[:6].lower() == "basic ":
        credentials = basic_credentials(request)
        assert credentials is not None
        try:
            client = await svc.clients.authenticate_secret(*credentials, ip=client_ip(request))
        except InvalidClient as exc:
            raise InvalidCredentials("client authentication failed") from exc
        if REVOCATIONS_SCOPE not in client.scopes:
            raise InsufficientScope(
                "the feed needs authgate:revocations", scope=(REVOCATIONS_SCOPE,)
            )
        return
    ctx = await authenticated(request, None)
    await admin(ctx)


@router.get(
    "/revocations",
    response_model=RevocationFeedOut,
    response_model_exclude_none=True,  # an event carries not_before or ver only when set
    responses=COMMON_ERRORS | problem_responses(403),
    dependencies=[Depends(bearer_scheme), Depends(basic_scheme)],
)
async def revocations(
    request: Request,
    svc: Svc,
    after: int | None = Query(default=None, ge=0, le=2**62),
    wait: float = Query(default=0, ge=0, le=30),
) -> RevocationFeedOut:
    """The revocation feed: live events after the cursor (all of them without one). With
    ``wait``, a long poll: it answers as soon as an event after the cursor exists. For a
    client with the ``authgate:revocations`` scope (Basic), or an admin Bearer."""
    from authgate.server.middleware import draining_event

    await _feed_reader(request, svc)
    # On shutdown the poll ends at once with the current cursor, never cut off mid-wait.
    page = await svc.revocations.wait(after, timeout=wait, stop=draining_event(request.scope))
    return RevocationFeedOut.model_validate(
        {
            "cursor": page.cursor,
            "events": [
                {
                    "id": ev.id,
                    "kind": ev.kind,
                    "value": ev.value,
                    "not_before": ev.not_before,
                    "ver": ev.ver,
                    "expires_at": ev.expires_at,
                }
                for ev in page.events
            ],
        }
    )
