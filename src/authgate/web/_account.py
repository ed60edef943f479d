"""The account page (``/account``, behind the hosted login): profile and email, password,
sessions and devices, two-step sign-in (TOTP, recovery codes, passkeys), connected apps,
and recent security events.

Every form is CSRF-checked (``form_of``) and calls the service method its JSON route
calls, with the facts of the browser's hosted login in place of an access token's claims
(``LoginFacts``): the freshness and second-factor rules are the service's, once. A rule
that wants a newer login sends the browser to ``/login?...&reauth=1``, coming back here.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from authgate.errors import (
    AuthgateError,
    InsufficientUserAuthentication,
    InvalidRequest,
    NotFound,
    PasskeyRegistrationRefused,
)
from authgate.jsonbody import loads_body
from authgate.server.deps import NO_STORE, client_ip, services
from authgate.server.routing import PrefixRouter
from authgate.service.mfa import LoginFacts, TotpEnrolment
from authgate.service.sessions import FIRST_PARTY_CLIENT
from authgate.service.weblogin import WEB_CLIENT, WebLogin
from authgate.storage.base import AuditRecord
from authgate.web._core import (
    check_csrf,
    current_login,
    error_page,
    form_of,
    login_redirect,
    login_url,
    redirect,
    render,
    web,
)

router = PrefixRouter(include_in_schema=False)

_EVENTS_SHOWN: Final = 20


@dataclass(frozen=True, slots=True)
class _Section:
    path: str
    template: str
    title: str
    label: str  # its name in the account navigation


SECTIONS: Final = {
    "profile": _Section("/account", "account.html", "Your account", "Profile and email"),
    "password": _Section("/account/password", "account_password.html", "Password", "Password"),
    "sessions": _Section(
        "/account/sessions", "account_sessions.html", "Sessions and devices", "Sessions"
    ),
    "mfa": _Section("/account/mfa", "account_mfa.html", "Two-step sign-in", "Two-step sign-in"),
    "apps": _Section("/account/apps", "account_apps.html", "Connected apps", "Connected apps"),
    "activity": _Section(
        "/account/activity", "account_activity.html", "Recent security events", "Activity"
    ),
}

# What a finished action says, by the ``done`` of the redirect back to its section.
DONE: Final = {
    "password": "Your password is changed. Your other sessions have ended.",
    "session_ended": "The session has ended: its tokens no longer work.",
    "others_ended": "Every other session has ended: their tokens no longer work.",
    "totp_off": "Two-step sign-in with an authenticator app is off.",
    "passkey_added": "The passkey is added.",
    "passkey_renamed": "The passkey is renamed.",
    "passkey_deleted": "The passkey is removed.",
    "app_revoked": "The app's access is taken back; its sessions have ended.",
}

# The security events of the activity list, in words (others are not shown).
EVENT_WORDS: Final = {
    "user_created": "Account created",
    "login_ok": "Password accepted at sign-in",
    "login_failed": "Failed sign-in: wrong password",
    "web_login": "Signed in on the web",
    "mfa_ok": "Second step of sign-in passed",
    "mfa_failed": "Wrong second-step code",
    "passkey_login": "Signed in with a passkey",
    "passkey_failed": "A passkey was refused",
    "password_changed": "Password changed",
    "password_reset": "Password reset through a mailed link",
    "password_reset_sent": "Password-reset link mailed",
    "password_check_failed": "Wrong current password given",
    "verification_sent": "Verification link mailed",
    "email_verified": "Email address confirmed",
    "email_change_requested": "Change of email address asked for",
    "email_changed": "Email address changed",
    "totp_enabled": "Authenticator app turned on",
    "totp_disabled": "Authenticator app turned off",
    "recovery_codes_generated": "Recovery codes made",
    "recovery_codes_regenerated": "New recovery codes made; the old ones stopped working",
    "recovery_code_used": "A recovery code was used",
    "passkey_added": "Passkey added",
    "passkey_renamed": "Passkey renamed",
    "passkey_deleted": "Passkey removed",
    "session_revoked": "A session was ended",
    "sessions_revoked": "Sessions were ended",
    "refresh_reuse": "A stolen or replayed session token was caught; its session was ended",
    "consent_granted": "An app was given access",
    "consent_revoked": "An app's access was taken back",
    "roles_changed": "Roles changed by an administrator",
    "user_disabled": "Account disabled by an administrator",
    "user_enabled": "Account enabled by an administrator",
    "mfa_reset": "Two-step sign-in reset by an administrator",
}


def login_facts(login: WebLogin) -> LoginFacts:
    """What the MFA rules take, from the browser's hosted login (as ``LoginFacts.of``
    reads it from an access token)."""
    return LoginFacts(sid=login.sid, amr=login.amr, auth_time=login.auth_time)


def reauth_url(path: str) -> str:
    """The login page asked for a new login, coming back to ``path``."""
    return login_url(path) + "&reauth=1"


def _when(at: float) -> dict[str, str]:
    moment = datetime.fromtimestamp(at, UTC)
    return {
        "iso": moment.isoformat(timespec="seconds"),
        "text": moment.strftime("%Y-%m-%d %H:%M UTC"),
    }


def _qr_data_uri(enrolment: TotpEnrolment) -> str:
    """The service's QR code (SVG) as an image's ``data:`` URI: the pages' CSP allows
    ``img-src data:``, and an image runs nothing."""
    svg = enrolment.qr_svg
    if "xmlns=" not in svg[:200]:
        svg = svg.replace("<svg", '<svg xmlns="http://www.w3.org/2000/svg"', 1)
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def _grouped(secret: str) -> str:
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


# --- each section's context ----------------------------------------------------------------


async def _profile(request: Request, login: WebLogin) -> dict[str, Any]:
    return {"user": login.user}


async def _password(request: Request, login: WebLogin) -> dict[str, Any]:
    return {"user": login.user}


async def _client_names(request: Request, client_ids: set[str]) -> dict[str, str]:
    svc = services(request)
    names = {FIRST_PARTY_CLIENT: "authgate API", WEB_CLIENT: "Web sign-in"}
    for client_id in client_ids - names.keys():
        client = await svc.clients.get(client_id)
        names[client_id] = client.name if client is not None else client_id
    return names


async def _sessions(request: Request, login: WebLogin) -> dict[str, Any]:
    records = await services(request).sessions.list(login.user.id)
    names = await _client_names(request, {s.client_id for s in records})
    rows = [
        {
            "sid": s.sid,
            "client": names[s.client_id],
            "ip": s.ip or "unknown",
            "user_agent": s.user_agent or "unknown",
            "created": _when(s.created_at),
            "last_used": _when(s.last_used_at),
            "current": s.sid == login.sid,
        }
        for s in records
    ]
    rows.sort(key=lambda r: not r["current"])  # this browser first
    return {"sessions": rows, "others": sum(not r["current"] for r in rows)}


async def _mfa(request: Request, login: WebLogin) -> dict[str, Any]:
    svc = services(request)
    status = await svc.mfa.status(login.user.id)
    passkeys = [
        {
            "id": p.id,
            "name": p.name,
            "created": _when(p.created_at),
            "last_used": _when(p.last_used_at) if p.last_used_at else None,
        }
        for p in await svc.passkeys.list_passkeys(login.user.id)
    ]
    return {"mfa": status, "passkeys": passkeys, "reauth": reauth_url(SECTIONS["mfa"].path)}


async def _apps(request: Request, login: WebLogin) -> dict[str, Any]:
    svc = services(request)
    consents = await svc.oidc.consents(login.user.id)
    names = await _client_names(request, {c.client_id for c in consents})
    apps = [
        {
            "client_id": c.client_id,
            "name": names[c.client_id],
            "scopes": sorted(c.scope.split()),
            "granted": _when(c.granted_at),
        }
        for c in consents
    ]
    return {"apps": apps}


def _event_row(record: AuditRecord) -> dict[str, Any]:
    return {"words": EVENT_WORDS[record.event], "ip": record.ip, "at": _when(record.at)}


async def _activity(request: Request, login: WebLogin) -> dict[str, Any]:
    # The latest events, with room for the ones the list leaves out.
    records = await services(request).audit.recent(login.user.id, limit=_EVENTS_SHOWN * 4)
    shown = [r for r in records if r.event in EVENT_WORDS][:_EVENTS_SHOWN]
    return {"events": [_event_row(r) for r in shown]}


_CONTEXT: Final[dict[str, Callable[[Request, WebLogin], Awaitable[dict[str, Any]]]]] = {
    "profile": _profile,
    "password": _password,
    "sessions": _sessions,
    "mfa": _mfa,
    "apps": _apps,
    "activity": _activity,
}


async def _page(
    request: Request,
    login: WebLogin,
    name: str,
    *,
    status: int = 200,
    exc: AuthgateError | None = None,
    error_form: str | None = None,
    notice: str | None = None,
) -> Response:
    section = SECTIONS[name]
    context: dict[str, Any] = {
        **await _CONTEXT[name](request, login),
        "sections": SECTIONS,
        "section": name,
        "notice": notice,
        "error_form": error_form,
        "user": login.user,
    }
    if exc is not None:
        return error_page(request, exc, section.template, title=section.title, **context)
    return render(request, section.template, title=section.title, status=status, **context)


def _show(name: str) -> Callable[[Request], Awaitable[Response]]:
    async def show(request: Request) -> Response:
        login = await current_login(request)
        if login is None:
            return login_redirect(request, SECTIONS[name].path)
        done = request.query_params.get("done", "")
        return await _page(request, login, name, notice=DONE.get(done))

    show.__name__ = f"account_{name}"
    show.__doc__ = f"The account page's section: {SECTIONS[name].label}."
    return show


for _name, _section in SECTIONS.items():
    router.add_api_route(_section.path, _show(_name), methods=["GET"])


# --- actions -------------------------------------------------------------------------------

Action = Callable[[dict[str, str], WebLogin], Awaitable[Response]]


async def _act(request: Request, name: str, form_id: str, action: Action) -> Response:
    """A form of section ``name``: CSRF, the hosted login, then ``action``. A refusal
    is the section again with the error in words and the API's status; a demand for a
    newer login (or one with the second factor) is the re-login, back to the section."""
    form = await form_of(request)
    login = await current_login(request)
    path = SECTIONS[name].path
    if login is None:
        return login_redirect(request, path)
    try:
        return await action(form, login)
    except InsufficientUserAuthentication:
        return redirect(request, reauth_url(path))
    except AuthgateError as exc:
        return await _page(request, login, name, exc=exc, error_form=form_id)


def _done(request: Request, name: str, done: str) -> Response:
    return redirect(request, f"{SECTIONS[name].path}?done={done}")


@router.post("/account/verify-email")
async def resend_verification(request: Request) -> Response:
    """Mail a new verification link (``AccountLinks.resend_verification``, as
    ``POST /auth/verify-email/request``): 202."""

    async def action(form: dict[str, str], login: WebLogin) -> Response:
        await services(request).links.resend_verification(login.user, ip=client_ip(request))
        notice = "A new verification link is on its way to your address."
        return await _page(request, login, "profile", status=202, notice=notice)

    return await _act(request, "profile", "verify", action)


@router.post("/account/email")
async def change_email(request: Request) -> Response:
    """Ask to move the account to a new address (as ``POST /auth/email``): 202, and a
    confirmation link to the new address."""

    async def action(form: dict[str, str], login: WebLogin) -> Response:
        svc = services(request)
        await svc.mfa.require_second_factor(login.user.id, login_facts(login))
        await svc.links.request_email_change(
            login.user,
            form.get("new_email", "")[:320],
            form.get("current_password", ""),
            ip=client_ip(request),
        )
        notice = (
            "Check the mailbox of the new address: the change is made when you follow "
            "the link in the mail."
        )
        return await _page(request, login, "profile", status=202, notice=notice)

    return await _act(request, "profile", "email", action)


@router.post("/account/password")
async def change_password(request: Request) -> Response:
    """Change the password (as ``POST /auth/password``): this browser's session goes on,
    every other one ends."""

    async def action(form: dict[str, str], login: WebLogin) -> Response:
        svc = services(request)
        await svc.mfa.require_second_factor(login.user.id, login_facts(login))
        await svc.accounts.change_password(
            login.user,
            form.get("current_password", ""),
            form.get("new_password", ""),
            ip=client_ip(request),
            keep_sid=login.sid,
        )
        return _done(request, "password", "password")

    return await _act(request, "password", "password", action)


@router.post("/account/sessions/end")
async def end_session(request: Request) -> Response:
    """End one of the user's sessions (as ``DELETE /auth/sessions/{sid}``); this
    browser's own is a sign-out."""

    async def action(form: dict[str, str], login: WebLogin) -> Response:
        sid = form.get("sid", "")
        if sid == login.sid:
            w = web(request)
            await services(request).web_logins.end(request.cookies.get(w.login_cookie))
            response = redirect(request, "/login")
            w.clear_cookie(response, w.login_cookie)
            return response
        await services(request).sessions.end(sid, user_id=login.user.id, reason="user_revoked")
        return _done(request, "sessions", "session_ended")

    return await _act(request, "sessions", "sessions", action)


