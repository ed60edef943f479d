"""The admin console (``/console``): users, roles, clients, signing keys, the audit log
and the server's health, as server-rendered pages for a hosted login whose user holds
``authgate:admin`` now (the admin API's rule).

Every action calls the same service method as its ``/admin`` route. A GET never changes
anything: each destructive action has a confirmation page whose button POSTs, and the
most dangerous ones (delete a user, reset a user's MFA, rotate the keys) re-check the
admin's password, or a TOTP code, on that very POST (``Mfa.confirm_identity``: the login
throttle, or the second-factor one).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import Response

from authgate.errors import (
    AuthgateError,
    Conflict,
    InvalidRequest,
    NotFound,
    StorageUnavailable,
)
from authgate.server.deps import client_ip, services
from authgate.server.problems import headers_of, status_of
from authgate.server.routes.admin import mail_reset_link, rotate_now
from authgate.server.routing import PrefixRouter
from authgate.service.accounts import ADMIN_PERMISSION
from authgate.service.weblogin import WebLogin
from authgate.web._core import (
    MESSAGES,
    current_login,
    form_of,
    login_redirect,
    redirect,
    render,
)
from authgate.wiring import Services

PAGE: Final = 25  # users per page
AUDIT_PAGE: Final = 50

SECTIONS: Final = (
    ("users", "Users"),
    ("roles", "Roles"),
    ("clients", "Clients"),
    ("keys", "Signing keys"),
    ("audit", "Audit log"),
    ("health", "Health"),
)

# Each refusal in words (the API's codes); the reason stays in the log.
_WORDS: Final = {
    "not_found": "It does not exist, or no longer exists.",
    "invalid_credentials": "The password is wrong. Nothing was changed.",
    "invalid_mfa_code": "This code is wrong or was used already. Nothing was changed.",
    "too_many_attempts": "Too many wrong attempts. Wait a while, then try again. "
    "Nothing was changed.",
    "invalid_scope": "A scope is not allowed. A service client's scopes must be "
    "permissions that some role grants; an OpenID Connect client's are openid, and "
    "profile or email.",
    "invalid_configuration": "The keys cannot be rotated here: a static key "
    "(AUTHGATE_HS256_SECRET) does not rotate.",
    "conflict": "A role with this name exists already.",
}
_FIELD_WORDS: Final = {
    "name": "The name is not valid: a role name is 1 to 64 lower-case letters, digits "
    "and _.:- (starting with a letter or digit); a client name is 1 to 100 characters.",
    "permissions": "A permission is not valid: each is one word of printable characters, "
    "without quotes or backslashes.",
    "redirect_uris": "A redirect URI is not valid. Each is absolute, https (or http to "
    "localhost or 127.0.0.1), with no fragment, user info or wildcard; a private-use "
    "scheme (com.example.app:/done) only for a public client.",
    "post_logout_redirect_uris": "A post-logout redirect URI is not valid (the same rules "
    "as the redirect URIs).",
    "email": "The email address is not valid.",
    "kind": "An OpenID Connect client needs at least one redirect URI, and a service "
    "client has none.",
}

# What a finished action says on the page it leads to (fixed words: nothing from the URL
# is shown).
_DONE: Final = {
    "roles": "The roles are saved. The user's access tokens issued before are dead; "
    "a refresh gets the new roles.",
    "verified": "The email address is marked verified.",
    "reset_link": "A password-reset link is on its way to the user's address.",
    "enabled": "The user is enabled.",
    "disabled": "The user is disabled: every session ended, every token is dead.",
    "deleted": "The user is deleted: every session ended, every token is dead.",
    "mfa_reset": "Every second factor of the user is off (recovery codes too). "
    "The user was told by mail.",
    "session_ended": "The session ended: its tokens are dead.",
    "sessions_ended": "Every session of the user ended: every token is dead.",
    "role_saved": "The role is saved. The access tokens of its holders issued before are "
    "dead; a refresh gets the new permissions.",
    "role_deleted": "The role is deleted. The access tokens of its former holders are dead.",
    "client_revoked": "The client is revoked: it can no longer authenticate, and its "
    "tokens are dead.",
    "rotated": "The keys are rotated: the next key of each algorithm signs now.",
}


class ConsoleDenied(Exception):
    """No hosted login (the login page), or one without ``authgate:admin`` (403)."""

    def __init__(self, *, signed_in: bool) -> None:
        super().__init__("console refused")
        self.signed_in = signed_in


async def console_admin(request: Request) -> WebLogin:
    """The hosted login of an admin: its user holds ``authgate:admin`` now, read from the
    user's current roles (as the admin API checks ``user_permissions``). ConsoleDenied
    otherwise, before any form is read."""
    login = await current_login(request)
    if login is None:
        raise ConsoleDenied(signed_in=False)
    if ADMIN_PERMISSION not in await services(request).accounts.permissions(login.user):
        raise ConsoleDenied(signed_in=True)
    return login


def console_denied(request: Request, exc: ConsoleDenied) -> Response:
    """The answer to a refused console request: 303 to the login, or the 403 page."""
    if not exc.signed_in:
        return login_redirect(request)
    return render(
        request,
        "error.html",
        title="Administrators only",
        status=403,
        error="The console is for administrators: your account does not have the "
        f"{ADMIN_PERMISSION} permission.",
        code="insufficient_scope",
    )


Admin = Annotated[WebLogin, Depends(console_admin)]
router = PrefixRouter(
    prefix="/console", include_in_schema=False, dependencies=[Depends(console_admin)]
)


# --- helpers ---------------------------------------------------------------------------


def when(ts: float | None) -> str:
    """A timestamp as UTC text ("2024-05-01 12:30 UTC"), or a dash."""
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso(ts: float | None) -> str:
    """A timestamp for ``<time datetime>``."""
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def ago(seconds: float) -> str:
    """A duration in words ("3 d 4 h", "5 min", "12 s")."""
    s = max(0, int(seconds))
    if s >= 86400:
        return f"{s // 86400} d {s % 86400 // 3600} h"
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    if s >= 60:
        return f"{s // 60} min"
    return f"{s} s"


def words_of(exc: AuthgateError) -> str:
    """A refusal in words for the console."""
    field = exc.context.get("field")
    if exc.code in ("invalid_request",) and isinstance(field, str) and field in _FIELD_WORDS:
        return _FIELD_WORDS[field]
    return _WORDS.get(exc.code) or MESSAGES.get(exc.code) or status_of(exc)[1] + "."


def page(
    request: Request,
    template: str,
    /,
    *,
    title: str,
    section: str,
    exc: AuthgateError | None = None,
    status: int = 200,
    **context: Any,
) -> Response:
    """A console page: the sections' navigation, the time helpers, and a refusal in words
    with its status (and Retry-After) when ``exc`` is given."""
    headers: dict[str, str] = {}
    error = None
    if exc is not None:
        status = status_of(exc)[0]
        error = words_of(exc)
        headers = {k: v for k, v in headers_of(exc, status).items() if k == "Retry-After"}
    done = request.query_params.get("done")
    return render(
        request,
        template,
        title=title,
        status=status,
        error=error,
        headers=headers,
        sections=SECTIONS,
        section=section,
        when=when,
        iso=iso,
        done=_DONE.get(done or ""),
        **context,
    )


def lines_of(value: str) -> list[str]:
    """The non-empty lines (or space-separated words) of a text area."""
    return [part for part in value.replace(",", " ").split() if part]


def _done(request: Request, path: str, what: str) -> Response:
    return redirect(request, f"{path}?done={what}")


# --- overview --------------------------------------------------------------------------


@router.get("")
async def console_home(request: Request, admin: Admin) -> Response:
    """The console's sections."""
    return page(request, "console.html", title="Admin console", section="")


