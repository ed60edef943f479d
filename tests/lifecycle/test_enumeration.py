"""No answer tells whether an address has an account: forgot-password, resend-verification
and the enumeration-safe registration answer alike (status, body, headers but Date) for a
known and an unknown address; only the mail differs, and it arrives where it should."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from _support.http import PASSWORD, assert_problem, bearer
from authgate.errors import ConfigurationError
from authgate.settings import Settings

from .conftest import Server, Smtp, running, server_env

KNOWN = "known@example.com"
UNKNOWN = "nobody@example.com"


def shape(r: httpx.Response) -> tuple[int, bytes, tuple[tuple[str, str], ...]]:
    """What a caller sees of an answer, but the Date header."""
    headers = tuple((k, v) for k, v in r.headers.multi_items() if k.lower() != "date")
    return r.status_code, r.content, headers


def post(server: Server, path: str, body: dict[str, Any]) -> httpx.Response:
    return server.http.post(path, json=body)


def test_forgot_password_answers_alike_and_mails_only_the_account(
    server: Server, smtp: Smtp
) -> None:
    server.register(KNOWN)
    disabled = "disabled@example.com"
    server.register(disabled)
    admin = server.make_admin()
    user_id = server.call(server.services.accounts.by_email(disabled)).id
    r = server.http.patch(f"/admin/users/{user_id}", json={"disabled": True}, headers=bearer(admin))
    assert r.status_code == 200, r.text
    server.flush_mail(smtp.mailbox)

    answers = {
        address: post(server, "/auth/password/forgot", {"email": address})
        for address in (KNOWN, UNKNOWN, disabled, "Known@Example.COM")
    }
    first = shape(answers[KNOWN])
    assert first[0] == 202
    assert answers[KNOWN].json()["status"] == "accepted"
    for address, answer in answers.items():
        assert shape(answer) == first, address

    server.flush_mail(smtp.mailbox)
    # Two requests for the known account (the second in another case): two links.
    assert len(smtp.mailbox.to(KNOWN, "reset_password")) == 2
    assert smtp.mailbox.to(UNKNOWN) == []
    assert smtp.mailbox.to(disabled, "reset_password") == []
    assert len(server.audit("password_reset_unknown")) == 2


def test_forgot_password_is_throttled_alike_for_known_and_unknown(
    tmp_path: Path, smtp: Smtp
) -> None:
    with running(tmp_path, **smtp.env(), AUTHGATE_MAIL_LIMIT="2") as server:
        server.register(KNOWN)
        for _ in range(2):
            known = post(server, "/auth/password/forgot", {"email": KNOWN})
            unknown = post(server, "/auth/password/forgot", {"email": UNKNOWN})
            assert shape(known) == shape(unknown)
            assert known.status_code == 202
        # Over an address's limit: the same 202 (an anonymous caller cannot lock the owner
        # out of their own mail with a 429), and nothing more is sent.
        known = post(server, "/auth/password/forgot", {"email": KNOWN})
        unknown = post(server, "/auth/password/forgot", {"email": UNKNOWN})
        assert known.status_code == 202
        assert shape(known) == shape(unknown)
        server.flush_mail(smtp.mailbox)
        assert len(smtp.mailbox.to(KNOWN, "reset_password")) == 2


def test_a_malformed_address_is_invalid_request(server: Server, smtp: Smtp) -> None:
    for path in ("/auth/password/forgot", "/auth/verify-email/request"):
        r = post(server, path, {"email": "not an address"})
        assert_problem(r, 400, "invalid_request")


def test_verification_request_answers_alike_and_mails_only_the_unverified(
    server: Server, smtp: Smtp
) -> None:
    verified = "verified@example.com"
    server.register(KNOWN)
    server.register(verified)
    token = smtp.mailbox.token(verified, "verify_email")
    assert server.http.post("/auth/verify-email", json={"token": token}).status_code == 204
    server.flush_mail(smtp.mailbox)
    assert len(smtp.mailbox.to(KNOWN, "verify_email")) == 1

    answers = [
        post(server, "/auth/verify-email/request", {"email": a}) for a in (KNOWN, UNKNOWN, verified)
    ]
    assert answers[0].status_code == 202
    assert answers[0].json()["status"] == "accepted"
    assert len({shape(a) for a in answers}) == 1

    server.flush_mail(smtp.mailbox)
    assert len(smtp.mailbox.to(KNOWN, "verify_email")) == 2
    assert smtp.mailbox.to(UNKNOWN) == []
    assert len(smtp.mailbox.to(verified, "verify_email")) == 1  # none after verification
    # The new link works.
    token = smtp.mailbox.token(KNOWN, "verify_email", count=2)
    assert server.http.post("/auth/verify-email", json={"token": token}).status_code == 204


def test_enumeration_safe_registration_answers_alike_and_mails_the_owner(
    tmp_path: Path, smtp: Smtp
) -> None:
    with running(
        tmp_path,
        **smtp.env(),
        AUTHGATE_REQUIRE_VERIFIED_EMAIL="true",
        AUTHGATE_ENUMERATION_SAFE_REGISTRATION="true",
    ) as server:
        owner = "owner@example.com"
        # The owner registers (202), verifies from the mail, and logs in.
        r = post(server, "/auth/register", {"email": owner, "password": PASSWORD})
        assert r.status_code == 202, r.text
        token = smtp.mailbox.token(owner, "verify_email")
        assert server.http.post("/auth/verify-email", json={"token": token}).status_code == 204
        assert server.login(owner)

        newcomer = "newcomer@example.com"
        attacker_password = "attacker passphrase 1234"
        taken = post(
            server, "/auth/register", {"email": "Owner@Example.com", "password": attacker_password}
        )
        fresh = post(server, "/auth/register", {"email": newcomer, "password": PASSWORD})
        assert taken.status_code == 202, taken.text
        assert taken.json() == {"status": "accepted", "detail": taken.json()["detail"]}
        assert shape(taken) == shape(fresh)
        assert "access_token" not in taken.text

        # The owner is told; the newcomer gets a link that verifies the new account.
        exists = smtp.mailbox.wait(owner, "account_exists")
        assert "/reset-password" in exists.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        token = smtp.mailbox.token(newcomer, "verify_email")
        assert server.http.post("/auth/verify-email", json={"token": token}).status_code == 204
        assert server.login(newcomer)
        server.flush_mail(smtp.mailbox)
        assert len(smtp.mailbox.to(owner, "verify_email")) == 1  # no new link for the owner
        assert smtp.mailbox.to(newcomer, "account_exists") == []

        # The taken account is untouched: its password is the owner's.
        r = server.http.post("/auth/login", json={"email": owner, "password": attacker_password})
        assert_problem(r, 401, "invalid_credentials")
        assert server.login(owner)
        assert len(server.audit("registration_on_taken_email")) == 1


def test_enumeration_safe_registration_refuses_a_weak_password_alike(
    tmp_path: Path, smtp: Smtp
) -> None:
    with running(
        tmp_path,
        **smtp.env(),
        AUTHGATE_REQUIRE_VERIFIED_EMAIL="true",
        AUTHGATE_ENUMERATION_SAFE_REGISTRATION="true",
    ) as server:
        owner = "owner@example.com"
        assert post(server, "/auth/register", {"email": owner, "password": PASSWORD}).status_code
        smtp.mailbox.wait(owner, "verify_email")
        taken = post(server, "/auth/register", {"email": owner, "password": "password"})
        fresh = post(server, "/auth/register", {"email": UNKNOWN, "password": "password"})
        assert_problem(taken, 400, "weak_password")
        assert shape(taken) == shape(fresh)


def test_mail_requests_are_limited_per_ip_whatever_the_address(tmp_path: Path, smtp: Smtp) -> None:
    # The registration counts against the IP's mail limit too: 1 + 3.
    with running(tmp_path, **smtp.env(), AUTHGATE_MAIL_IP_LIMIT="4") as server:
        server.register(KNOWN)
        server.flush_mail(smtp.mailbox)
        answers = [
            post(server, "/auth/password/forgot", {"email": KNOWN}),
            post(server, "/auth/verify-email/request", {"email": "a@example.com"}),
            post(server, "/auth/password/forgot", {"email": "b@example.com"}),
        ]
        assert [a.status_code for a in answers] == [202, 202, 202]
        for path, address in [
            ("/auth/password/forgot", KNOWN),
            ("/auth/password/forgot", "c@example.com"),
            ("/auth/verify-email/request", KNOWN),
        ]:
            assert_problem(post(server, path, {"email": address}), 429, "too_many_attempts")
        server.flush_mail(smtp.mailbox)
        assert len(smtp.mailbox.to(KNOWN, "reset_password")) == 1


def test_enumeration_safe_registration_needs_required_verification(tmp_path: Path) -> None:
    env = server_env(
        tmp_path, "http://127.0.0.1:8000", AUTHGATE_ENUMERATION_SAFE_REGISTRATION="true"
    )
    with pytest.raises(ConfigurationError, match="REQUIRE_VERIFIED_EMAIL"):
        Settings.from_env(env, config_dir=tmp_path)
