"""Helpers for talking to a running authgate: headers, unique accounts and the RFC 9457
problem every /auth and /admin refusal must be."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx


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