@router.post("/account/sessions/end-others")
async def end_other_sessions(request: Request) -> Response:
    """End every session of the user but this browser's (``Sessions.end_all``)."""

    async def action(form: dict[str, str], login: WebLogin) -> Response:
        await services(request).sessions.end_all(
            login.user.id, keep=login.sid, reason="logout_others"
        )
        return _done(request, "sessions", "others_ended")

    return await _act(request, "sessions", "sessions", action)


def _codes_page(request: Request, codes: list[str], *, title: str) -> Response:
    return render(request, "account_codes.html", title=title, codes=codes)


@router.post("/account/totp")
async def begin_totp(request: Request) -> Response:
    """Start enrolling an authenticator app (``Mfa.begin_totp``, as
    ``POST /auth/mfa/totp``): the QR code and the secret, and the form that confirms."""

    async def action(form: dict[str, str], login: WebLogin) -> Response:
        enrolment = await services(request).mfa.begin_totp(
            login.user, login=login_facts(login), ip=client_ip(request)
        )
        return render(
            request,
            "account_totp.html",
            title="Set up an authenticator app",
            qr=_qr_data_uri(enrolment),
            secret=_grouped(enrolment.secret),
            error_form=None,
        )

    return await _act(request, "mfa", "totp", action)


@router.post("/account/totp/confirm")
async def confirm_totp(request: Request) -> Response:
    """Turn the authenticator app on with a current code (``Mfa.confirm_totp``): the
    ten recovery codes, shown this once."""
    form = await form_of(request)
    login = await current_login(request)
    if login is None:
        return login_redirect(request, SECTIONS["mfa"].path)
    title = "Set up an authenticator app"
    try:
        codes = await services(request).mfa.confirm_totp(
            login.user, form.get("code", ""), login=login_facts(login), ip=client_ip(request)
        )
    except AuthgateError as exc:
        # The secret is not shown again: the code form stays, with the way to start over.
        return error_page(
            request,
            exc,
            "account_totp.html",
            title=title,
            qr=None,
            secret=None,
            error_form="confirm",
        )
    return _codes_page(request, codes, title="Your recovery codes")


