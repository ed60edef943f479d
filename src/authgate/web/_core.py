"""The web layer's machinery: templates and static files (with the theme folder over the
packaged ones), the pages' security headers, CSRF, and the login-session cookie."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlsplit

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from authgate import errors
from authgate.errors import AuthgateError
from authgate.server.deps import services
from authgate.server.problems import headers_of, status_of
from authgate.service.weblogin import OpenedWebLogin, WebLogin
from authgate.settings import Settings

_PACKAGE: Final = Path(__file__).resolve().parent
_MAX_FIELD: Final = 8192
_COOKIE_VALUE: Final = re.compile(r"[A-Za-z0-9_-]{43}")
DEFAULT_NEXT: Final = "/account"

# Each refusal in words; the code is the API's.
MESSAGES: Final = {
    "invalid_credentials": "The email address or the password is wrong.",
    "too_many_attempts": "Too many attempts. Wait a while, then try again.",
    "email_not_verified": "Confirm your email address first: follow the link in the mail "
    "we sent you.",
    "invalid_mfa_code": "This code is wrong. Try again with a new code.",
    "invalid_mfa_token": "This sign-in took too long or was already used. Sign in again.",
    "passkey_refused": "The passkey was not accepted.",
    "passkey_cloned": "The passkey was not accepted: it may have been copied.",
    "passkey_registration_refused": "The passkey was not added. Try again; adding a passkey "
    "needs JavaScript.",
    "passkey_exists": "This passkey is added already.",
    "insufficient_user_authentication": "Sign in again to do this.",
    "mfa_already_enabled": "The authenticator app is on already. Turn it off first.",
    "mfa_not_enabled": "This needs a second factor that is on: set one up first, or start "
    "again (an unconfirmed set-up ends after ten minutes).",
    "not_found": "This no longer exists: it was ended or removed already.",
    "registration_closed": "Registration is closed here.",
    "email_taken": "An account with this email address exists already.",
    "invalid_link_token": "This link is not valid. Ask for a new one.",
    "link_token_used": "This link was used already: each link works once.",
    "link_token_superseded": "A newer link was sent since this one. Use the newest mail.",
    "link_token_revoked": "This link no longer works: the account changed since it was sent.",
    "link_token_expired": "This link has expired. Ask for a new one.",
    "link_token_wrong_purpose": "This link is for something else. Use the link of the right mail.",
    "weak_password": "This password is too weak: use at least 8 characters, not a common one.",
    "password_too_predictable": "This password is too predictable: avoid repeats and sequences.",
    "invalid_request": "The form is not valid. Check each field and try again.",
    "overloaded": "The server is busy. Try again in a moment.",
    "csrf_failed": "This form expired or did not come from this site. Load the page again "
    "and send the form once more.",
}


def message_of(exc: AuthgateError) -> str:
    """The words for a refusal."""
    return MESSAGES.get(exc.code, status_of(exc)[1] + ".")


class CsrfFailed(errors.CsrfFailed):
    """A page's form: its CSRF token (or its Origin) is missing or wrong. The 403
    ``csrf_failed`` of the JSON API, answered with a page."""


def safe_next(value: object) -> str | None:
    """``value`` if it is a same-origin path to come back to (a single leading ``/``, no
    scheme, no host, no backslash, no control character or space), else None."""
    if not isinstance(value, str) or not 0 < len(value) <= 2048:
        return None
    if not value.startswith("/") or value.startswith("//"):
        return None
    if any(c == "\\" or ord(c) <= 0x20 or ord(c) == 0x7F for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    media_type: str
    version: str


def _csp(form_action: Iterable[str]) -> str:
    sources = " ".join(["'self'", *form_action])
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'; form-action {sources}; frame-ancestors 'none'; base-uri 'none'"
    )


PAGE_CSP: Final = _csp(())
_MEDIA: Final = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


@dataclass(eq=False)
class Web:
    """The hosted pages' renderer, assets and cookie names, for one app's settings."""

    settings: Settings
    env: jinja2.Environment = field(init=False)
    assets: dict[str, _Asset] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        loaders: list[jinja2.BaseLoader] = []
        theme = self.settings.web_theme_dir
        if theme is not None:
            loaders.append(jinja2.FileSystemLoader(str(theme)))
        loaders.append(jinja2.FileSystemLoader(str(_PACKAGE / "templates")))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        for path in sorted((_PACKAGE / "static").iterdir()):
            if path.suffix in _MEDIA:
                self._add(path.name, path.read_bytes())
        if theme is not None and (theme / "theme.css").is_file():
            self._add("theme.css", (theme / "theme.css").read_bytes())

    def _add(self, name: str, body: bytes) -> None:
        version = hashlib.sha256(body).hexdigest()[:16]
        self.assets[name] = _Asset(body, _MEDIA[Path(name).suffix], version)

    @property
    def secure(self) -> bool:
        """True when the public URL is https: the cookies are Secure and ``__Host-``."""
        return self.settings.public_base_url.startswith("https://")

    @property
    def login_cookie(self) -> str:
        """The login-session cookie's name."""
        return "__Host-authgate_login" if self.secure else "authgate_login"

    @property
    def csrf_cookie(self) -> str:
        """The CSRF binding cookie's name."""
        return "__Host-authgate_csrf" if self.secure else "authgate_csrf"

    @property
    def mfa_cookie(self) -> str:
        """The cookie that holds a login's mfa_token between its two steps."""
        return "__Host-authgate_mfa" if self.secure else "authgate_mfa"

    def asset_url(self, name: str) -> str:
        """The URL of a static file, versioned by its content (cached for a year)."""
        return f"/static/{name}?v={self.assets[name].version}"

    def asset(self, name: str, version: str | None) -> Response:
        """A static file; immutable when asked for by its current version."""
        asset = self.assets[name]
        cache = "public, max-age=31536000, immutable" if version == asset.version else "no-cache"
        return Response(
            asset.body,
            media_type=asset.media_type,
            headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"},
        )

    def origins(self, request: Request) -> set[str]:
        """The origins a form may be posted from: the public URL's, and the request's own."""
        public = urlsplit(self.settings.public_base_url)
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        return {f"{public.scheme}://{public.netloc}".lower(), own.lower()}

    def set_cookie(self, response: Response, name: str, value: str, *, max_age: int) -> None:
        """A cookie of the pages: HttpOnly, SameSite=Lax, Path=/, no Domain; Secure (and so
        ``__Host-``) when the public URL is https."""
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )

    def clear_cookie(self, response: Response, name: str) -> None:
        """Remove a cookie of the pages."""
        response.delete_cookie(name, path="/", secure=self.secure, httponly=True, samesite="lax")