# --- users -----------------------------------------------------------------------------


@router.get("/users")
async def users_page(request: Request, admin: Admin) -> Response:
    """Users by id, a page at a time; ``q`` keeps those whose email contains it."""
    svc = services(request)
    q = request.query_params.get("q", "")[:320].strip()
    after = request.query_params.get("after", "")[:64] or None
    found = await svc.accounts.list_users(after=after, limit=PAGE + 1, email=q or None)
    rows = found[:PAGE]
    statuses = await svc.mfa.statuses([u.id for u in rows])
    next_url = None
    if len(found) > PAGE:
        query = {"after": rows[-1].id, **({"q": q} if q else {})}
        next_url = "/console/users?" + urlencode(query)
    first_url = "/console/users" + ("?" + urlencode({"q": q}) if q else "")
    return page(
        request,
        "console_users.html",
        title="Users",
        section="users",
        users=rows,
        mfa=statuses,
        q=q,
        next_url=next_url,
        first_url=first_url if after else None,
    )


async def _user_page(
    request: Request, user_id: str, *, exc: AuthgateError | None = None
) -> Response:
    svc = services(request)
    user = await svc.accounts.get(user_id)
    return page(
        request,
        "console_user.html",
        title=f"User {user.email}",
        section="users",
        exc=exc,
        user=user,
        permissions=await svc.accounts.permissions(user),
        roles=await svc.accounts.list_roles(),
        mfa=await svc.mfa.status(user.id),
        sessions=await svc.sessions.list(user.id),
    )


