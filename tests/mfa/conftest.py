"""Fixtures of the MFA suite: a real authgate server over HTTP on an injected FixedClock,
mailing through a real aiosmtpd server (STARTTLS and AUTH), its issuer its own URL so that
a real guard can follow it. The TOTP codes are computed with pyotp from the secret the
server answered, at the server's clock."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

from _support.http import PASSWORD, bearer
from authgate.guard import Guard
from lifecycle.conftest import (  # noqa: F401  (pki and smtp are fixtures used here)
    AUDIENCE,
    pki,
    smtp,
)
from lifecycle.conftest import Server as Server
from lifecycle.conftest import Smtp as Smtp
from lifecycle.conftest import running as running

STEP = 30
REVOCATIONS = "authgate:revocations"
INTROSPECT = "authgate:introspect"


@pytest.fixture
def server(tmp_path: Path, smtp: Smtp) -> Iterator[Server]:  # noqa: F811
    """authgate mailing through the SMTP server, with the default settings."""
    with running(tmp_path, **smtp.env()) as live:  # type: ignore[arg-type]
        yield live


def claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (only read)."""
    payload = token.split(".")[1]
    out: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return out


def header(token: str) -> dict[str, Any]:
    """The protected header of a JWT."""
    part = token.split(".")[0]
    out: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return out


def code_at(server: Server, secret: str, steps: int = 0) -> str:
    """The TOTP code of ``secret`` ``steps`` time steps from the server's now."""
    return pyotp.TOTP(secret).at(server.clock.now() + steps * STEP)


def fresh_code(server: Server, secret: str) -> str:
    """Move the server's clock one step on, and the code of that step (never used yet)."""
    server.clock.advance(STEP)
    return code_at(server, secret)


@dataclass
class Account:
    """A registered user with TOTP on."""

    email: str
    user_id: str
    secret: str
    recovery_codes: list[str]
    access_token: str  # the registration's password-only session
    refresh_token: str
    password: str = PASSWORD


def enrol(server: Server, token: str) -> dict[str, Any]:
    """Start a TOTP enrolment; the answer."""
    r = server.http.post("/auth/mfa/totp", headers=bearer(token))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def enrolled(server: Server, email: str, password: str = PASSWORD) -> Account:
    """Register ``email`` and turn TOTP on for it through the API."""
    tokens = server.register(email, password)
    token = tokens["access_token"]
    secret = enrol(server, token)["secret"]
    r = server.http.post(
        "/auth/mfa/totp/confirm", headers=bearer(token), json={"code": code_at(server, secret)}
    )
    assert r.status_code == 200, r.text
    return Account(
        email=email,
        user_id=tokens["user"]["id"],
        secret=secret,
        recovery_codes=r.json()["recovery_codes"],
        access_token=token,
        refresh_token=tokens["refresh_token"],
        password=password,
    )


def first_step(server: Server, email: str, password: str = PASSWORD) -> dict[str, Any]:
    """POST /auth/login for an account with MFA: the challenge (no token pair)."""
    r = server.http.post("/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body.get("mfa_required") is True, body
    assert "access_token" not in body, body
    assert "refresh_token" not in body, body
    return body


def second_step(server: Server, mfa_token: str, **factor: str) -> httpx.Response:
    """POST /auth/login/mfa."""
    return server.http.post("/auth/login/mfa", json={"mfa_token": mfa_token, **factor})


def mfa_login(server: Server, account: Account) -> dict[str, Any]:
    """Both steps with a fresh TOTP code; the token response."""
    challenge = first_step(server, account.email, account.password)
    r = second_step(server, challenge["mfa_token"], code=fresh_code(server, account.secret))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def me(server: Server, token: str) -> dict[str, Any]:
    r = server.http.get("/auth/me", headers=bearer(token))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def session_count(server: Server, user_id: str) -> tuple[int, int]:
    """Rows in the sessions and refresh_tokens tables for ``user_id``, read from the file."""
    with server.db() as db:
        sessions = db.execute("SELECT count(*) FROM sessions WHERE user_id = ?", (user_id,))
        [n_sessions] = sessions.fetchone()
        refresh = db.execute(
            "SELECT count(*) FROM refresh_tokens WHERE sid IN "
            "(SELECT sid FROM sessions WHERE user_id = ?)",
            (user_id,),
        )
        [n_refresh] = refresh.fetchone()
    return int(n_sessions), int(n_refresh)


def live_sessions(server: Server, user_id: str) -> int:
    """The user's sessions not revoked, read from the file."""
    with server.db() as db:
        query = "SELECT count(*) FROM sessions WHERE user_id = ? AND revoked_at IS NULL"
        [n] = db.execute(query, (user_id,)).fetchone()
    return int(n)


def guard_for(
    server: Server, *, fail_closed_after: float = 3600.0, audience: str = AUDIENCE
) -> Guard:
    """A real guard on the server's issuer, sharing its clock, following its feed. It
    fails closed only after an hour without the feed by default: the tests move the shared
    clock by whole TOTP steps faster than the feed's long poll answers."""
    record, secret = server.call(server.services.clients.create("guard", [REVOCATIONS]))
    assert secret is not None
    return Guard(
        issuer=server.url,
        audience=audience,
        client_id=record.client_id,
        client_secret=secret,
        clock=server.clock,
        feed_wait=1.0,
        feed_interval=0.05,
        fail_closed_after=fail_closed_after,
    )
