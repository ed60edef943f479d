"""Mailed links are single use, end when a newer one is sent, end when the password or
the address changes, expire (on the injected clock), and serve one purpose: each refusal
with its own code, over HTTP, with tokens read from real mail."""

from __future__ import annotations

import json
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from _support.http import PASSWORD, assert_problem, bearer

from .conftest import Server, Smtp, running, text_of

NEW_PASSWORD = "a brand new passphrase 77"
OTHER_PASSWORD = "yet another passphrase 99"
ADDRESS = "grace@example.com"


def reset(http: httpx.Client, token: str, password: str = NEW_PASSWORD) -> httpx.Response:
    return http.post("/auth/password/reset", json={"token": token, "new_password": password})


def verify(http: httpx.Client, token: str) -> httpx.Response:
    return http.post("/auth/verify-email", json={"token": token})


def forgot(server: Server, smtp: Smtp, address: str = ADDRESS, *, count: int = 1) -> str:
    """Ask for a reset link; the token of the ``count``-th reset mail to ``address``."""
    r = server.http.post("/auth/password/forgot", json={"email": address})
    assert r.status_code == 202, r.text
    return smtp.mailbox.token(address, "reset_password", count=count)


def can_log_in(server: Server, password: str, address: str = ADDRESS) -> bool:
    r = server.http.post("/auth/login", json={"email": address, "password": password})
    assert r.status_code in (200, 401), r.text
    return r.status_code == 200


def registered(server: Server, smtp: Smtp, address: str = ADDRESS) -> dict[str, Any]:
    body = server.register(address)
    smtp.mailbox.wait(address, "verify_email")
    return body


# --- used twice ------------------------------------------------------------------------------


def test_a_verification_link_used_twice_is_link_token_used(server: Server, smtp: Smtp) -> None:
    registered(server, smtp)
    token = smtp.mailbox.token(ADDRESS, "verify_email")
    assert verify(server.http, token).status_code == 204
    assert_problem(verify(server.http, token), 400, "link_token_used")


def test_a_reset_link_used_twice_is_link_token_used(server: Server, smtp: Smtp) -> None:
    registered(server, smtp)
    token = forgot(server, smtp)
    assert reset(server.http, token).status_code == 204
    assert_problem(reset(server.http, token, OTHER_PASSWORD), 400, "link_token_used")
    assert can_log_in(server, NEW_PASSWORD)
    assert not can_log_in(server, OTHER_PASSWORD)


# --- a newer link ----------------------------------------------------------------------------


def test_a_reset_link_after_a_newer_one_is_link_token_superseded(
    server: Server, smtp: Smtp
) -> None:
    registered(server, smtp)
    first = forgot(server, smtp, count=1)
    second = forgot(server, smtp, count=2)
    assert first != second
    assert_problem(reset(server.http, first), 400, "link_token_superseded")
    assert not can_log_in(server, NEW_PASSWORD)
    assert reset(server.http, second).status_code == 204
    assert can_log_in(server, NEW_PASSWORD)


def test_a_verification_link_after_a_newer_one_is_link_token_superseded(
    server: Server, smtp: Smtp
) -> None:
    registered(server, smtp)
    first = smtp.mailbox.token(ADDRESS, "verify_email", count=1)
    r = server.http.post("/auth/verify-email/request", json={"email": ADDRESS})
    assert r.status_code == 202, r.text
    second = smtp.mailbox.token(ADDRESS, "verify_email", count=2)
    assert_problem(verify(server.http, first), 400, "link_token_superseded")
    assert verify(server.http, second).status_code == 204
    assert server.login(ADDRESS)  # and the address is verified:
    assert server.me(server.login(ADDRESS)["access_token"]).json()["email_verified"] is True