def _not_found(request: Request, exc: AuthgateError, section: str) -> Response:
    return page(
        request, "console_message.html", title="Not found", section=section, exc=exc, back=None
    )


@router.get("/users/{user_id}")
async def user_page(user_id: str, request: Request, admin: Admin) -> Response:
    """One user: roles, verification, MFA, disabled, sessions, and the actions."""
    try:
        return await _user_page(request, user_id)
    except NotFound as exc:
        return _not_found(request, exc, "users")


async def _user_action(
    request: Request,
    user_id: str,
    what: str,
    act: Callable[[Services, dict[str, str]], Awaitable[object]],
) -> Response:
    """A user action without confirmation: the form (CSRF), the service call, back to the
    user's page with the result in words (or the refusal)."""
    form = await form_of(request)
    svc = services(request)
    try:
        await act(svc, form)
    except NotFound as exc:
        return _not_found(request, exc, "users")
    except AuthgateError as exc:
        return await _user_page(request, user_id, exc=exc)
    return _done(request, f"/console/users/{user_id}", what)


@router.post("/users/{user_id}/roles")
async def user_roles(user_id: str, request: Request, admin: Admin) -> Response:
    """Replace the user's roles (``Directory.set_roles``: the user's epoch moves)."""

    async def act(svc: Services, form: dict[str, str]) -> None:
        multi = (await request.form()).getlist("role")
        await svc.directory.set_roles(user_id, [r for r in multi if isinstance(r, str)])

    return await _user_action(request, user_id, "roles", act)


@router.post("/users/{user_id}/verify")
async def user_verify(user_id: str, request: Request, admin: Admin) -> Response:
    """Mark the address verified (``AccountLinks.mark_verified``)."""

    async def act(svc: Services, form: dict[str, str]) -> None:
        await svc.links.mark_verified(user_id, by="admin")

    return await _user_action(request, user_id, "verified", act)


@router.post("/users/{user_id}/reset-link")
async def user_reset_link(user_id: str, request: Request, admin: Admin) -> Response:
    """Mail the user a password-reset link (as ``/admin/users/{id}/reset-link``)."""

    async def act(svc: Services, form: dict[str, str]) -> None:
        await mail_reset_link(svc, await svc.accounts.get(user_id))

    return await _user_action(request, user_id, "reset_link", act)


@router.post("/users/{user_id}/enable")
async def user_enable(user_id: str, request: Request, admin: Admin) -> Response:
    """Enable a disabled user."""

    async def act(svc: Services, form: dict[str, str]) -> None:
        await svc.directory.set_disabled(user_id, False)

    return await _user_action(request, user_id, "enabled", act)


# --- confirmations -----------------------------------------------------------------------


def _confirm_page(
    request: Request,
    *,
    section: str,
    title: str,
    question: str,
    action: str,
    button: str,
    back: str,
    reauth: bool,
    totp: bool,
    exc: AuthgateError | None = None,
) -> Response:
    return page(
        request,
        "console_confirm.html",
        title=title,
        section=section,
        exc=exc,
        question=question,
        action=action,
        button=button,
        back=back,
        reauth=reauth,
        totp=totp,
    )


