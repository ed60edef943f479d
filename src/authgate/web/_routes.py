"""The hosted pages: sign in (password, second factor, passkey), register, forgotten
password, the mailed-link pages, and sign out (the account page is ``_account``). Each
POST calls the same service method as its JSON route, so throttling, enumeration safety
and the verified-email rule are the same rules, once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from authgate.errors import (
    AuthgateError,
    InvalidCredentials,
    InvalidMfaToken,
    InvalidRequest,
    LinkTokenRefused,
    PasskeyRefused,
)
from authgate.jsonbody import loads_body
from authgate.server.deps import NO_STORE, client_ip, metrics, services
from authgate.server.routing import PrefixRouter
from authgate.service.weblogin import OpenedWebLogin
from authgate.storage.base import UserRecord
from authgate.web._core import (
    DEFAULT_NEXT,
    check_csrf,
    current_login,
    error_page,
    form_of,
    open_login,
    redirect,
    render,
    safe_next,
    web,
)
from authgate.web._oidc import (
    authorize_origins,
    end_session,
    end_session_params,
    end_session_refused,
    end_session_request,
    origin_of,
)
from authgate.wiring import Services

router = PrefixRouter(include_in_schema=False)

_MFA_TTL: Final = 300
_LINK_MAX: Final = 256


def _opener(
    request: Request,
) -> Callable[[UserRecord, tuple[str, ...]], Awaitable[OpenedWebLogin]]:
    svc = services(request)

    async def start(user: UserRecord, amr: tuple[str, ...]) -> OpenedWebLogin:
        return await svc.web_logins.start(
            user, amr=amr, ip=client_ip(request), user_agent=request.headers.get("user-agent")
        )

    return start


def _next(request: Request, form: dict[str, str] | None = None) -> str | None:
    value = form.get("next") if form is not None else request.query_params.get("next")
    return safe_next(value)


# --- static files --------------------------------------------------------------------------


@router.get("/static/{name}")
async def static(name: str, request: Request) -> Response:
    """A packaged (or theme) stylesheet or script, by name."""
    w = web(request)
    if name not in w.assets:
        return render(request, "error.html", title="Not found", status=404, code="not_found")
    return w.asset(name, request.query_params.get("v"))


# --- sign in -------------------------------------------------------------------------------


async def _login_page(
    request: Request,
    *,
    next_path: str | None,
    email: str = "",
    exc: AuthgateError | None = None,
) -> Response:
    context: dict[str, Any] = {
        "next": next_path or "",
        "email": email,
        "registration_open": services(request).accounts.registration_open,
        "form_action": await authorize_origins(request, next_path),
    }
    if exc is not None:
        return error_page(request, exc, "login.html", title="Sign in", **context)
    return render(request, "login.html", title="Sign in", **context)


@router.get("/login")
async def login_page(request: Request) -> Response:
    """The sign-in form; a browser already signed in goes on to ``next`` (unless
    ``reauth``: an authorization request asks for a new login)."""
    next_path = _next(request)
    reauth = request.query_params.get("reauth") == "1"
    if not reauth and await current_login(request) is not None:
        return redirect(request, next_path or DEFAULT_NEXT)
    return await _login_page(request, next_path=next_path)


@router.post("/login")
async def login_submit(request: Request) -> Response:
    """Check the password (``Accounts.authenticate``: the login throttle, the
    verified-email rule); then the second step, or the hosted login."""
    form = await form_of(request)
    svc = services(request)
    next_path = _next(request, form)
    email = form.get("email", "")[:320]
    try:
        user = await svc.accounts.authenticate(
            email, form.get("password", ""), ip=client_ip(request)
        )
        challenge = await svc.mfa.challenge(user)
        if challenge is None:
            opened = await svc.web_logins.start(
                user,
                amr=("pwd",),
                ip=client_ip(request),
                user_agent=request.headers.get("user-agent"),
            )
    except AuthgateError as exc:
        if isinstance(exc, InvalidCredentials):
            metrics(request).logins.labels("failed").inc()
        return await _login_page(request, next_path=next_path, email=email, exc=exc)
    if challenge is not None:
        metrics(request).logins.labels("mfa_required").inc()
        w = web(request)
        target = "/login/mfa" + (f"?next={_quote(next_path)}" if next_path else "")
        response = redirect(request, target)
        value = ".".join(challenge.methods) + "~" + challenge.mfa_token
        w.set_cookie(response, w.mfa_cookie, value, max_age=_MFA_TTL)
        return response
    metrics(request).logins.labels("ok").inc()
    return open_login(request, opened, next_path)


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="")


def _pending(request: Request) -> tuple[tuple[str, ...], str] | None:
    """The methods and mfa_token of a login waiting for its second factor."""
    value = request.cookies.get(web(request).mfa_cookie, "")
    methods, sep, token = value.partition("~")
    if not sep or not token:
        return None
    return tuple(m for m in methods.split(".") if m), token


async def _mfa_page(
    request: Request, methods: tuple[str, ...], next_path: str | None, exc: AuthgateError | None
) -> Response:
    context: dict[str, Any] = {
        "next": next_path or "",
        "methods": methods,
        "form_action": await authorize_origins(request, next_path),
    }
    title = "Second step"
    if exc is not None:
        return error_page(request, exc, "mfa.html", title=title, **context)
    return render(request, "mfa.html", title=title, **context)


@router.get("/login/mfa")
async def mfa_page(request: Request) -> Response:
    """The second step: a TOTP code, a passkey, or a recovery code."""
    pending = _pending(request)
    if pending is None:
        return redirect(request, "/login")
    return await _mfa_page(request, pending[0], _next(request), None)


@router.post("/login/mfa/options")
async def mfa_passkey_options(request: Request) -> Response:
    """For the page's script: the WebAuthn options of this login's second step (the
    mfa_token stays in its HttpOnly cookie). CSRF by the ``X-CSRF-Token`` header."""
    check_csrf(request, request.headers.get("x-csrf-token"))
    pending = _pending(request)
    if pending is None:
        raise InvalidMfaToken("no login is waiting for a second factor")
    options = await services(request).mfa.webauthn_options(pending[1])
    return JSONResponse(options, headers=NO_STORE)


def _credential(raw: str) -> object:
    if not raw:
        raise PasskeyRefused("no passkey answer (the ceremony needs JavaScript)")
    try:
        return loads_body(raw.encode())
    except ValueError as exc:
        raise InvalidRequest("the passkey answer is not JSON") from exc


@router.post("/login/mfa")
async def mfa_submit(request: Request) -> Response:
    """Finish the login with ``Mfa.finish_login_with`` (its throttle, its single-use
    mfa_token), opening the hosted login."""
    form = await form_of(request)
    next_path = _next(request, form)
    pending = _pending(request)
    if pending is None:
        return await _login_page(
            request, next_path=next_path, exc=InvalidMfaToken("no login is waiting")
        )
    methods, token = pending
    try:
        webauthn = _credential(form["webauthn"]) if "webauthn" in form else None
        opened = await services(request).mfa.finish_login_with(
            token,
            code=form.get("code") or None,
            recovery_code=form.get("recovery_code") or None,
            webauthn=webauthn,
            ip=client_ip(request),
            open_session=_opener(request),
        )
    except InvalidMfaToken as exc:
        response = await _login_page(request, next_path=next_path, exc=exc)
        web(request).clear_cookie(response, web(request).mfa_cookie)
        return response
    except AuthgateError as exc:
        return await _mfa_page(request, methods, next_path, exc)
    metrics(request).logins.labels("ok").inc()
    return open_login(request, opened, next_path)


@router.post("/login/passkey")
async def passkey_submit(request: Request) -> Response:
    """A passwordless login: the browser's answer to ``/auth/passkeys/login/options``,
    checked by ``Passkeys.login_with``, opening the hosted login."""
    form = await form_of(request)
    next_path = _next(request, form)
    try:
        opened = await services(request).passkeys.login_with(
            _credential(form.get("credential", "")),
            ip=client_ip(request),
            open_session=_opener(request),
        )
    except AuthgateError as exc:
        return await _login_page(request, next_path=next_path, exc=exc)
    metrics(request).logins.labels("ok").inc()
    return open_login(request, opened, next_path)


# --- register and forgotten password ---------------------------------------------------


def _register_page(
    request: Request, form: dict[str, str], exc: AuthgateError | None = None
) -> Response:
    context: dict[str, Any] = {
        "next": safe_next(form.get("next")) or "",
        "email": form.get("email", "")[:320],
        "name": form.get("name", "")[:200],
    }
    if exc is not None:
        fields = {"email_taken": ("email",), "weak_password": ("password",)}
        fields["password_too_predictable"] = ("password",)
        context["error_field"] = fields.get(exc.code)
        return error_page(request, exc, "register.html", title="Create an account", **context)
    return render(request, "register.html", title="Create an account", **context)


@router.get("/register")
async def register_page(request: Request) -> Response:
    """The registration form (a page that says so when registration is closed)."""
    if not services(request).accounts.registration_open:
        return render(
            request,
            "message.html",
            title="Registration is closed",
            status=403,
            message="New accounts cannot be created here.",
            link="/login",
            link_text="Sign in",
        )
    return _register_page(request, {"next": request.query_params.get("next", "")})


@router.post("/register")
async def register_submit(request: Request) -> Response:
    """Register through ``AccountLinks.self_register`` (as ``/auth/register``); then
    signed in, or told to check the mailbox."""
    form = await form_of(request)
    svc = services(request)
    try:
        user = await svc.links.self_register(
            form.get("email", ""),
            form.get("password", ""),
            name=form.get("name") or None,
            ip=client_ip(request),
            quiet=svc.settings.enumeration_safe_registration,
        )
        opened = None
        if user is not None:
            opened = await svc.web_logins.start(
                user,
                amr=("pwd",),
                ip=client_ip(request),
                user_agent=request.headers.get("user-agent"),
            )
    except AuthgateError as exc:
        return _register_page(request, form, exc)
    metrics(request).registrations.inc()
    if opened is None:
        return render(
            request,
            "message.html",
            title="Check your mailbox",
            status=202,
            message="To finish, follow the link in the mail on its way to this address.",
            link="/login",
            link_text="Sign in",
        )
    return open_login(request, opened, form.get("next"))


async def _forgot(request: Request, form: dict[str, str]) -> Response:
    email = form.get("email", "")[:320]
    title = "Reset your password"
    try:
        await services(request).links.forgot_password(email, ip=client_ip(request))
    except AuthgateError as exc:
        return error_page(request, exc, "forgot_password.html", title=title, email=email)
    return render(
        request,
        "forgot_password.html",
        title="Check your mailbox",
        status=202,
        requested=True,
        email="",
    )


@router.get("/forgot-password")
async def forgot_page(request: Request) -> Response:
    """The form that asks for a reset link."""
    return render(
        request, "forgot_password.html", title="Reset your password", requested=False, email=""
    )


@router.post("/forgot-password")
async def forgot_submit(request: Request) -> Response:
    """Ask for a reset link (``AccountLinks.forgot_password``): the same page for any
    address."""
    return await _forgot(request, await form_of(request))


# --- the mailed links --------------------------------------------------------------------
# A link's page is cookie-free: its token is its only credential, so a form posted from
# elsewhere has nothing to borrow, and a GET only shows the form (a mail scanner that
# fetches the link uses nothing up).


def _token(request: Request) -> str:
    token = request.query_params.get("token", "")
    return token if 0 < len(token) <= _LINK_MAX else ""


async def _plain_form(request: Request) -> dict[str, str]:
    form = await request.form()
    out: dict[str, str] = {}
    for key, value in form.multi_items():
        if isinstance(value, str) and len(value) <= 4096 and key not in out:
            out[key] = value
    return out


def _link_page(request: Request, template: str, /, *, title: str, **context: Any) -> Response:
    return render(request, template, title=title, cookies=False, **context)


async def _button_submit(
    request: Request,
    template: str,
    title: str,
    done_title: str,
    use: Callable[[Services, str, str | None], Awaitable[object]],
) -> Response:
    form = await _plain_form(request)
    try:
        await use(services(request), form.get("token", ""), client_ip(request))
    except AuthgateError as exc:
        return error_page(request, exc, template, title=title, cookies=False, token="", done=False)
    return _link_page(request, template, title=done_title, done=True, token="")


_VERIFY_TITLE: Final = "Confirm your email address"
_CONFIRM_TITLE: Final = "Confirm your new email address"


@router.get("/verify-email")
async def verify_email_page(request: Request) -> Response:
    """The form of a verification link."""
    return _link_page(
        request, "verify_email.html", title=_VERIFY_TITLE, token=_token(request), done=False
    )


@router.post("/verify-email")
async def verify_email_submit(request: Request) -> Response:
    """Confirm the address of a verification link."""
    return await _button_submit(
        request,
        "verify_email.html",
        _VERIFY_TITLE,
        "Email address confirmed",
        lambda svc, token, ip: svc.links.verify_email(token, ip=ip),
    )


@router.get("/email/confirm")
async def email_confirm_page(request: Request) -> Response:
    """The form of an email-change link."""
    return _link_page(
        request, "email_confirm.html", title=_CONFIRM_TITLE, token=_token(request), done=False
    )


@router.post("/email/confirm")
async def email_confirm_submit(request: Request) -> Response:
    """Move the account to the address of an email-change link."""
    return await _button_submit(
        request,
        "email_confirm.html",
        _CONFIRM_TITLE,
        "Email address changed",
        lambda svc, token, ip: svc.links.confirm_email_change(token, ip=ip),
    )


@router.get("/reset-password")
async def reset_password_page(request: Request) -> Response:
    """With a reset link's token, the form for a new password; without, the form that
    asks for a link."""
    token = _token(request)
    if not token:
        return await forgot_page(request)
    return _link_page(
        request, "reset_password.html", title="Choose a new password", token=token, done=False
    )


@router.post("/reset-password")
async def reset_password_submit(request: Request) -> Response:
    """Set the password from a reset link (every session of the user ends)."""
    form = await _plain_form(request)
    if "token" not in form:
        check_csrf(request, form.get("csrf"))
        return await _forgot(request, form)
    token = form["token"]
    title = "Choose a new password"
    try:
        await services(request).links.reset_password(
            token, form.get("new_password", ""), ip=client_ip(request)
        )
    except AuthgateError as exc:
        if isinstance(exc, LinkTokenRefused):
            # A refused link is dead: the error, and the form that asks for a new one.
            return error_page(
                request, exc, "forgot_password.html", title=title, requested=False, email=""
            )
        return error_page(
            request,
            exc,
            "reset_password.html",
            title=title,
            cookies=False,
            token=token,
            done=False,
        )
    return _link_page(request, "reset_password.html", title="Password changed", done=True)


# --- sign out --------------------------------------------------------------


@router.get("/logout")
async def logout_page(request: Request) -> Response:
    """Asks before signing out (a GET changes nothing). It is also the OpenID Connect
    end-session endpoint: ``id_token_hint``, ``client_id``, ``post_logout_redirect_uri``
    (registered, exactly) and ``state`` are checked here and carried to the button."""
    params = end_session_params(request.query_params.multi_items())
    try:
        ending = await end_session_request(request, params)
    except InvalidRequest as exc:
        return end_session_refused(request, exc)
    login = await current_login(request)
    pending = login is not None
    if not pending and ending is not None and ending.redirect_url is not None:
        return redirect(request, ending.redirect_url)  # nothing to end: straight back
    client = ending.client.name if ending is not None and ending.client is not None else None
    targets = (ending.redirect_url,) if ending is not None and ending.redirect_url else ()
    return render(
        request,
        "logout.html",
        title="Sign out",
        done=False,
        params=params,
        client_name=client,
        pending=pending,
        form_action=tuple(origin_of(t) for t in targets),
    )


@router.post("/logout")
async def logout_submit(request: Request) -> Response:
    """End the hosted login and every session opened from it (the revocation feed), drop
    its cookie; for an RP-initiated logout, back to its registered address."""
    form = await form_of(request)
    params = end_session_params(form.items())
    try:
        ending = await end_session_request(request, params)
    except InvalidRequest as exc:
        return end_session_refused(request, exc)
    w = web(request)
    await end_session(request, ending)
    await services(request).web_logins.end(request.cookies.get(w.login_cookie))
    request.state.web_login, request.state.web_login_read = None, True
    if ending is not None and ending.redirect_url is not None:
        response: Response = redirect(request, ending.redirect_url)
    else:
        response = render(request, "logout.html", title="Signed out", done=True)
    w.clear_cookie(response, w.login_cookie)
    return response


__all__ = ["router"]