@router.post("/account/totp/disable")
async def disable_totp(request: Request) -> Response:
    """Turn the authenticator app off, with the password and a code (as
    ``DELETE /auth/mfa/totp``)."""

    async def action(form: dict[str, str], login: WebLogin) -> Response:
        await services(request).mfa.disable_totp(
            login.user,
            password=form.get("password", ""),
            code=form.get("code", ""),
            ip=client_ip(request),
        )
        return _done(request, "mfa", "totp_off")

    return await _act(request, "mfa", "disable", action)


@router.post("/account/recovery-codes")
async def regenerate_codes(request: Request) -> Response:
    """A new set of recovery codes, with the password and a code (as
    ``POST /auth/mfa/recovery-codes``); the old set dies."""

    async def action(form: dict[str, str], login: WebLogin) -> Response:
        codes = await services(request).mfa.regenerate_recovery_codes(
            login.user,
            password=form.get("password", ""),
            code=form.get("code", ""),
            login=login_facts(login),
            ip=client_ip(request),
        )
        return _codes_page(request, codes, title="Your new recovery codes")

    return await _act(request, "mfa", "codes", action)


@router.post("/account/passkeys/options")
async def passkey_options(request: Request) -> Response:
    """For the page's script: the options of ``navigator.credentials.create()``
    (``Mfa.passkey_registration_options``, as ``POST /auth/passkeys/register/options``).
    CSRF by the ``X-CSRF-Token`` header; refusals are the API's problem documents (401
    ``insufficient_user_authentication``: the script goes to the re-login)."""
    check_csrf(request, request.headers.get("x-csrf-token"))
    login = await current_login(request)
    if login is None:
        raise InsufficientUserAuthentication("no hosted login", description="sign in")
    options = await services(request).mfa.passkey_registration_options(
        login.user, login=login_facts(login), ip=client_ip(request)
    )
    return JSONResponse(options, headers=NO_STORE)