class _Confirm:
    """One destructive action: its confirmation page (GET) and its POST, which re-checks
    the admin (``reauth``) before ``act`` runs; a refusal changes nothing."""

    def __init__(
        self,
        *,
        section: str,
        title: str,
        button: str,
        reauth: bool,
        question: Callable[[Services, dict[str, str]], Awaitable[str]],
        act: Callable[[Services, WebLogin, dict[str, str], str | None], Awaitable[object]],
        back: Callable[[dict[str, str]], str],
        done: Callable[[dict[str, str]], str],
    ) -> None:
        self.section, self.title, self.button, self.reauth = section, title, button, reauth
        self.question, self.act, self.back, self.done = question, act, back, done

    async def _page(
        self,
        request: Request,
        admin: WebLogin,
        params: dict[str, str],
        exc: AuthgateError | None = None,
    ) -> Response:
        svc = services(request)
        totp = self.reauth and (await svc.mfa.status(admin.user.id)).totp
        return _confirm_page(
            request,
            section=self.section,
            title=self.title,
            question=await self.question(svc, params),
            action=request.url.path,
            button=self.button,
            back=self.back(params),
            reauth=self.reauth,
            totp=totp,
            exc=exc,
        )

    async def show(self, request: Request, admin: WebLogin, params: dict[str, str]) -> Response:
        try:
            return await self._page(request, admin, params)
        except NotFound as exc:
            return _not_found(request, exc, self.section)

    async def submit(self, request: Request, admin: WebLogin, params: dict[str, str]) -> Response:
        form = await form_of(request)
        svc = services(request)
        ip = client_ip(request)
        try:
            await self.question(svc, params)  # it still exists
        except NotFound as exc:
            return _not_found(request, exc, self.section)
        try:
            if self.reauth:
                await svc.mfa.confirm_identity(
                    admin.user,
                    password=form.get("password") or None,
                    code=form.get("code") or None,
                    ip=ip,
                )
            await self.act(svc, admin, params, ip)
        except NotFound as exc:
            return _not_found(request, exc, self.section)
        except AuthgateError as exc:
            return await self._page(request, admin, params, exc)
        return redirect(request, self.done(params))


async def _user_email(svc: Services, params: dict[str, str]) -> str:
    return (await svc.accounts.get(params["user_id"])).email


def _user_back(params: dict[str, str]) -> str:
    return f"/console/users/{params['user_id']}"


def _user_done(what: str) -> Callable[[dict[str, str]], str]:
    return lambda params: f"/console/users/{params['user_id']}?done={what}"


async def _q_disable(svc: Services, params: dict[str, str]) -> str:
    email = await _user_email(svc, params)
    return f"Disable {email}? Every session of theirs ends and every token dies."


async def _q_delete(svc: Services, params: dict[str, str]) -> str:
    email = await _user_email(svc, params)
    return f"Delete {email} for good? Every session ends and every token dies."


async def _q_mfa(svc: Services, params: dict[str, str]) -> str:
    email = await _user_email(svc, params)
    return (
        f"Turn off every second factor of {email} (authenticator app, passkeys, recovery "
        "codes)? They will sign in with the password alone until they enrol again."
    )


async def _q_end_all(svc: Services, params: dict[str, str]) -> str:
    email = await _user_email(svc, params)
    return f"End every session of {email}? Every token of theirs dies."


async def _q_end_one(svc: Services, params: dict[str, str]) -> str:
    email = await _user_email(svc, params)
    sessions = {s.sid for s in await svc.sessions.list(params["user_id"])}
    if params["sid"] not in sessions:
        raise NotFound("no such live session")
    return f"End the session {params['sid']} of {email}? Its tokens die."


async def _do_disable(svc: Services, admin: WebLogin, p: dict[str, str], ip: str | None) -> None:
    await svc.directory.set_disabled(p["user_id"], True)


async def _do_delete(svc: Services, admin: WebLogin, p: dict[str, str], ip: str | None) -> None:
    await svc.directory.delete_user(p["user_id"])


async def _do_mfa(svc: Services, admin: WebLogin, p: dict[str, str], ip: str | None) -> None:
    await svc.mfa.reset(p["user_id"], by=admin.user.id, ip=ip)


async def _do_end_all(svc: Services, admin: WebLogin, p: dict[str, str], ip: str | None) -> None:
    await svc.sessions.end_all(p["user_id"], reason="admin_revoked")


async def _do_end_one(svc: Services, admin: WebLogin, p: dict[str, str], ip: str | None) -> None:
    await svc.sessions.end(p["sid"], user_id=p["user_id"], reason="admin_revoked")


