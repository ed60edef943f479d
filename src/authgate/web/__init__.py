"""The hosted pages: server-rendered HTML (Jinja2, escaped by default) under a strict
CSP, CSRF on every form, and the login-session cookie. Another route of the server reuses
the layer through these names:

- ``await current_login(request)``: the browser's live hosted login (``user``, ``sid``,
  ``auth_time``, ``amr``), or None;
- ``login_redirect(request, next_path)``: 303 to ``/login``, coming back to ``next_path``
  (a same-origin path; anything else is dropped) once signed in;
- ``render(request, "name.html", title=..., **context)``: a page of the templates (the
  theme folder's first), with ``csrf`` in its context for a form's hidden field;
  ``form_data(request)``: a POSTed form, once its CSRF token is checked (CsrfFailed: the
  403 ``csrf_failed`` page).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from authgate.settings import Settings
from authgate.web._account import router as account_router
from authgate.web._console import ConsoleDenied, console_denied
from authgate.web._console import router as console_router
from authgate.web._core import (
    DEFAULT_NEXT,
    MESSAGES,
    PAGE_CSP,
    CsrfFailed,
    Web,
    check_csrf,
    csrf_failed_page,
    csrf_token,
    current_login,
    login_redirect,
    login_url,
    page_headers,
    redirect,
    render,
    safe_next,
)
from authgate.web._core import form_of as form_data
from authgate.web._oidc import router as oidc_router
from authgate.web._routes import router


def mount(app: FastAPI, settings: Settings) -> None:
    """Add the hosted pages to ``app``: their routes, templates and static files, and the
    403 page of a refused form."""
    app.state.web = Web(settings)
    app.include_router(router)
    app.include_router(oidc_router)
    app.include_router(account_router)
    app.include_router(console_router)

    async def _csrf_failed(request: Request, exc: Exception) -> Response:
        return csrf_failed_page(request)

    app.add_exception_handler(CsrfFailed, _csrf_failed)

    async def _console_denied(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConsoleDenied)
        return console_denied(request, exc)

    app.add_exception_handler(ConsoleDenied, _console_denied)


__all__ = [
    "DEFAULT_NEXT",
    "MESSAGES",
    "PAGE_CSP",
    "CsrfFailed",
    "Web",
    "check_csrf",
    "csrf_token",
    "current_login",
    "form_data",
    "login_redirect",
    "login_url",
    "mount",
    "page_headers",
    "redirect",
    "render",
    "router",
    "safe_next",
]
