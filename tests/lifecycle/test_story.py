"""The whole story over real mail: register, read the verification mail from a STARTTLS
SMTP server, follow its link, verify; forget the password, follow the reset link, reset;
every old session dies, at the server and at a real guard following its feed."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from _support.http import PASSWORD, assert_problem
from authgate.errors import InvalidToken, TokenRevoked
from authgate.guard import Guard

from .conftest import AUDIENCE, Server, Smtp, eventually, text_of

NEW_PASSWORD = "a brand new passphrase 77"
REVOCATIONS = "authgate:revocations"


def claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (the guard verifies; this only reads)."""
    payload = token.split(".")[1]
    out: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return out


def guard_for(server: Server) -> Guard:
    """A real guard on the server's issuer, sharing its clock, following its feed."""
    client_id, secret = server.new_client([REVOCATIONS])
    return Guard(
        issuer=server.url,
        audience=AUDIENCE,
        client_id=client_id,
        client_secret=secret,
        clock=server.clock,
        feed_wait=1.0,
        feed_interval=0.05,
    )


def guard_refuses(guard: Guard, token: str) -> str | None:
    """The reason the guard refuses ``token`` (None while it accepts it)."""
    try:
        guard.verify_sync(token)
    except TokenRevoked as exc:
        return str(exc.context.get("by"))
    return None


def test_register_verify_forget_reset_and_every_old_session_dies(
    server: Server, smtp: Smtp
) -> None:
    mailbox = smtp.mailbox
    address = "ada@example.com"
    http = server.http

    # --- register: tokens, an unverified address, and a verification mail ------------------
    r = http.post("/auth/register", json={"email": address, "password": PASSWORD, "name": "Ada"})
    assert r.status_code == 201, r.text
    registered = r.json()
    assert registered["user"]["email"] == address
    assert registered["user"]["email_verified"] is False
    assert claims(registered["access_token"])["email_verified"] is False
    assert server.me(registered["access_token"]).json()["email_verified"] is False

    mail = mailbox.wait(address, "verify_email")
    assert mail["From"] == "authgate <no-reply@example.com>"
    assert mailbox.envelopes[0].rcpt_tos == [address]
    verify_token = mailbox.token(address, "verify_email")
    # The HTML part carries the same link.
    html = mail.get_body(("html",))
    assert html is not None
    assert f"/verify-email?token={verify_token}" in html.get_content()

    r = http.post("/auth/verify-email", json={"token": verify_token})
    assert r.status_code == 204, r.text
    assert server.me(registered["access_token"]).json()["email_verified"] is True
    fresh = server.login(address)
    assert claims(fresh["access_token"])["email_verified"] is True

    # --- two live sessions, both accepted by a guard following the feed -------------------
    sessions = [registered, fresh]
    guard = guard_for(server)
    try:
        guard.start_sync()
        for s in sessions:
            assert guard.verify_sync(s["access_token"]).sub == registered["user"]["id"]

        # --- forgot: 202, then a reset mail ------------------------------------------------
        r = http.post("/auth/password/forgot", json={"email": address})
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "accepted"
        reset_token = mailbox.token(address, "reset_password")

        r = http.post(
            "/auth/password/reset", json={"token": reset_token, "new_password": NEW_PASSWORD}
        )
        assert r.status_code == 204, r.text
        assert r.content == b""  # it signs no one in
        assert "set-cookie" not in r.headers

        # --- every old session dies ----------------------------------------------------------
        for s in sessions:
            refused = http.post("/auth/refresh", json={"refresh_token": s["refresh_token"]})
            assert_problem(refused, 401, "invalid_grant")
            assert_problem(server.me(s["access_token"]), 401, "invalid_token")
        for s in sessions:
            why = eventually(
                lambda s=s: guard_refuses(guard, s["access_token"]), what="the guard's refusal"
            )
            assert why == "sid"
        staleness = guard.revocation_staleness
        assert staleness is not None
        assert staleness <= 30.0  # within fail_closed_after, the guard's staleness bound
        with pytest.raises(InvalidToken):
            guard.verify_sync(fresh["access_token"])

        # --- the old password is gone, the new one works, and the guard takes it ------------
        r = http.post("/auth/login", json={"email": address, "password": PASSWORD})
        assert_problem(r, 401, "invalid_credentials")
        after = server.login(address, NEW_PASSWORD)
        assert server.me(after["access_token"]).json()["email_verified"] is True
        assert guard.verify_sync(after["access_token"]).sub == registered["user"]["id"]
    finally:
        guard.close_sync()
    assert_problem(
        http.post("/auth/password/reset", json={"token": reset_token, "new_password": PASSWORD}),
        400,
        "link_token_used",
    )
    [row] = server.audit("sessions_revoked")
    assert row["detail"] == {"count": 2, "reason": "password_reset"}


def test_mail_is_personal_and_its_html_escaped(server: Server, smtp: Smtp) -> None:
    name = '<img src="x" onerror="alert(1)"> Ada & co'
    r = server.http.post(
        "/auth/register", json={"email": "ada@example.com", "password": PASSWORD, "name": name}
    )
    assert r.status_code == 201, r.text
    # Whoever registers chooses the name: a mail to an address nobody has proved yet
    # does not carry it.
    verify = smtp.mailbox.wait("ada@example.com", "verify_email")
    assert name not in text_of(verify)
    assert "Ada" not in text_of(verify)
    r = server.http.post("/auth/password/forgot", json={"email": "ada@example.com"})
    assert r.status_code == 202
    mail = smtp.mailbox.wait("ada@example.com", "reset_password")
    assert name in text_of(mail)
    html = mail.get_body(("html",))
    assert html is not None
    assert "<img" not in html.get_content()
    assert "&lt;img" in html.get_content()