DISABLE = _Confirm(
    section="users",
    title="Disable this user?",
    button="Disable the user",
    reauth=False,
    question=_q_disable,
    act=_do_disable,
    back=_user_back,
    done=_user_done("disabled"),
)
DELETE_USER = _Confirm(
    section="users",
    title="Delete this user?",
    button="Delete the user",
    reauth=True,
    question=_q_delete,
    act=_do_delete,
    back=_user_back,
    done=lambda params: "/console/users?done=deleted",
)
MFA_RESET = _Confirm(
    section="users",
    title="Reset this user's MFA?",
    button="Reset MFA",
    reauth=True,
    question=_q_mfa,
    act=_do_mfa,
    back=_user_back,
    done=_user_done("mfa_reset"),
)
END_ALL = _Confirm(
    section="users",
    title="End every session?",
    button="End every session",
    reauth=False,
    question=_q_end_all,
    act=_do_end_all,
    back=_user_back,
    done=_user_done("sessions_ended"),
)
END_ONE = _Confirm(
    section="users",
    title="End this session?",
    button="End the session",
    reauth=False,
    question=_q_end_one,
    act=_do_end_one,
    back=_user_back,
    done=_user_done("session_ended"),
)


@router.get("/users/{user_id}/disable")
async def disable_page(user_id: str, request: Request, admin: Admin) -> Response:
    """Asks before disabling a user."""
    return await DISABLE.show(request, admin, {"user_id": user_id})


@router.post("/users/{user_id}/disable")
async def disable_submit(user_id: str, request: Request, admin: Admin) -> Response:
    """Disable a user (``Directory.set_disabled``)."""
    return await DISABLE.submit(request, admin, {"user_id": user_id})


@router.get("/users/{user_id}/delete")
async def delete_user_page(user_id: str, request: Request, admin: Admin) -> Response:
    """Asks, with the admin's password, before deleting a user."""
    return await DELETE_USER.show(request, admin, {"user_id": user_id})


@router.post("/users/{user_id}/delete")
async def delete_user_submit(user_id: str, request: Request, admin: Admin) -> Response:
    """Delete a user (``Directory.delete_user``) once the admin's password checks."""
    return await DELETE_USER.submit(request, admin, {"user_id": user_id})


@router.get("/users/{user_id}/mfa-reset")
async def mfa_reset_page(user_id: str, request: Request, admin: Admin) -> Response:
    """Asks, with the admin's password, before resetting a user's MFA."""
    return await MFA_RESET.show(request, admin, {"user_id": user_id})


@router.post("/users/{user_id}/mfa-reset")
async def mfa_reset_submit(user_id: str, request: Request, admin: Admin) -> Response:
    """Reset a user's MFA (``Mfa.reset``) once the admin's password checks."""
    return await MFA_RESET.submit(request, admin, {"user_id": user_id})


@router.get("/users/{user_id}/sessions/end-all")
async def end_all_page(user_id: str, request: Request, admin: Admin) -> Response:
    """Asks before ending every session of a user."""
    return await END_ALL.show(request, admin, {"user_id": user_id})


@router.post("/users/{user_id}/sessions/end-all")
async def end_all_submit(user_id: str, request: Request, admin: Admin) -> Response:
    """End every session of a user (``Sessions.end_all``: the user's epoch moves)."""
    return await END_ALL.submit(request, admin, {"user_id": user_id})


@router.get("/users/{user_id}/sessions/{sid}/end")
async def end_one_page(user_id: str, sid: str, request: Request, admin: Admin) -> Response:
    """Asks before ending one session."""
    return await END_ONE.show(request, admin, {"user_id": user_id, "sid": sid})


@router.post("/users/{user_id}/sessions/{sid}/end")
async def end_one_submit(user_id: str, sid: str, request: Request, admin: Admin) -> Response:
    """End one session (``Sessions.end``, as ``DELETE /admin/sessions/{sid}``)."""
    return await END_ONE.submit(request, admin, {"user_id": user_id, "sid": sid})


# --- roles -----------------------------------------------------------------------------


