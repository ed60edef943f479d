"""Helpers for talking to a running authgate: headers, accounts through the API, and the
RFC 9457 problem every /auth and /admin refusal must be."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx

PASSWORD = "correct horse battery staple 42"
ADMIN_PERMISSION = "authgate:admin"
# The members of every token response (login, register, refresh, the refresh_token grant).
TOKEN_FIELDS = frozenset(
    {"access_token", "token_type", "expires_in", "refresh_token", "refresh_expires_in", "scope"}
)


def bearer(token: str) -> dict[str, str]:
    """An Authorization: Bearer header."""
    return {"Authorization": f"Bearer {token}"}


def basic(client_id: str, secret: str) -> dict[str, str]:
    """An RFC 6749 2.3.1 Basic header (both parts form-urlencoded first, as the RFC says;
    our ids and secrets are URL-safe, so that is the identity)."""
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def new_email(prefix: str = "user") -> str:
    """A unique email, for tests that share a server (or a database, or Redis)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """An RFC 9457 problem with this status and stable code; returns the body."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].split(";")[0] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["type"] == "about:blank"
    return body


def register(client: httpx.Client, email: str, password: str = PASSWORD, **extra: Any) -> Any:
    """Register an account through the API; return the token response."""
    r = client.post("/auth/register", json={"email": email, "password": password, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def login(client: httpx.Client, email: str, password: str = PASSWORD) -> Any:
    """Log in through the API; return the token response (client_id ``authgate``)."""
    r = client.post("/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return r.json()
