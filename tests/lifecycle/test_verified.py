"""A verified address, demanded: AUTHGATE_REQUIRE_VERIFIED_EMAIL refuses the login of an
unverified account (403 email_not_verified, only with the right password), and a guard's
``verified=True`` refuses a token without a true ``email_verified`` claim (403)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _support.http import PASSWORD, assert_problem, bearer
from _support.live import ThreadedServer

from ._guarded import guarded_app
from .conftest import Server, Smtp, running
from .test_story import claims, guard_for

ADDRESS = "hopper@example.com"


@pytest.fixture
def strict(tmp_path: Path, smtp: Smtp) -> Iterator[Server]:
    """authgate with AUTHGATE_REQUIRE_VERIFIED_EMAIL."""
    with running(tmp_path, **smtp.env(), AUTHGATE_REQUIRE_VERIFIED_EMAIL="true") as live:
        yield live


def login(server: Server, address: str, password: str = PASSWORD) -> httpx.Response:
    return server.http.post("/auth/login", json={"email": address, "password": password})


def test_require_verified_email_registers_202_and_refuses_login_until_verified(
    strict: Server, smtp: Smtp
) -> None:
    r = strict.http.post("/auth/register", json={"email": ADDRESS, "password": PASSWORD})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "accepted"
    assert set(r.json()) == {"status", "detail"}  # no tokens

    assert_problem(login(strict, ADDRESS), 403, "email_not_verified")
    # Only the right password learns that: a wrong one, or no account, is a plain 401.
    assert_problem(login(strict, ADDRESS, "not the password at all"), 401, "invalid_credentials")
    assert_problem(login(strict, "nobody@example.com"), 401, "invalid_credentials")
    assert strict.audit("login_unverified")

    token = smtp.mailbox.token(ADDRESS, "verify_email")
    assert strict.http.post("/auth/verify-email", json={"token": token}).status_code == 204
    r = login(strict, ADDRESS)
    assert r.status_code == 200, r.text
    assert claims(r.json()["access_token"])["email_verified"] is True


def test_require_verified_email_a_reset_link_verifies_the_address(
    strict: Server, smtp: Smtp
) -> None:
    """The reset link reached the address: after the reset, the account may log in."""
    r = strict.http.post("/auth/register", json={"email": ADDRESS, "password": PASSWORD})
    assert r.status_code == 202, r.text
    assert strict.http.post("/auth/password/forgot", json={"email": ADDRESS}).status_code == 202
    token = smtp.mailbox.token(ADDRESS, "reset_password")
    new_password = "a brand new passphrase 77"
    r = strict.http.post(
        "/auth/password/reset", json={"token": token, "new_password": new_password}
    )
    assert r.status_code == 204, r.text
    assert login(strict, ADDRESS, new_password).status_code == 200


def refusal(r: httpx.Response) -> str:
    """The error code of a guard's refusal: ``{"error": ...}`` (Starlette), or FastAPI's
    ``{"detail": ...}`` for its dependency."""
    body: dict[str, Any] = r.json()
    return str(body.get("error") or body.get("detail"))


@pytest.mark.parametrize(
    "path", ["/verified", "/verified-decorated"], ids=["fastapi-require", "starlette-required"]
)
def test_guard_verified_true_refuses_an_unverified_token_then_accepts_a_verified_one(
    server: Server, smtp: Smtp, path: str
) -> None:
    tokens = server.register(ADDRESS)
    unverified = tokens["access_token"]
    assert claims(unverified)["email_verified"] is False
    guard = guard_for(server)
    app = ThreadedServer(guarded_app(guard), name="lifecycle-guarded-app").start()
    try:
        api = app.http
        assert api.get("/me", headers=bearer(unverified)).status_code == 200
        r = api.get(path, headers=bearer(unverified))
        assert r.status_code == 403, (r.status_code, r.text)
        assert r.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'
        assert refusal(r) == "email_not_verified"

        token = smtp.mailbox.token(ADDRESS, "verify_email")
        assert server.http.post("/auth/verify-email", json={"token": token}).status_code == 204
        # The old token still says false; a refresh carries the verified address.
        assert api.get(path, headers=bearer(unverified)).status_code == 403
        r = server.http.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert r.status_code == 200, r.text
        verified = r.json()["access_token"]
        r = api.get(path, headers=bearer(verified))
        assert r.status_code == 200, r.text
        assert r.json()["sub"] == tokens["user"]["id"]
    finally:
        app.stop()
        guard.close_sync()
