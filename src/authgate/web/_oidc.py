"""The OpenID Connect pages: ``/authorize`` (login, consent, then the code) and the
end-session confirmation (``/logout`` with ``id_token_hint``). Every rule is the Oidc
service's; this module only turns its answers into pages and redirects."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from authgate.errors import AccessDenied, AuthorizeError, InvalidRequest
from authgate.server.deps import services
from authgate.server.routing import PrefixRouter
from authgate.service.oidc import AuthorizationRequest, EndSession, HostedLogin
from authgate.service.weblogin import WebLogin
from authgate.web._core import (
    csrf_token,
    current_login,
    finish,
    form_of,
    login_url,
    page_headers,
    render,
)

router = PrefixRouter(include_in_schema=False)

# A login sent for ``prompt=login`` or ``max_age`` comes back with this marker: the time
# the login was asked for, signed, so that the login made then counts as fresh.
_MARK: Final = "_authgate_login_after"
_MARK_TTL: Final = 900  # a login asked for is made within this, or asked for again
_MAX_QUERY: Final = 8192
SCOPE_WORDS: Final = {
    "openid": "Know who you are (your account id)",
    "profile": "See your name",
    "email": "See your email address and whether it is confirmed",
}
END_SESSION_PARAMS: Final = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state")


def origin_of(uri: str) -> str:
    """The CSP source that lets a page's form lead to ``uri``: its origin, or for a
    native app's private-use scheme (RFC 8252), the scheme alone."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        return f"{parts.scheme}://{parts.netloc}"
    return f"{parts.scheme}:"


def _request_digest(pairs: list[tuple[str, str]]) -> str:
    return hashlib.sha256(urlencode(pairs).encode()).hexdigest()


def _mark(request: Request, at: int, pairs: list[tuple[str, str]]) -> str:
    """A marker for this browser (its CSRF token), this request and this time."""
    key = services(request).web_logins.csrf_key
    message = f"authgate login-after\x00{csrf_token(request)}\x00{_request_digest(pairs)}\x00{at}"
    mac = hmac.new(key, message.encode(), hashlib.sha256).hexdigest()[:32]
    return f"{at}.{mac}"


def _marked_time(request: Request, value: str | None, pairs: list[tuple[str, str]]) -> int | None:
    """The time in a valid marker of this browser and request, made in the last
    ``_MARK_TTL`` seconds; None otherwise (a forged, replayed or stale one is ignored)."""
    if not value or not value.isascii() or len(value) > 64:
        return None
    at, _, _mac = value.partition(".")
    if not at.isdigit() or len(at) > 12:
        return None
    if not 0 <= services(request).clock.now() - int(at) <= _MARK_TTL:
        return None
    expected = _mark(request, int(at), pairs)
    return int(at) if hmac.compare_digest(expected.encode(), value.encode()) else None


def _pairs(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)


async def authorize_origins(request: Request, next_path: str | None) -> tuple[str, ...]:
    """For a login page whose ``next`` is an authorization request: the origin the
    browser is finally redirected to, so that the page's CSP lets its form lead there
    (Chromium applies ``form-action`` to the redirects after a form's POST)."""
    if not next_path or not next_path.startswith("/authorize?"):
        return ()
    pairs = [(k, v) for k, v in _pairs(next_path.split("?", 1)[1]) if k != _MARK]
    try:
        authz = await services(request).oidc.authorization_request(pairs)
    except AuthorizeError:
        return ()
    return (origin_of(authz.redirect_uri),)


def _hosted(login: WebLogin | None) -> HostedLogin | None:
    if login is None:
        return None
    return HostedLogin(login.user.id, login.sid, login.auth_time, tuple(login.amr))


def _to_client(request: Request, url: str) -> Response:
    """302 to the client (the code, or an error, in the query)."""
    return finish(request, RedirectResponse(url, status_code=302, headers=page_headers()))


def _refused(request: Request, exc: AuthorizeError) -> Response:
    """An error the client must hear about goes back to it; an unknown client or a
    redirect URI that is not registered gets an error page and no redirect."""
    target = services(request).oidc.error_redirect(exc)
    if target is not None:
        return _to_client(request, target)
    return render(
        request,
        "error.html",
        title="This sign-in request is not valid",
        status=400,
        error=exc.description,
        code=exc.error,
    )


def _consent_page(request: Request, authz: AuthorizationRequest, query: str) -> Response:
    return render(
        request,
        "consent.html",
        title="Allow access?",
        client_name=authz.client.name,
        scopes=[SCOPE_WORDS.get(s, s) for s in authz.scope],
        query=query,
        form_action=(origin_of(authz.redirect_uri),),
    )