def test_an_email_change_link_after_a_newer_one_is_link_token_superseded(
    server: Server, smtp: Smtp
) -> None:
    access = registered(server, smtp)["access_token"]
    for address in ("first@example.org", "second@example.org"):
        r = server.http.post(
            "/auth/email",
            json={"new_email": address, "current_password": PASSWORD},
            headers=bearer(access),
        )
        assert r.status_code == 202, r.text
    first = smtp.mailbox.token("first@example.org", "email_change_confirm")
    second = smtp.mailbox.token("second@example.org", "email_change_confirm")
    r = server.http.post("/auth/email/confirm", json={"token": first})
    assert_problem(r, 400, "link_token_superseded")
    assert server.http.post("/auth/email/confirm", json={"token": second}).status_code == 204
    assert can_log_in(server, PASSWORD, "second@example.org")
    assert not can_log_in(server, PASSWORD, "first@example.org")


# --- the password or the address changed -----------------------------------------------------


def test_a_reset_link_after_a_password_change_is_link_token_revoked(
    server: Server, smtp: Smtp
) -> None:
    tokens = registered(server, smtp)
    link = forgot(server, smtp)
    r = server.http.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": OTHER_PASSWORD},
        headers=bearer(tokens["access_token"]),
    )
    assert r.status_code == 204, r.text
    assert_problem(reset(server.http, link), 400, "link_token_revoked")
    # The password is the one the user chose, not the link's.
    assert can_log_in(server, OTHER_PASSWORD)
    assert not can_log_in(server, NEW_PASSWORD)


def test_a_reset_link_after_an_email_change_is_link_token_revoked(
    server: Server, smtp: Smtp
) -> None:
    tokens = registered(server, smtp)
    link = forgot(server, smtp)
    new_address = "grace.new@example.com"
    r = server.http.post(
        "/auth/email",
        json={"new_email": new_address, "current_password": PASSWORD},
        headers=bearer(tokens["access_token"]),
    )
    assert r.status_code == 202, r.text
    confirm = smtp.mailbox.token(new_address, "email_change_confirm")
    assert server.http.post("/auth/email/confirm", json={"token": confirm}).status_code == 204
    # The link went to the old address: it must no longer set the password.
    assert_problem(reset(server.http, link), 400, "link_token_revoked")
    assert can_log_in(server, PASSWORD, new_address)
    assert not can_log_in(server, NEW_PASSWORD, new_address)


# --- expiry, on the injected clock -----------------------------------------------------------


def test_a_reset_link_expires_after_its_lifetime(tmp_path: Path, smtp: Smtp) -> None:
    with running(tmp_path, **smtp.env(), AUTHGATE_RESET_TTL="10m") as server:
        registered(server, smtp)
        early = forgot(server, smtp, count=1)
        # The mail states the lifetime from the settings.
        assert "(it works for 10 minutes)" in text_of(smtp.mailbox.wait(ADDRESS, "reset_password"))
        server.clock.advance(600)
        assert_problem(reset(server.http, early), 400, "link_token_expired")
        assert not can_log_in(server, NEW_PASSWORD)
        # A link one second short of its lifetime still works.
        live = forgot(server, smtp, count=2)
        server.clock.advance(600 - 1)
        assert reset(server.http, live).status_code == 204
        assert can_log_in(server, NEW_PASSWORD)


def test_a_verification_link_expires_after_24_hours_by_default(server: Server, smtp: Smtp) -> None:
    registered(server, smtp)
    token = smtp.mailbox.token(ADDRESS, "verify_email")
    server.clock.advance(24 * 3600)
    assert_problem(verify(server.http, token), 400, "link_token_expired")
    login = server.login(ADDRESS)
    assert server.me(login["access_token"]).json()["email_verified"] is False


def test_an_email_change_link_expires_after_an_hour_by_default(server: Server, smtp: Smtp) -> None:
    tokens = registered(server, smtp)
    new_address = "grace.new@example.com"
    r = server.http.post(
        "/auth/email",
        json={"new_email": new_address, "current_password": PASSWORD},
        headers=bearer(tokens["access_token"]),
    )
    assert r.status_code == 202, r.text
    token = smtp.mailbox.token(new_address, "email_change_confirm")
    server.clock.advance(3600)
    r = server.http.post("/auth/email/confirm", json={"token": token})
    assert_problem(r, 400, "link_token_expired")
    assert can_log_in(server, PASSWORD, ADDRESS)


