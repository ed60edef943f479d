"""The pages that mailed links open: confirm an address, choose a new password, confirm an
email change. Server-rendered HTML forms with no script: a GET only shows the form (a mail
scanner that fetches the link uses nothing up), the POST does the work through the same
service calls as the JSON API. No cookie is read or set, so a form carries no ambient
authority: the link's token is the only credential."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, Final

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from authgate.errors import AuthgateError, LinkTokenRefused
from authgate.server.deps import client_ip, services
from authgate.server.problems import status_of
from authgate.wiring import Services

router = APIRouter(include_in_schema=False)

_STYLE: Final = (
    "body{font-family:system-ui,sans-serif;margin:0;padding:1rem;line-height:1.5}"
    "main{max-width:28rem;margin:2rem auto}"
    "label{display:block;margin:.75rem 0 .25rem}"
    "input{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}"
    "button{margin-top:1rem;padding:.5rem 1rem;font-size:1rem}"
    ".error{color:#a00000;font-weight:bold}"
)
_STYLE_HASH: Final = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
PAGE_CSP: Final = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS: Final = {
    "Content-Security-Policy": PAGE_CSP,
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
}
_MAX_FIELD: Final = 4096

# Each refusal in words; the code is the API's.
MESSAGES: Final = {
    "invalid_link_token": "This link is not valid. Ask for a new one.",
    "link_token_used": "This link was used already: each link works once.",
    "link_token_superseded": "A newer link was sent since this one. Use the newest mail.",
    "link_token_revoked": "This link no longer works: the account changed since it was sent.",
    "link_token_expired": "This link has expired. Ask for a new one.",
    "link_token_wrong_purpose": "This link is for something else. Use the link of the right mail.",
    "weak_password": "This password is too weak: use at least 8 characters, not a common one.",
    "password_too_predictable": "This password is too predictable: avoid repeats and sequences.",
    "email_taken": "Another account has this address now.",
    "too_many_attempts": "Too many attempts. Try again later.",
    "invalid_request": "The form is not valid. Check each field and try again.",
}

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("authgate", "data/pages"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def render(
    name: str, *, title: str, status: int = 200, error: str | None = None, **context: Any
) -> HTMLResponse:
    """A page of ``data/pages``, escaped, under the pages' CSP."""
    defaults: dict[str, Any] = {"done": False, "token": "", "action": "", "requested": False}
    html = _env.get_template(name).render(
        {**defaults, **context, "title": title, "error": error, "style": _STYLE}
    )
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _message(exc: AuthgateError) -> str:
    return MESSAGES.get(exc.code, status_of(exc)[1] + ".")


def _token(request: Request) -> str:
    token = request.query_params.get("token", "")
    return token if 0 < len(token) <= 256 else ""


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    out = {}
    for key, value in form.multi_items():
        if isinstance(value, str) and len(value) <= _MAX_FIELD and key not in out:
            out[key] = value
    return out


async def _button_page(request: Request, template: str, title: str) -> HTMLResponse:
    """The form of a link whose page is one button (GET changes nothing)."""
    return render(template, title=title, token=_token(request), action=request.url.path)


async def _button_submit(
    request: Request,
    template: str,
    title: str,
    done_title: str,
    use: Callable[[Services, str, str | None], Awaitable[object]],
) -> HTMLResponse:
    """The button's POST: ``use`` the link's token through the service, then the result."""
    form = await _form(request)
    try:
        await use(services(request), form.get("token", ""), client_ip(request))
    except AuthgateError as exc:
        return render(template, title=title, status=status_of(exc)[0], error=_message(exc))
    return render(template, title=done_title, done=True)


_VERIFY_TITLE: Final = "Confirm your email address"
_CONFIRM_TITLE: Final = "Confirm your new email address"


@router.get("/verify-email")
async def verify_email_page(request: Request) -> HTMLResponse:
    """The form of a verification link."""
    return await _button_page(request, "verify_email.html", _VERIFY_TITLE)


@router.post("/verify-email")
async def verify_email_submit(request: Request) -> HTMLResponse:
    """Confirm the address of a verification link."""
    return await _button_submit(
        request,
        "verify_email.html",
        _VERIFY_TITLE,
        "Email address confirmed",
        lambda svc, token, ip: svc.links.verify_email(token, ip=ip),
    )


@router.get("/email/confirm")
async def email_confirm_page(request: Request) -> HTMLResponse:
    """The form of an email-change link."""
    return await _button_page(request, "email_confirm.html", _CONFIRM_TITLE)


@router.post("/email/confirm")
async def email_confirm_submit(request: Request) -> HTMLResponse:
    """Move the account to the address of an email-change link."""
    return await _button_submit(
        request,
        "email_confirm.html",
        _CONFIRM_TITLE,
        "Email address changed",
        lambda svc, token, ip: svc.links.confirm_email_change(token, ip=ip),
    )


@router.get("/reset-password")
async def reset_password_page(request: Request) -> HTMLResponse:
    """With a reset link's token, the form for a new password; without, the form that
    asks for a link."""
    token = _token(request)
    return render(
        "reset_password.html",
        title="Choose a new password" if token else "Reset your password",
        token=token,
        action=request.url.path,
    )


@router.post("/reset-password")
async def reset_password_submit(request: Request) -> HTMLResponse:
    """Set the password from a reset link, or (with ``email``) ask for a link."""
    form = await _form(request)
    links = services(request).links
    ip = client_ip(request)
    path = request.url.path
    if "token" not in form:
        try:
            await links.forgot_password(form.get("email", ""), ip=ip)
        except AuthgateError as exc:
            return render(
                "reset_password.html",
                title="Reset your password",
                status=status_of(exc)[0],
                error=_message(exc),
                action=path,
            )
        return render("reset_password.html", title="Check your mailbox", requested=True)
    token = form["token"]
    try:
        await links.reset_password(token, form.get("new_password", ""), ip=ip)
    except AuthgateError as exc:
        return render(
            "reset_password.html",
            title="Choose a new password",
            status=status_of(exc)[0],
            error=_message(exc),
            # A refused link is dead: show the error, and the form that asks for a new one.
            token="" if isinstance(exc, LinkTokenRefused) else token,
            action=path,
        )
    return render("reset_password.html", title="Password changed", done=True)