async def _roles_page(
    request: Request,
    *,
    exc: AuthgateError | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    svc = services(request)
    form = form or {}
    roles = await svc.accounts.list_roles()
    holders = {r.name: len(await svc.accounts.users_with_role(r.name)) for r in roles}
    return page(
        request,
        "console_roles.html",
        title="Roles and permissions",
        section="roles",
        exc=exc,
        roles=roles,
        holders=holders,
        name=form.get("name", "")[:64],
        permissions=form.get("permissions", "")[:4096],
        error_field=_error_field(exc),
    )


def _error_field(exc: AuthgateError | None) -> tuple[str, ...] | None:
    if exc is None:
        return None
    field = exc.context.get("field")
    return (field,) if isinstance(field, str) else None


@router.get("/roles")
async def roles_page(request: Request, admin: Admin) -> Response:
    """Every role and its permissions, and the form for a new one."""
    return await _roles_page(request)


@router.post("/roles")
async def role_create(request: Request, admin: Admin) -> Response:
    """Create a role (``Directory.put_role``; a name taken is refused, as the API does)."""
    form = await form_of(request)
    svc = services(request)
    name = form.get("name", "").strip()
    try:
        try:
            await svc.accounts.get_role(name)
        except NotFound:
            await svc.directory.put_role(name, lines_of(form.get("permissions", "")))
        else:
            raise Conflict("the role exists", field="name")
    except AuthgateError as exc:
        return await _roles_page(request, exc=exc, form=form)
    return _done(request, "/console/roles", "role_saved")


async def _role_page(
    request: Request, name: str, *, exc: AuthgateError | None = None, text: str | None = None
) -> Response:
    svc = services(request)
    role = await svc.accounts.get_role(name)
    return page(
        request,
        "console_role.html",
        title=f"Role {role.name}",
        section="roles",
        exc=exc,
        role=role,
        permissions="\n".join(role.permissions) if text is None else text,
        holders=len(await svc.accounts.users_with_role(role.name)),
        error_field=_error_field(exc),
    )


@router.get("/roles/{name}")
async def role_page(name: str, request: Request, admin: Admin) -> Response:
    """A role's permissions, editable."""
    try:
        return await _role_page(request, name)
    except NotFound as exc:
        return _not_found(request, exc, "roles")


@router.post("/roles/{name}")
async def role_save(name: str, request: Request, admin: Admin) -> Response:
    """Replace a role's permissions (``Directory.put_role``: its holders' tokens die)."""
    form = await form_of(request)
    svc = services(request)
    text = form.get("permissions", "")[:4096]
    try:
        await svc.accounts.get_role(name)
    except NotFound as exc:
        return _not_found(request, exc, "roles")
    try:
        await svc.directory.put_role(name, lines_of(text))
    except AuthgateError as exc:
        return await _role_page(request, name, exc=exc, text=text)
    return _done(request, "/console/roles", "role_saved")


async def _q_role(svc: Services, params: dict[str, str]) -> str:
    role = await svc.accounts.get_role(params["name"])
    holders = len(await svc.accounts.users_with_role(role.name))
    return (
        f"Delete the role {role.name}? {holders} user(s) hold it; they lose its "
        "permissions and their access tokens die."
    )


async def _do_role(svc: Services, admin: WebLogin, p: dict[str, str], ip: str | None) -> None:
    await svc.directory.delete_role(p["name"])


DELETE_ROLE = _Confirm(
    section="roles",
    title="Delete this role?",
    button="Delete the role",
    reauth=False,
    question=_q_role,
    act=_do_role,
    back=lambda params: f"/console/roles/{params['name']}",
    done=lambda params: "/console/roles?done=role_deleted",
)


@router.get("/roles/{name}/delete")
async def role_delete_page(name: str, request: Request, admin: Admin) -> Response:
    """Asks before deleting a role."""
    return await DELETE_ROLE.show(request, admin, {"name": name})


@router.post("/roles/{name}/delete")
async def role_delete_submit(name: str, request: Request, admin: Admin) -> Response:
    """Delete a role (``Directory.delete_role``)."""
    return await DELETE_ROLE.submit(request, admin, {"name": name})


# --- clients ---------------------------------------------------------------------------


@router.get("/clients")
async def clients_page(request: Request, admin: Admin) -> Response:
    """Every client (never a secret)."""
    clients = await services(request).clients.list()
    return page(
        request,
        "console_clients.html",
        title="Clients",
        section="clients",
        clients=sorted(clients, key=lambda c: (c.revoked_at is not None, -c.created_at)),
    )


def _new_client_page(
    request: Request, form: dict[str, str], exc: AuthgateError | None = None
) -> Response:
    return page(
        request,
        "console_client_new.html",
        title="New client",
        section="clients",
        exc=exc,
        form=form,
        kind=form.get("kind", "service"),
        error_field=_error_field(exc),
    )


@router.get("/clients/new")
async def client_new_page(request: Request, admin: Admin) -> Response:
    """The form for a new service or OpenID Connect client."""
    return _new_client_page(request, {})


@router.post("/clients")
async def client_create(request: Request, admin: Admin) -> Response:
    """Create a client (``Clients.create``, as ``POST /admin/clients``); its secret is on
    this answer's page and nowhere else, ever."""
    form = await form_of(request)
    svc = services(request)
    kind = form.get("kind", "service")
    redirect_uris = lines_of(form.get("redirect_uris", ""))
    logout_uris = lines_of(form.get("post_logout_redirect_uris", ""))
    try:
        if kind not in ("service", "oidc"):
            raise InvalidRequest("unknown client kind", field="kind")
        oidc = kind == "oidc"
        if oidc != bool(redirect_uris) or (not oidc and logout_uris):
            raise InvalidRequest("the kind and the redirect URIs disagree", field="kind")
        record, secret = await svc.clients.create(
            form.get("name", ""),
            lines_of(form.get("scopes", "")),
            redirect_uris=redirect_uris,
            post_logout_redirect_uris=logout_uris,
            public=oidc and form.get("public") == "on",
            first_party=oidc and form.get("first_party") == "on",
        )
    except AuthgateError as exc:
        return _new_client_page(request, form, exc)
    return page(
        request,
        "console_client_created.html",
        title="Client created",
        section="clients",
        status=201,
        client=record,
        secret=secret,
    )


async def _q_client(svc: Services, params: dict[str, str]) -> str:
    client = await svc.clients.get(params["client_id"])
    if client is None or client.revoked_at is not None:
        raise NotFound("no such live client")
    return (
        f"Revoke the client {client.name} ({client.client_id})? It can no longer "
        "authenticate, and every token it holds dies."
    )


async def _do_client(svc: Services, admin: WebLogin, p: dict[str, str], ip: str | None) -> None:
    if not await svc.clients.revoke(p["client_id"]):
        raise NotFound("no such client")


DELETE_CLIENT = _Confirm(
    section="clients",
    title="Revoke this client?",
    button="Revoke the client",
    reauth=False,
    question=_q_client,
    act=_do_client,
    back=lambda params: "/console/clients",
    done=lambda params: "/console/clients?done=client_revoked",
)


@router.get("/clients/{client_id}/delete")
async def client_delete_page(client_id: str, request: Request, admin: Admin) -> Response:
    """Asks before revoking a client."""
    return await DELETE_CLIENT.show(request, admin, {"client_id": client_id})


@router.post("/clients/{client_id}/delete")
async def client_delete_submit(client_id: str, request: Request, admin: Admin) -> Response:
    """Revoke a client (``Clients.revoke``, as ``DELETE /admin/clients/{id}``)."""
    return await DELETE_CLIENT.submit(request, admin, {"client_id": client_id})


# --- signing keys ----------------------------------------------------------------------


@router.get("/keys")
async def keys_page(request: Request, admin: Admin) -> Response:
    """Every stored key: its algorithm, state and dates."""
    svc = services(request)
    order = {"current": 0, "next": 1, "retiring": 2, "retired": 3}
    records = sorted(
        await svc.keyring.records(), key=lambda k: (k.alg, order.get(k.state, 9), -k.created_at)
    )
    return page(
        request,
        "console_keys.html",
        title="Signing keys",
        section="keys",
        keys=records,
        rotation=svc.settings.key_rotation,
        now=svc.clock.now(),
    )


async def _q_rotate(svc: Services, params: dict[str, str]) -> str:
    algs = ", ".join(svc.keyring.algorithms) or "none"
    return (
        f"Rotate the signing keys now ({algs})? The next key of each algorithm signs from "
        "now on; the current one retires and stays published until its tokens expire."
    )


async def _do_rotate(svc: Services, admin: WebLogin, p: dict[str, str], ip: str | None) -> None:
    await rotate_now(svc, by=admin.user.id)


ROTATE = _Confirm(
    section="keys",
    title="Rotate the keys now?",
    button="Rotate now",
    reauth=True,
    question=_q_rotate,
    act=_do_rotate,
    back=lambda params: "/console/keys",
    done=lambda params: "/console/keys?done=rotated",
)


@router.get("/keys/rotate")
async def rotate_page(request: Request, admin: Admin) -> Response:
    """Asks, with the admin's password, before rotating the keys."""
    return await ROTATE.show(request, admin, {})


@router.post("/keys/rotate")
async def rotate_submit(request: Request, admin: Admin) -> Response:
    """Rotate the keys (as ``POST /admin/keys/rotate``) once the admin's password checks."""
    return await ROTATE.submit(request, admin, {})


# --- audit -----------------------------------------------------------------------------


@router.get("/audit")
async def audit_page(request: Request, admin: Admin) -> Response:
    """Security events, filtered by user (id or email) and event, a page at a time; and,
    when asked (``verify=1``), whether the hash chain verifies (``Audit.verify``, as
    ``authgate audit verify``)."""
    svc = services(request)
    user = request.query_params.get("user", "")[:320].strip()
    event = request.query_params.get("event", "")[:64].strip()
    raw_after = request.query_params.get("after", "")
    after = int(raw_after) if raw_after.isdigit() and len(raw_after) <= 18 else None
    user_id: str | None = user or None
    known = True
    if user and "@" in user:
        try:
            user_id = (await svc.accounts.by_email(user)).id
        except (NotFound, InvalidRequest):
            known = False  # no such address: no events (and no query)
    rows = (
        await svc.storage.query_audit(
            user_id=user_id, event=event or None, after=after, limit=AUDIT_PAGE + 1
        )
        if known
        else []
    )
    shown = rows[:AUDIT_PAGE]
    filters = {k: v for k, v in (("user", user), ("event", event)) if v}
    next_url = None
    if len(rows) > AUDIT_PAGE:
        next_url = "/console/audit?" + urlencode({**filters, "after": str(shown[-1].id)})
    first_url = "/console/audit" + ("?" + urlencode(filters) if filters else "")
    return page(
        request,
        "console_audit.html",
        title="Audit log",
        section="audit",
        rows=[(r, json.dumps(r.detail, sort_keys=True) if r.detail else "") for r in shown],
        user=user,
        event=event,
        # The walk reads every event ever written: only when asked for, never per view.
        chain=await svc.audit.verify() if request.query_params.get("verify") == "1" else None,
        next_url=next_url,
        first_url=first_url if after is not None else None,
    )


# --- health ----------------------------------------------------------------------------


async def _timed(call: Callable[[], Awaitable[object]]) -> tuple[bool, float]:
    start = time.perf_counter()
    try:
        await call()
    except (StorageUnavailable, OSError):
        return False, time.perf_counter() - start
    return True, time.perf_counter() - start


@router.get("/health")
async def health_page(request: Request, admin: Admin) -> Response:
    """The database and Redis answer (and how fast), the revocation feed (its newest
    event, how long a read takes, whether other instances are told through Redis), and
    the age of each signing key."""
    svc = services(request)
    now = svc.clock.now()
    db_ok, db_s = await _timed(svc.storage.ping)
    redis: tuple[bool, float] | None = None
    if svc.fanout is not None:
        start = time.perf_counter()
        redis = (await svc.fanout.ping(), time.perf_counter() - start)
    feed_start = time.perf_counter()
    latest = await svc.storage.latest_revocation_id()
    newest = await svc.storage.revocations_after(max(latest - 1, 0), now=0.0, limit=1)
    feed_s = time.perf_counter() - feed_start
    newest_at = newest[-1].created_at if newest else None
    keys = [k for k in await svc.keyring.records() if k.state in ("current", "next")]
    return page(
        request,
        "console_health.html",
        title="Health",
        section="health",
        db_ok=db_ok,
        db_ms=db_s * 1000,
        redis_configured=svc.settings.redis_url is not None,
        redis=redis,
        fanout_connected=bool(getattr(svc.fanout, "connected", False)),
        feed_cursor=latest,
        feed_ms=feed_s * 1000,
        feed_newest_age=None if newest_at is None else ago(now - newest_at),
        keys=sorted(keys, key=lambda k: (k.alg, k.state)),
        key_age=lambda k: ago(now - (k.activated_at or k.created_at)),
        rotation=ago(svc.settings.key_rotation),
        now=now,
    )


def route_paths(methods: Sequence[str] = ("GET", "POST")) -> list[tuple[str, str]]:
    """Every (method, path template) of the console, for tests and docs."""
    out: list[tuple[str, str]] = []
    for route in router.routes:
        for method in sorted(getattr(route, "methods", ()) or ()):
            if method in methods:
                out.append((method, getattr(route, "path", "")))
    return out


__all__ = ["ConsoleDenied", "console_admin", "console_denied", "route_paths", "router"]