def web(request: Request) -> Web:
    """The app's web layer."""
    w: Web = request.app.state.web
    return w


# --- CSRF ----------------------------------------------------------------------------------


def _csrf_binding(request: Request) -> str:
    """The browser's CSRF cookie value, made (and set on the page's response) if absent."""
    state = request.state
    existing = getattr(state, "csrf_binding", None)
    if isinstance(existing, str):
        return existing
    value = request.cookies.get(web(request).csrf_cookie, "")
    if not _COOKIE_VALUE.fullmatch(value):
        value = secrets.token_urlsafe(32)
        state.csrf_new = True
    state.csrf_binding = value
    return value


def _csrf_for(request: Request, binding: str) -> str:
    key = services(request).web_logins.csrf_key
    mac = hmac.new(key, b"authgate csrf\x00" + binding.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def csrf_token(request: Request) -> str:
    """The CSRF token of this browser, for a form's hidden ``csrf`` field (or the
    ``X-CSRF-Token`` header of a script's POST): an HMAC of the browser's CSRF cookie."""
    return _csrf_for(request, _csrf_binding(request))


def check_csrf(request: Request, submitted: str | None) -> None:
    """Refuse (CsrfFailed) a POST whose token does not match this browser's CSRF cookie
    (compared in constant time), or that a browser says came from another site."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise CsrfFailed("cross-site form")
    origin = request.headers.get("origin")
    if origin is not None and origin.lower() not in web(request).origins(request):
        raise CsrfFailed("foreign origin")
    binding = request.cookies.get(web(request).csrf_cookie, "")
    if not _COOKIE_VALUE.fullmatch(binding) or not isinstance(submitted, str):
        raise CsrfFailed("no CSRF cookie or token")
    if not hmac.compare_digest(submitted.encode(), _csrf_for(request, binding).encode()):
        raise CsrfFailed("wrong CSRF token")


async def form_of(request: Request) -> dict[str, str]:
    """The POSTed form (the first value of each field, each capped), after the CSRF check."""
    form = await request.form()
    out: dict[str, str] = {}
    for key, value in form.multi_items():
        if isinstance(value, str) and len(value) <= _MAX_FIELD and key not in out:
            out[key] = value
    check_csrf(request, out.get("csrf") or request.headers.get("x-csrf-token"))
    return out


# --- rendering -----------------------------------------------------------------------------


def page_headers(form_action: Iterable[str] = ()) -> dict[str, str]:
    """The security headers of every page. ``form_action``: origins beyond 'self' that a
    form of the page may post to, or be redirected to after its POST (Chromium applies
    ``form-action`` to the redirects that follow a form's submission)."""
    return {
        "Content-Security-Policy": _csp(form_action),
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


def finish(request: Request, response: Response) -> Response:
    """Set the CSRF cookie made for this request, if one was."""
    if getattr(request.state, "csrf_new", False):
        w = web(request)
        w.set_cookie(response, w.csrf_cookie, _csrf_binding(request), max_age=400 * 86400)
    return response


def render(
    request: Request,
    template: str,
    /,
    *,
    title: str,
    status: int = 200,
    error: str | None = None,
    form_action: Iterable[str] = (),
    headers: Mapping[str, str] | None = None,
    cookies: bool = True,
    **context: Any,
) -> HTMLResponse:
    """A template, escaped, under the pages' headers; its context has ``csrf`` (the token
    for a form's hidden field), ``asset(name)``, ``title``, ``error`` and ``login`` (the
    current hosted login, if read in this request). ``cookies=False``: a page that sets
    no cookie (and so has no CSRF token), such as a mailed link's."""
    w = web(request)
    html = w.env.get_template(template).render(
        {
            "error_field": None,
            **context,
            "title": title,
            "error": error,
            "csrf": csrf_token(request) if cookies else "",
            "asset": w.asset_url,
            "theme_css": "theme.css" in w.assets,
            "login": getattr(request.state, "web_login", None),
        }
    )
    extra = dict(headers or {})
    if not cookies:
        # A mailed link's page has its token in the URL: no Referer carries it anywhere.
        extra.setdefault("Referrer-Policy", "no-referrer")
    response = HTMLResponse(
        html, status_code=status, headers={**page_headers(form_action), **extra}
    )
    finish(request, response)
    return response


def error_page(
    request: Request, exc: AuthgateError, template: str, /, *, title: str, **context: Any
) -> HTMLResponse:
    """``template`` with the refusal in words and its status (and Retry-After)."""
    status = status_of(exc)[0]
    return render(
        request,
        template,
        title=title,
        status=status,
        error=message_of(exc),
        headers={k: v for k, v in headers_of(exc, status).items() if k == "Retry-After"},
        **context,
    )


def csrf_failed_page(request: Request) -> HTMLResponse:
    """The 403 page of a refused form: nothing was changed."""
    return render(
        request,
        "error.html",
        title="The form was refused",
        status=403,
        error=MESSAGES["csrf_failed"],
        code=CsrfFailed.code,
    )


def redirect(request: Request, location: str) -> Response:
    """303 See Other to a path of this site."""
    response = RedirectResponse(location, status_code=303, headers=page_headers())
    return finish(request, response)


# --- the hosted login ----------------------------------------------------------------------


async def current_login(request: Request) -> WebLogin | None:
    """The browser's live hosted login (user, sid, auth_time, amr), or None; read once per
    request. A login ended anywhere (logout, logout-all, password change, admin revoke,
    disabled user) is None here at once."""
    state = request.state
    if getattr(state, "web_login_read", False):
        login: WebLogin | None = state.web_login
        return login
    cookie = request.cookies.get(web(request).login_cookie)
    login = await services(request).web_logins.current(cookie)
    state.web_login, state.web_login_read = login, True
    return login


def login_url(next_path: str | None) -> str:
    """The login page, coming back to ``next_path`` (if safe) after the login."""
    safe = safe_next(next_path)
    return "/login" if safe is None else "/login?next=" + quote(safe, safe="")


def login_redirect(request: Request, next_path: str | None = None) -> Response:
    """Send the browser to the login (303), to come back to ``next_path`` (default: this
    request's path and query, when it is a GET)."""
    if next_path is None and request.method == "GET":
        query = request.url.query
        next_path = request.url.path + ("?" + query if query else "")
    return redirect(request, login_url(next_path))


def open_login(request: Request, opened: OpenedWebLogin, next_path: str | None) -> Response:
    """After a successful login: the new login cookie (a new value: no fixation), the
    mfa cookie gone, and 303 to the safe ``next_path`` or the account page."""
    w = web(request)
    response = redirect(request, safe_next(next_path) or DEFAULT_NEXT)
    max_age = int(services(request).web_logins.max_ttl)
    w.set_cookie(response, w.login_cookie, opened.cookie, max_age=max_age)
    if w.mfa_cookie in request.cookies:
        w.clear_cookie(response, w.mfa_cookie)
    request.state.web_login, request.state.web_login_read = opened.login, True
    return response