# --- another purpose, and no link at all -----------------------------------------------------


def test_a_verification_token_used_as_a_reset_token_is_link_token_wrong_purpose(
    server: Server, smtp: Smtp
) -> None:
    registered(server, smtp)
    token = smtp.mailbox.token(ADDRESS, "verify_email")
    assert_problem(reset(server.http, token), 400, "link_token_wrong_purpose")
    assert not can_log_in(server, NEW_PASSWORD)
    # The refusal did not use it up: it still verifies.
    assert verify(server.http, token).status_code == 204


def test_a_reset_token_used_to_verify_or_confirm_is_link_token_wrong_purpose(
    server: Server, smtp: Smtp
) -> None:
    registered(server, smtp)
    token = forgot(server, smtp)
    assert_problem(verify(server.http, token), 400, "link_token_wrong_purpose")
    r = server.http.post("/auth/email/confirm", json={"token": token})
    assert_problem(r, 400, "link_token_wrong_purpose")
    assert reset(server.http, token).status_code == 204


def test_an_unknown_token_is_invalid_link_token(server: Server, smtp: Smtp) -> None:
    registered(server, smtp)
    made_up = secrets.token_urlsafe(32)
    assert_problem(verify(server.http, made_up), 400, "invalid_link_token")
    assert_problem(reset(server.http, made_up), 400, "invalid_link_token")
    r = server.http.post("/auth/email/confirm", json={"token": made_up})
    assert_problem(r, 400, "invalid_link_token")


def test_every_refused_link_is_audited_with_its_code(server: Server, smtp: Smtp) -> None:
    """A refusal at any of the three link endpoints leaves a ``link_refused`` row naming
    the purpose and the code (a reset link refused is no less worth auditing)."""
    registered(server, smtp)
    made_up = secrets.token_urlsafe(32)
    assert_problem(verify(server.http, made_up), 400, "invalid_link_token")
    assert_problem(reset(server.http, made_up), 400, "invalid_link_token")
    r = server.http.post("/auth/email/confirm", json={"token": made_up})
    assert_problem(r, 400, "invalid_link_token")
    details = [row["detail"] for row in server.audit("link_refused")]
    assert sorted(d["purpose"] for d in details) == [
        "change_email",
        "reset_password",
        "verify_email",
    ]
    assert {d["code"] for d in details} == {"invalid_link_token"}


# --- races and refusals that must not use the link up ------------------------------------------


def test_a_reset_link_raced_by_many_requests_is_used_once(server: Server, smtp: Smtp) -> None:
    registered(server, smtp)
    token = forgot(server, smtp)
    passwords = [f"racing passphrase number {i:02d}" for i in range(8)]
    barrier = threading.Barrier(len(passwords))

    def attempt(password: str) -> tuple[str, int, str]:
        with httpx.Client(base_url=server.url, timeout=30.0) as http:
            barrier.wait()
            r = reset(http, token, password)
            return password, r.status_code, r.text

    with ThreadPoolExecutor(len(passwords)) as pool:
        results = list(pool.map(attempt, passwords))
    winners = [p for p, status, _ in results if status == 204]
    assert len(winners) == 1, results
    for _, status, text in results:
        if status != 204:
            assert (status, json.loads(text)["code"]) == (400, "link_token_used")
    assert can_log_in(server, winners[0])
    assert not any(can_log_in(server, p) for p in passwords if p != winners[0])


def test_a_weak_new_password_is_refused_and_keeps_the_link(server: Server, smtp: Smtp) -> None:
    registered(server, smtp)
    token = forgot(server, smtp)
    assert_problem(reset(server.http, token, "password"), 400, "weak_password")
    assert reset(server.http, token).status_code == 204
    assert can_log_in(server, NEW_PASSWORD)