async def _proceed(request: Request, query: str, *, consented: bool = False) -> Response:
    """Validate, then log in, ask for consent, or issue the code. ``consented``: the user
    has just allowed this request on its consent page (CSRF-checked)."""
    if len(query) > _MAX_QUERY:
        return render(
            request,
            "error.html",
            title="This sign-in request is not valid",
            status=400,
            error="The request is too long.",
            code="invalid_request",
        )
    all_pairs = _pairs(query)
    pairs = [(k, v) for k, v in all_pairs if k != _MARK]
    marked = _marked_time(request, next((v for k, v in all_pairs if k == _MARK), None), pairs)
    oidc = services(request).oidc
    try:
        authz = await oidc.authorization_request(pairs)
        login = await current_login(request)
        fresh = login is not None and marked is not None and login.auth_time >= marked
        decision = await oidc.decide(authz, _hosted(login), fresh_login=fresh, consented=consented)
        if decision.action == "login":
            now = int(services(request).clock.now())
            back = urlencode([*pairs, (_MARK, _mark(request, now, pairs))])
            target = login_url("/authorize?" + back)
            if login is not None:  # signed in, but this request needs a new login
                target += "&reauth=1"
            return finish(
                request, RedirectResponse(target, status_code=303, headers=page_headers())
            )
        assert login is not None
        if decision.action == "consent":
            # The marker goes along: a login just made for this request stays fresh.
            return _consent_page(request, authz, query)
        url = await oidc.issue_code(
            authz,
            user_id=login.user.id,
            login_sid=login.sid,
            auth_time=login.auth_time,
            amr=tuple(login.amr),
        )
    except AuthorizeError as exc:
        return _refused(request, exc)
    return _to_client(request, url)


@router.get("/authorize")
async def authorize(request: Request) -> Response:
    """The OpenID Connect authorization endpoint (code flow, PKCE S256)."""
    return await _proceed(request, request.url.query)


@router.post("/authorize/consent")
async def consent(request: Request) -> Response:
    """The consent form's answer (CSRF-checked): remember the grant and issue the code
    (the request is checked again, with its login, ``max_age`` and ``prompt=login``), or
    send ``access_denied`` back to the client."""
    form = await form_of(request)
    query = form.get("request", "")
    if form.get("decision") != "allow":
        pairs = [(k, v) for k, v in _pairs(query) if k != _MARK]
        try:
            authz = await services(request).oidc.authorization_request(pairs)
        except AuthorizeError as exc:
            return _refused(request, exc)
        where = {"redirect_uri": authz.redirect_uri, "state": authz.state}
        return _refused(request, AccessDenied("the user denied the request", **where))
    login = await current_login(request)
    if login is not None:
        pairs = [(k, v) for k, v in _pairs(query) if k != _MARK]
        try:
            authz = await services(request).oidc.authorization_request(pairs)
        except AuthorizeError as exc:
            return _refused(request, exc)
        await services(request).oidc.grant_consent(
            login.user.id, authz.client.client_id, authz.scope
        )
    return await _proceed(request, query, consented=login is not None)


# --- end session ---------------------------------------------------------------------------


def end_session_params(source: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The RP-initiated logout parameters among ``source`` (first value of each)."""
    out: dict[str, str] = {}
    for key, value in source:
        if key in END_SESSION_PARAMS and key not in out and len(value) <= _MAX_QUERY:
            out[key] = value
    return out


async def end_session_request(request: Request, params: dict[str, str]) -> EndSession | None:
    """The validated end-session request, or None when ``params`` has none of its
    parameters (a plain sign-out). InvalidRequest when it is refused."""
    if not params:
        return None
    return await services(request).oidc.end_session_request(params)


async def end_session(request: Request, ending: EndSession | None) -> None:
    """End the browser's own hosted login, with every session opened from it (the
    revocation feed). An ID token's ``sid`` never ends another login: a hint from someone
    else's login ends nothing of theirs (RP-Initiated Logout 1.0, section 4)."""
    login = await current_login(request)
    if login is None:
        return
    if ending is not None and ending.user_id is not None and ending.user_id != login.user.id:
        return  # a hint of another user: this browser's login is not the one meant
    await services(request).oidc.end_login(login.sid)


def end_session_refused(request: Request, exc: InvalidRequest) -> Response:
    """The page of a refused end-session request: nothing ended, no redirect."""
    return render(
        request,
        "error.html",
        title="This sign-out request is not valid",
        status=400,
        error="The sign-out request is not valid: the application that sent you here "
        "is unknown, or the address to return to is not one it registered.",
        code="invalid_request",
    )


__all__ = [
    "END_SESSION_PARAMS",
    "SCOPE_WORDS",
    "authorize_origins",
    "end_session",
    "end_session_params",
    "end_session_refused",
    "end_session_request",
    "origin_of",
    "router",
]
