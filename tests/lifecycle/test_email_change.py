"""Changing the address: a confirmation link to the new address, a notice to the old one,
nothing changed until the link is used; then the new address logs in, verified, and the
old access tokens die (at the server and at a guard). A taken address answers alike and
tells its owner instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from _support.http import PASSWORD, assert_problem, bearer
from authgate.errors import TokenRevoked

from .conftest import Server, Smtp, eventually, running, text_of
from .test_enumeration import shape
from .test_story import claims, guard_for

OLD = "alan@example.com"
NEW = "alan.turing@example.org"


def change(server: Server, access: str, new_email: str, password: str = PASSWORD) -> httpx.Response:
    return server.http.post(
        "/auth/email",
        json={"new_email": new_email, "current_password": password},
        headers=bearer(access),
    )


def confirm(server: Server, token: str) -> httpx.Response:
    return server.http.post("/auth/email/confirm", json={"token": token})


def login(server: Server, address: str, password: str = PASSWORD) -> httpx.Response:
    return server.http.post("/auth/login", json={"email": address, "password": password})


def logs_in(server: Server, address: str, password: str = PASSWORD) -> bool:
    r = login(server, address, password)
    assert r.status_code in (200, 401), r.text
    return r.status_code == 200


def test_change_confirm_login_with_the_new_address_and_old_tokens_die(
    server: Server, smtp: Smtp
) -> None:
    tokens: dict[str, Any] = server.register(OLD)
    access = tokens["access_token"]
    guard = guard_for(server)
    try:
        guard.start_sync()
        assert guard.verify_sync(access).sub == tokens["user"]["id"]

        r = change(server, access, NEW)
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "accepted"
        link = smtp.mailbox.token(NEW, "email_change_confirm")
        notice = smtp.mailbox.wait(OLD, "email_change_notice")
        assert NEW in text_of(notice)
        assert "token=" not in text_of(notice)  # the old address never gets the link

        # Nothing changes until the link is used.
        assert server.me(access).json()["email"] == OLD
        assert logs_in(server, OLD)
        assert not logs_in(server, NEW)

        assert confirm(server, link).status_code == 204
        # The old access token dies at the server and at the guard.
        assert_problem(server.me(access), 401, "invalid_token")
        eventually(lambda: _revoked(guard, access), what="the guard refusing the old access token")
        # A refresh of the old session carries the new state, and the guard takes it.
        r = server.http.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert r.status_code == 200, r.text
        refreshed = r.json()["access_token"]
        assert guard.verify_sync(refreshed).sub == tokens["user"]["id"]
    finally:
        guard.close_sync()

    assert not logs_in(server, OLD)
    fresh = server.login(NEW)
    me = server.me(fresh["access_token"]).json()
    assert (me["email"], me["email_verified"]) == (NEW, True)
    assert claims(fresh["access_token"])["email_verified"] is True
    assert claims(refreshed)["email_verified"] is True
    assert server.me(refreshed).json()["email"] == NEW
    # The link is single use, and the old address's verification link is dead.
    assert_problem(confirm(server, link), 400, "link_token_used")
    old_verify = smtp.mailbox.token(OLD, "verify_email")
    r = server.http.post("/auth/verify-email", json={"token": old_verify})
    assert_problem(r, 400, "link_token_revoked")


def _revoked(guard: Any, token: str) -> bool:
    try:
        guard.verify_sync(token)
    except TokenRevoked:
        return True
    return False


def test_a_taken_address_answers_alike_and_mails_its_owner(server: Server, smtp: Smtp) -> None:
    owner = "owner@example.org"
    server.register(owner)
    access = server.register(OLD)["access_token"]
    smtp.mailbox.wait(owner, "verify_email")

    taken = change(server, access, owner.upper())
    free = change(server, access, NEW)
    assert taken.status_code == 202, taken.text
    assert shape(taken) == shape(free)

    exists = smtp.mailbox.wait(owner, "account_exists")
    assert "/reset-password" in text_of(exists)
    smtp.mailbox.token(NEW, "email_change_confirm")
    server.flush_mail(smtp.mailbox)
    assert smtp.mailbox.to(owner, "email_change_confirm") == []
    assert len(smtp.mailbox.to(OLD, "email_change_notice")) == 2
    # Nothing moved: the owner keeps the address, the caller keeps theirs.
    assert logs_in(server, owner)
    assert server.me(access).json()["email"] == OLD


def test_a_wrong_password_or_the_same_address_sends_nothing(server: Server, smtp: Smtp) -> None:
    access = server.register(OLD)["access_token"]
    smtp.mailbox.wait(OLD, "verify_email")
    r = change(server, access, NEW, password="not the password at all")
    assert_problem(r, 401, "invalid_credentials")
    r = change(server, access, OLD.upper())
    assert_problem(r, 400, "invalid_request")
    r = server.http.post("/auth/email", json={"new_email": NEW, "current_password": PASSWORD})
    assert r.status_code == 401
    server.flush_mail(smtp.mailbox)
    assert smtp.mailbox.to(NEW) == []
    assert smtp.mailbox.to(OLD, "email_change_notice") == []


def test_an_address_taken_before_the_confirmation_is_a_conflict(server: Server, smtp: Smtp) -> None:
    access = server.register(OLD)["access_token"]
    assert change(server, access, NEW).status_code == 202
    link = smtp.mailbox.token(NEW, "email_change_confirm")
    server.register(NEW)  # someone else registers the address meanwhile
    assert_problem(confirm(server, link), 409, "email_taken")
    assert server.me(access).json()["email"] == OLD
    assert logs_in(server, OLD)


def test_the_password_check_counts_against_the_login_throttle(tmp_path: Path, smtp: Smtp) -> None:
    with running(
        tmp_path,
        **smtp.env(),
        AUTHGATE_THROTTLE_DELAY_AFTER="1",
        AUTHGATE_THROTTLE_LOCK_AFTER="3",
        AUTHGATE_MAIL_LIMIT="20",
    ) as server:
        access = server.register(OLD)["access_token"]
        # Two failures; the login throttle refuses the third attempt (lock_after=3).
        for _ in range(2):
            r = change(server, access, NEW, password="not the password at all")
            assert_problem(r, 401, "invalid_credentials")
        # The account is locked for the login too, even with the right password...
        assert_problem(login(server, OLD), 429, "too_many_attempts")
        # ...and for the email change.
        assert_problem(change(server, access, NEW), 429, "too_many_attempts")
        server.flush_mail(smtp.mailbox)
        assert smtp.mailbox.to(NEW) == []
        assert len(server.audit("password_check_failed")) == 2


def test_email_change_requests_are_limited_per_account(tmp_path: Path, smtp: Smtp) -> None:
    with running(tmp_path, **smtp.env(), AUTHGATE_MAIL_LIMIT="2") as server:
        access = server.register(OLD)["access_token"]
        for i in range(2):
            assert change(server, access, f"new{i}@example.org").status_code == 202
        r = change(server, access, "new9@example.org")
        assert_problem(r, 429, "too_many_attempts")
        assert r.headers["retry-after"]
        server.flush_mail(smtp.mailbox)
        assert smtp.mailbox.to("new9@example.org") == []


def test_a_password_change_ends_a_pending_email_change(server: Server, smtp: Smtp) -> None:
    """Someone who phished the password asks to move the account to their address. The
    owner gets the notice, which says: "If this was not you, change your password now".
    They do; the pending confirmation link must die with it, or the advice does nothing
    and the intruder still takes the address (and then the account, by a reset link)."""
    tokens = server.register(OLD)
    intruder = "intruder@example.net"
    assert change(server, tokens["access_token"], intruder).status_code == 202
    link = smtp.mailbox.token(intruder, "email_change_confirm")
    smtp.mailbox.wait(OLD, "email_change_notice")

    new_password = "the owner reacts quickly 1"
    r = server.http.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": new_password},
        headers=bearer(server.login(OLD)["access_token"]),
    )
    assert r.status_code == 204, r.text

    assert_problem(confirm(server, link), 400, "link_token_revoked")
    assert logs_in(server, OLD, new_password)
    assert not logs_in(server, intruder, new_password)


def test_a_password_reset_ends_a_pending_email_change(server: Server, smtp: Smtp) -> None:
    """The same, when the owner follows a reset link instead."""
    tokens = server.register(OLD)
    intruder = "intruder@example.net"
    assert change(server, tokens["access_token"], intruder).status_code == 202
    link = smtp.mailbox.token(intruder, "email_change_confirm")

    assert server.http.post("/auth/password/forgot", json={"email": OLD}).status_code == 202
    reset = smtp.mailbox.token(OLD, "reset_password")
    new_password = "the owner reacts quickly 1"
    r = server.http.post(
        "/auth/password/reset", json={"token": reset, "new_password": new_password}
    )
    assert r.status_code == 204, r.text

    assert_problem(confirm(server, link), 400, "link_token_revoked")
    assert logs_in(server, OLD, new_password)
