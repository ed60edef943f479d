"""Valid requests to every operation, checked by schemathesis against /openapi.json of the
running server.

Random inputs seldom get past validation and authentication (a fuzzed password is never
strong, a fuzzed refresh token never live), so the fuzzer alone rarely sees a success
answer. Here every operation gets requests that must succeed, and the same three checks
hold: no 5xx, the body conforms to the documented schema of its status, and the
Content-Type is one the document names for it.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyotp
import pytest
import requests
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from _support.http import basic, new_email
from _support.tokens import claims_of
from authgate.service.mail import Message
from passkeys._authenticator import SoftAuthenticator

from ._live import START, LiveServer, openapi_document

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
PASSWORD = "conformance is a virtue 8812"
NEW_PASSWORD = "conformance is still a virtue 9923"
FORM = "application/x-www-form-urlencoded"
COOKIE_MODE = {"Authgate-Token-Delivery": "cookie"}
OPERATIONS = sorted(
    f"{method.upper()} {path}"
    for path, item in openapi_document()["paths"].items()
    for method in item
)


@dataclass
class World:
    """The running server, its schema as served, and helpers that set up state over HTTP."""

    live: LiveServer
    http: requests.Session
    api: Any

    def post(self, path: str, **kwargs: Any) -> dict[str, Any]:
        r = self.http.post(f"{self.live.url}{path}", timeout=30, **kwargs)
        assert r.status_code in (200, 201), r.text
        body: dict[str, Any] = r.json()
        return body

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.live.fresh_admin_token()}"}

    def user(self) -> tuple[str, dict[str, Any]]:
        """A registered user: its email and token response."""
        email = new_email("conf")
        return email, self.post("/auth/register", json={"email": email, "password": PASSWORD})

    def role(self) -> str:
        name = f"role-{uuid.uuid4().hex[:8]}"
        body = {"name": name, "permissions": ["posts:read"]}
        self.post("/admin/roles", json=body, headers=self.admin())
        return name

    def client(self, scopes: list[str]) -> tuple[str, str]:
        body = self.post(
            "/admin/clients", json={"name": "conformance", "scopes": scopes}, headers=self.admin()
        )
        return str(body["client_id"]), str(body["client_secret"])

    def case(self, label: str, **kwargs: Any) -> Any:
        method, path = label.split(" ", 1)
        return self.api[path][method].Case(**kwargs)


# label -> a function that sets up state and returns (case, headers, expected status)
Request = tuple[Any, dict[str, str], int]
Builder = Callable[[World], list[Request]]
BUILDERS: dict[str, Builder] = {}


def builds(label: str) -> Callable[[Builder], Builder]:
    def register(func: Builder) -> Builder:
        BUILDERS[label] = func
        return func

    return register


def _bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _cookie_session(w: World) -> dict[str, str]:
    """A cookie-mode login's headers for a refresh or a logout: its cookies and the proof."""
    email, _ = w.user()
    r = requests.post(
        f"{w.live.url}/auth/login",
        json={"email": email, "password": PASSWORD},
        headers=COOKIE_MODE,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    jar = "; ".join(f"{k}={v}" for k, v in r.cookies.get_dict().items())
    return {**COOKIE_MODE, "Cookie": jar, "X-CSRF-Token": r.json()["csrf_token"]}


@builds("POST /auth/register")
def _register(w: World) -> list[Request]:
    body = {"email": new_email("conf"), "password": PASSWORD, "name": "Conformance"}
    return [(w.case("POST /auth/register", body=body, media_type="application/json"), {}, 201)]


@builds("POST /auth/login")
def _login(w: World) -> list[Request]:
    email, _ = w.user()
    as_json = w.case(
        "POST /auth/login",
        body={"email": email, "password": PASSWORD},
        media_type="application/json",
    )
    as_form = w.case(
        "POST /auth/login", body={"username": email, "password": PASSWORD}, media_type=FORM
    )
    return [(as_json, {}, 200), (as_form, {}, 200), (as_json, COOKIE_MODE, 200)]


@builds("POST /auth/refresh")
def _refresh(w: World) -> list[Request]:
    _, tokens = w.user()
    body = {"refresh_token": tokens["refresh_token"]}
    return [
        (w.case("POST /auth/refresh", body=body, media_type="application/json"), {}, 200),
        (w.case("POST /auth/refresh"), _cookie_session(w), 200),
    ]


@builds("POST /auth/logout")
def _logout(w: World) -> list[Request]:
    return [
        (w.case("POST /auth/logout"), _bearer(w.user()[1]), 204),
        (w.case("POST /auth/logout"), _cookie_session(w), 204),
    ]


@builds("POST /auth/logout-all")
def _logout_all(w: World) -> list[Request]:
    return [(w.case("POST /auth/logout-all"), _bearer(w.user()[1]), 204)]


@builds("GET /auth/me")
def _me(w: World) -> list[Request]:
    return [(w.case("GET /auth/me"), _bearer(w.user()[1]), 200)]


@builds("POST /auth/password")
def _password(w: World) -> list[Request]:
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    case = w.case("POST /auth/password", body=body, media_type="application/json")
    return [(case, _bearer(w.user()[1]), 204)]


@builds("GET /auth/sessions")
def _sessions(w: World) -> list[Request]:
    return [(w.case("GET /auth/sessions"), _bearer(w.user()[1]), 200)]


@builds("DELETE /auth/sessions/{sid}")
def _end_session(w: World) -> list[Request]:
    _, tokens = w.user()
    sid = claims_of(tokens["access_token"])["sid"]
    case = w.case("DELETE /auth/sessions/{sid}", path_parameters={"sid": sid})
    return [(case, _bearer(tokens), 204)]


@builds("GET /auth/revocations")
def _revocations(w: World) -> list[Request]:
    client_id, secret = w.client(["authgate:revocations"])
    return [
        (w.case("GET /auth/revocations"), w.admin(), 200),
        (w.case("GET /auth/revocations", query={"after": 0}), basic(client_id, secret), 200),
    ]


@builds("GET /admin/users")
def _list_users(w: World) -> list[Request]:
    return [(w.case("GET /admin/users", query={"limit": 2}), w.admin(), 200)]


@builds("POST /admin/users")
def _create_user(w: World) -> list[Request]:
    body = {"email": new_email("conf"), "password": PASSWORD, "name": "Made", "roles": []}
    return [(w.case("POST /admin/users", body=body, media_type="application/json"), w.admin(), 201)]


def _user_id(w: World) -> str:
    _, tokens = w.user()
    return str(claims_of(tokens["access_token"])["sub"])


@builds("GET /admin/users/{user_id}")
def _get_user(w: World) -> list[Request]:
    case = w.case("GET /admin/users/{user_id}", path_parameters={"user_id": _user_id(w)})
    return [(case, w.admin(), 200)]


@builds("PATCH /admin/users/{user_id}")
def _patch_user(w: World) -> list[Request]:
    case = w.case(
        "PATCH /admin/users/{user_id}",
        path_parameters={"user_id": _user_id(w)},
        body={"roles": [w.role()], "disabled": True},
        media_type="application/json",
    )
    return [(case, w.admin(), 200)]


@builds("DELETE /admin/users/{user_id}")
def _delete_user(w: World) -> list[Request]:
    case = w.case("DELETE /admin/users/{user_id}", path_parameters={"user_id": _user_id(w)})
    return [(case, w.admin(), 204)]


@builds("GET /admin/roles")
def _list_roles(w: World) -> list[Request]:
    w.role()
    return [(w.case("GET /admin/roles"), w.admin(), 200)]


@builds("POST /admin/roles")
def _create_role(w: World) -> list[Request]:
    body = {"name": f"role-{uuid.uuid4().hex[:8]}", "permissions": ["posts:write"]}
    return [(w.case("POST /admin/roles", body=body, media_type="application/json"), w.admin(), 201)]


@builds("GET /admin/roles/{name}")
def _get_role(w: World) -> list[Request]:
    case = w.case("GET /admin/roles/{name}", path_parameters={"name": w.role()})
    return [(case, w.admin(), 200)]


@builds("PUT /admin/roles/{name}")
def _put_role(w: World) -> list[Request]:
    case = w.case(
        "PUT /admin/roles/{name}",
        path_parameters={"name": w.role()},
        body={"permissions": ["posts:read", "posts:write"]},
        media_type="application/json",
    )
    return [(case, w.admin(), 200)]


@builds("DELETE /admin/roles/{name}")
def _delete_role(w: World) -> list[Request]:
    case = w.case("DELETE /admin/roles/{name}", path_parameters={"name": w.role()})
    return [(case, w.admin(), 204)]


@builds("GET /admin/sessions")
def _admin_sessions(w: World) -> list[Request]:
    case = w.case("GET /admin/sessions", query={"user": _user_id(w)})
    return [(case, w.admin(), 200)]


@builds("DELETE /admin/sessions/{sid}")
def _admin_revoke_session(w: World) -> list[Request]:
    _, tokens = w.user()
    sid = claims_of(tokens["access_token"])["sid"]
    case = w.case("DELETE /admin/sessions/{sid}", path_parameters={"sid": sid})
    return [(case, w.admin(), 204)]


@builds("GET /admin/clients")
def _list_clients(w: World) -> list[Request]:
    w.client([])
    return [(w.case("GET /admin/clients"), w.admin(), 200)]


@builds("POST /admin/clients")
def _create_client(w: World) -> list[Request]:
    body = {"name": "made", "scopes": ["authgate:revocations"], "access_ttl": 60}
    case = w.case("POST /admin/clients", body=body, media_type="application/json")
    return [(case, w.admin(), 201)]


@builds("DELETE /admin/clients/{client_id}")
def _delete_client(w: World) -> list[Request]:
    client_id, _ = w.client([])
    case = w.case("DELETE /admin/clients/{client_id}", path_parameters={"client_id": client_id})
    return [(case, w.admin(), 204)]


@builds("GET /admin/keys")
def _keys(w: World) -> list[Request]:
    return [(w.case("GET /admin/keys"), w.admin(), 200)]


@builds("POST /admin/keys/rotate")
def _rotate(w: World) -> list[Request]:
    return [(w.case("POST /admin/keys/rotate"), w.admin(), 200)]


@builds("GET /admin/audit")
def _audit(w: World) -> list[Request]:
    return [(w.case("GET /admin/audit", query={"limit": 5}), w.admin(), 200)]


@builds("POST /oauth2/token")
def _token(w: World) -> list[Request]:
    _, tokens = w.user()
    refresh = {
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
        "client_id": "authgate",
    }
    client_id, secret = w.client(["authgate:revocations"])
    credentials = {"grant_type": "client_credentials"}
    _, code_form = _oidc_tokens(w)
    return [
        (w.case("POST /oauth2/token", body=code_form, media_type=FORM), {}, 200),
        (w.case("POST /oauth2/token", body=refresh, media_type=FORM), {}, 200),
        (
            w.case("POST /oauth2/token", body=credentials, media_type=FORM),
            basic(client_id, secret),
            200,
        ),
    ]


def _oidc_tokens(w: World) -> tuple[dict[str, Any], dict[str, str]]:
    """A public OpenID Connect client's code, issued through the service for a registered
    user (the hosted pages are not part of the document); the exchange's form."""
    import base64
    import hashlib
    import secrets
    from urllib.parse import parse_qs, urlsplit

    redirect = "http://127.0.0.1:9/cb"
    client = w.post(
        "/admin/clients",
        json={"name": "oidc", "redirect_uris": [redirect], "public": True},
        headers=w.admin(),
    )
    _, tokens = w.user()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    oidc = w.live.services.oidc
    params = {
        "client_id": client["client_id"],
        "redirect_uri": redirect,
        "response_type": "code",
        "scope": "openid email profile",
        "code_challenge": challenge.decode(),
        "code_challenge_method": "S256",
    }

    async def issue() -> str:
        request = await oidc.authorization_request(params)
        user = await w.live.services.accounts.get(tokens["user"]["id"])
        login = await w.live.services.web_logins.start(user, amr=["pwd"], ip=None, user_agent=None)
        return await oidc.issue_code(
            request,
            user_id=user.id,
            login_sid=login.login.sid,
            auth_time=login.login.auth_time,
            amr=["pwd"],
        )

    code = parse_qs(urlsplit(w.live.call(issue())).query)["code"][0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect,
        "code_verifier": verifier,
        "client_id": client["client_id"],
    }
    return client, form


@builds("GET /userinfo")
def _userinfo_get(w: World) -> list[Request]:
    _, form = _oidc_tokens(w)
    tokens = w.post("/oauth2/token", data=form)
    return [(w.case("GET /userinfo"), _bearer(tokens), 200)]


@builds("POST /userinfo")
def _userinfo_post(w: World) -> list[Request]:
    _, form = _oidc_tokens(w)
    tokens = w.post("/oauth2/token", data=form)
    return [(w.case("POST /userinfo"), _bearer(tokens), 200)]


def _consented(w: World) -> tuple[str, dict[str, Any]]:
    """A user who let a third-party client have ``openid email``; the client's id."""
    client = w.post(
        "/admin/clients",
        json={"name": "third party", "redirect_uris": ["https://rp.example/cb"]},
        headers=w.admin(),
    )
    _, tokens = w.user()
    grant = w.live.services.oidc.grant_consent(
        tokens["user"]["id"], client["client_id"], ["openid", "email"]
    )
    w.live.call(grant)
    return str(client["client_id"]), tokens


@builds("GET /auth/consents")
def _consents(w: World) -> list[Request]:
    _, tokens = _consented(w)
    return [(w.case("GET /auth/consents"), _bearer(tokens), 200)]


@builds("DELETE /auth/consents/{client_id}")
def _revoke_consent(w: World) -> list[Request]:
    client_id, tokens = _consented(w)
    case = w.case("DELETE /auth/consents/{client_id}", path_parameters={"client_id": client_id})
    return [(case, _bearer(tokens), 204)]


@builds("POST /oauth2/revoke")
def _revoke(w: World) -> list[Request]:
    _, tokens = w.user()
    body = {
        "token": tokens["refresh_token"],
        "token_type_hint": "refresh_token",
        "client_id": "authgate",
    }
    return [(w.case("POST /oauth2/revoke", body=body, media_type=FORM), {}, 200)]


@builds("POST /oauth2/introspect")
def _introspect(w: World) -> list[Request]:
    _, tokens = w.user()
    client_id, secret = w.client(["authgate:introspect"])
    live = {"token": tokens["access_token"]}
    dead = {"token": "not-a-token"}
    return [
        (
            w.case("POST /oauth2/introspect", body=live, media_type=FORM),
            basic(client_id, secret),
            200,
        ),
        (
            w.case("POST /oauth2/introspect", body=dead, media_type=FORM),
            basic(client_id, secret),
            200,
        ),
    ]


def _authenticator(w: World) -> SoftAuthenticator:
    """A software authenticator for the server's WebAuthn origin and RP ID."""
    settings = w.live.settings
    return SoftAuthenticator(origin=settings.passkey_origins[0], rp_id=settings.passkey_rp_id)


def _with_passkey(w: World) -> tuple[str, dict[str, Any], SoftAuthenticator, str]:
    """A user with a passkey: its email, the token response of a login with the passkey,
    the authenticator and the passkey id."""
    email, tokens = w.user()
    key = _authenticator(w)
    options = w.post("/auth/passkeys/register/options", headers=_bearer(tokens))
    added = w.post(
        "/auth/passkeys/register/verify",
        json={"credential": key.create(options)},
        headers=_bearer(tokens),
    )
    # A session that used the passkey (passwordless, user verified): MFA is on now.
    login = w.post(
        "/auth/passkeys/login/verify",
        json={"credential": key.get(w.post("/auth/passkeys/login/options"))},
    )
    return email, login, key, str(added["passkey"]["id"])


@builds("POST /auth/passkeys/register/options")
def _passkey_register_options(w: World) -> list[Request]:
    return [(w.case("POST /auth/passkeys/register/options"), _bearer(w.user()[1]), 200)]


@builds("POST /auth/passkeys/register/verify")
def _passkey_register_verify(w: World) -> list[Request]:
    _, tokens = w.user()
    options = w.post("/auth/passkeys/register/options", headers=_bearer(tokens))
    body = {"credential": _authenticator(w).create(options), "name": "Conformance key"}
    case = w.case("POST /auth/passkeys/register/verify", body=body, media_type="application/json")
    return [(case, _bearer(tokens), 201)]


@builds("POST /auth/passkeys/login/options")
def _passkey_login_options(w: World) -> list[Request]:
    email, _, _, _ = _with_passkey(w)
    first = w.post("/auth/login", json={"email": email, "password": PASSWORD})
    second_factor = w.case(
        "POST /auth/passkeys/login/options",
        body={"mfa_token": first["mfa_token"]},
        media_type="application/json",
    )
    return [(w.case("POST /auth/passkeys/login/options"), {}, 200), (second_factor, {}, 200)]


@builds("POST /auth/passkeys/login/verify")
def _passkey_login_verify(w: World) -> list[Request]:
    _, _, key, _ = _with_passkey(w)
    options = w.post("/auth/passkeys/login/options")
    body = {"credential": key.get(options)}
    case = w.case("POST /auth/passkeys/login/verify", body=body, media_type="application/json")
    return [(case, {}, 200)]


@builds("GET /auth/passkeys")
def _passkeys(w: World) -> list[Request]:
    _, tokens, _, _ = _with_passkey(w)
    return [(w.case("GET /auth/passkeys"), _bearer(tokens), 200)]


@builds("PATCH /auth/passkeys/{passkey_id}")
def _passkey_rename(w: World) -> list[Request]:
    _, tokens, _, pid = _with_passkey(w)
    case = w.case(
        "PATCH /auth/passkeys/{passkey_id}",
        path_parameters={"passkey_id": pid},
        body={"name": "Renamed"},
        media_type="application/json",
    )
    return [(case, _bearer(tokens), 204)]


@builds("DELETE /auth/passkeys/{passkey_id}")
def _passkey_delete(w: World) -> list[Request]:
    _, tokens, _, pid = _with_passkey(w)
    case = w.case(
        "DELETE /auth/passkeys/{passkey_id}",
        path_parameters={"passkey_id": pid},
        body={"password": PASSWORD},
        media_type="application/json",
    )
    return [(case, _bearer(tokens), 204)]


# --- the account lifecycle and MFA ------------------------------------------------------


def _account(w: World) -> Any:
    """A registered user's record, read through the services."""
    email, tokens = w.user()
    user = w.live.call(w.live.services.accounts.by_email(email))
    return user, tokens


def _token_in(text: str) -> str:
    match = re.search(r"[?&]token=([A-Za-z0-9_-]+)", text)
    assert match, text
    return match.group(1)


def _totp(w: World, tokens: dict[str, Any]) -> pyotp.TOTP:
    """TOTP turned on for the user (confirmed with the code of the step before START, so
    that the codes of START and the step after it are still unused)."""
    enrolled = w.post("/auth/mfa/totp", headers=_bearer(tokens))
    totp = pyotp.TOTP(enrolled["secret"])
    w.post(
        "/auth/mfa/totp/confirm",
        json={"code": totp.at(START - 30)},
        headers=_bearer(tokens),
    )
    return totp


@builds("POST /auth/verify-email/request")
def _verify_request(w: World) -> list[Request]:
    label = "POST /auth/verify-email/request"
    _, tokens = w.user()
    anonymous = w.case(label, body={"email": new_email("conf")}, media_type="application/json")
    return [(w.case(label), _bearer(tokens), 202), (anonymous, {}, 202)]


@builds("POST /auth/verify-email")
def _verify(w: World) -> list[Request]:
    user, _ = _account(w)
    mail = w.live.call(w.live.services.links.verification_mail(user))
    body = {"token": _token_in(mail.text)}
    return [(w.case("POST /auth/verify-email", body=body, media_type="application/json"), {}, 204)]


@builds("POST /auth/password/forgot")
def _forgot(w: World) -> list[Request]:
    body = {"email": new_email("conf")}
    case = w.case("POST /auth/password/forgot", body=body, media_type="application/json")
    return [(case, {}, 202)]


@builds("POST /auth/password/reset")
def _reset(w: World) -> list[Request]:
    user, _ = _account(w)
    token = w.live.call(w.live.services.links.reset_token(user, by="conformance"))
    body = {"token": token, "new_password": NEW_PASSWORD}
    return [
        (w.case("POST /auth/password/reset", body=body, media_type="application/json"), {}, 204)
    ]


@builds("POST /auth/email")
def _email_change(w: World) -> list[Request]:
    _, tokens = w.user()
    body = {"new_email": new_email("moved"), "current_password": PASSWORD}
    case = w.case("POST /auth/email", body=body, media_type="application/json")
    return [(case, _bearer(tokens), 202)]


@builds("POST /auth/email/confirm")
def _email_confirm(w: World) -> list[Request]:
    user, _ = _account(w)
    moved = new_email("moved")
    outbox = Outbox(w.live)
    w.live.call(w.live.services.links.request_email_change(user, moved, PASSWORD, ip=None))
    body = {"token": _token_in(outbox.wait(moved).text)}
    case = w.case("POST /auth/email/confirm", body=body, media_type="application/json")
    return [(case, {}, 204)]


@builds("POST /auth/mfa/totp")
def _totp_begin(w: World) -> list[Request]:
    return [(w.case("POST /auth/mfa/totp"), _bearer(w.user()[1]), 200)]


@builds("POST /auth/mfa/totp/confirm")
def _totp_confirm(w: World) -> list[Request]:
    _, tokens = w.user()
    secret = w.post("/auth/mfa/totp", headers=_bearer(tokens))["secret"]
    body = {"code": pyotp.TOTP(secret).at(START)}
    case = w.case("POST /auth/mfa/totp/confirm", body=body, media_type="application/json")
    return [(case, _bearer(tokens), 200)]


@builds("DELETE /auth/mfa/totp")
def _totp_disable(w: World) -> list[Request]:
    _, tokens = w.user()
    totp = _totp(w, tokens)
    body = {"password": PASSWORD, "code": totp.at(START)}
    case = w.case("DELETE /auth/mfa/totp", body=body, media_type="application/json")
    return [(case, _bearer(tokens), 204)]


@builds("POST /auth/mfa/recovery-codes")
def _recovery_codes(w: World) -> list[Request]:
    email, tokens = w.user()
    totp = _totp(w, tokens)
    # From a session that logged in with the second factor (the code of START), with the
    # code of the step after it.
    first = w.post("/auth/login", json={"email": email, "password": PASSWORD})
    mfa = w.post("/auth/login/mfa", json={"mfa_token": first["mfa_token"], "code": totp.at(START)})
    body = {"password": PASSWORD, "code": totp.at(START + 30)}
    case = w.case("POST /auth/mfa/recovery-codes", body=body, media_type="application/json")
    return [(case, _bearer(mfa), 200)]


@builds("POST /auth/login/mfa")
def _login_mfa(w: World) -> list[Request]:
    email, tokens = w.user()
    totp = _totp(w, tokens)
    first = w.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert first["mfa_required"] is True
    body = {"mfa_token": first["mfa_token"], "code": totp.at(START)}
    return [(w.case("POST /auth/login/mfa", body=body, media_type="application/json"), {}, 200)]


def _admin_user_action(label: str, status: int) -> Builder:
    def build(w: World) -> list[Request]:
        case = w.case(label, path_parameters={"user_id": _user_id(w)})
        return [(case, w.admin(), status)]

    return build


for _label, _status in (
    ("POST /admin/users/{user_id}/mfa-reset", 204),
    ("POST /admin/users/{user_id}/reset-link", 202),
    ("POST /admin/users/{user_id}/verification-email", 202),
):
    BUILDERS[_label] = _admin_user_action(_label, _status)


class Outbox:
    """Records what the server's mail queue sends from now on (in place of its sender)."""

    def __init__(self, live: LiveServer) -> None:
        self.messages: list[Message] = []
        live.services.mail.sender = self

    async def send(self, message: Message) -> None:
        self.messages.append(message)

    def wait(self, to: str) -> Message:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for message in self.messages:
                if message.to == to:
                    return message
            time.sleep(0.01)  # polling for the queue's delivery
        raise AssertionError(f"no mail to {to}")


def _plain_get(label: str) -> Builder:
    def build(w: World) -> list[Request]:
        return [(w.case(label), {}, 200)]

    return build


for _label in (
    "GET /.well-known/jwks.json",
    "GET /.well-known/oauth-authorization-server",
    "GET /.well-known/openid-configuration",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
):
    BUILDERS[_label] = _plain_get(_label)


@pytest.fixture(scope="module")
def world(live: LiveServer, http: requests.Session, admin_token: str) -> World:
    """The schema is loaded from the running server's /openapi.json."""
    api = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    return World(live=live, http=http, api=api)


def test_every_operation_has_valid_requests() -> None:
    """A new operation in the document needs its valid requests here."""
    assert sorted(BUILDERS) == OPERATIONS


@pytest.mark.parametrize("label", OPERATIONS)
def test_valid_requests_conform(label: str, world: World) -> None:
    """Each valid request gets its success status, and the answer matches the document."""
    requests_ = BUILDERS[label](world)
    assert requests_
    for case, headers, status in requests_:
        response = case.call_and_validate(
            base_url=world.live.url, session=world.http, headers=headers, checks=CHECKS
        )
        assert response.status_code == status, response.text