@router.post("/account/passkeys")
async def add_passkey(request: Request) -> Response:
    """Add a passkey with the browser's answer to those options (``Mfa.add_passkey``, as
    ``POST /auth/passkeys/register/verify``); the first second factor also shows its
    recovery codes, once."""

    async def action(form: dict[str, str], login: WebLogin) -> Response:
        svc = services(request)
        raw = form.get("credential", "")
        if not raw:
            # No answer (no JavaScript, or the ceremony failed): the rules still speak first.
            await svc.mfa.require_second_factor(login.user.id, login_facts(login))
            svc.mfa.require_fresh(login_facts(login))
            raise PasskeyRegistrationRefused("no passkey answer (the ceremony needs JavaScript)")
        try:
            credential = loads_body(raw.encode())
        except ValueError as exc:
            raise InvalidRequest("the passkey answer is not JSON") from exc
        _, codes = await svc.mfa.add_passkey(
            login.user,
            credential,
            name=form.get("name") or None,
            login=login_facts(login),
            ip=client_ip(request),
        )
        if codes:
            return _codes_page(request, codes, title="Your recovery codes")
        return _done(request, "mfa", "passkey_added")

    return await _act(request, "mfa", "passkey-add", action)


@router.post("/account/passkeys/{passkey_id}/rename")
async def rename_passkey(passkey_id: str, request: Request) -> Response:
    """Rename a passkey (as ``PATCH /auth/passkeys/{id}``)."""

    async def action(form: dict[str, str], login: WebLogin) -> Response:
        await services(request).passkeys.rename(
            login.user, passkey_id, form.get("name", ""), ip=client_ip(request)
        )
        return _done(request, "mfa", "passkey_renamed")

    return await _act(request, "mfa", f"rename-{passkey_id}", action)


@router.post("/account/passkeys/{passkey_id}/delete")
async def delete_passkey(passkey_id: str, request: Request) -> Response:
    """Remove a passkey with the password (as ``DELETE /auth/passkeys/{id}``)."""

    async def action(form: dict[str, str], login: WebLogin) -> Response:
        await services(request).mfa.delete_passkey(
            login.user,
            passkey_id,
            password=form.get("password", ""),
            login=login_facts(login),
            ip=client_ip(request),
        )
        return _done(request, "mfa", "passkey_deleted")

    return await _act(request, "mfa", f"delete-{passkey_id}", action)


@router.post("/account/apps/revoke")
async def revoke_app(request: Request) -> Response:
    """Take an app's consent back (as ``DELETE /auth/consents/{client_id}``): its
    sessions end."""

    async def action(form: dict[str, str], login: WebLogin) -> Response:
        client_id = form.get("client_id", "")
        if not await services(request).oidc.revoke_consent(login.user.id, client_id):
            raise NotFound("no such consent")
        return _done(request, "apps", "app_revoked")

    return await _act(request, "apps", "apps", action)


__all__ = ["DONE", "EVENT_WORDS", "SECTIONS", "login_facts", "reauth_url", "router"]
