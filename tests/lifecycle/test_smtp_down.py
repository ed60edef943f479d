"""The SMTP server is down (a closed port) or untrusted: the server still answers at once,
the send is retried with backoff (on the injected sleep: no wall time), and the failure is
audited and counted in /metrics. When the SMTP server comes back, mail flows again."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller

from _support.http import bearer
from _support.live import free_port

from .conftest import SMTP_PASSWORD, SMTP_USER, Mailbox, Server, Smtp, eventually, running

ADDRESS = "down@example.com"


def failures(server: Server, reason: str = "failed") -> float:
    """authgate_mail_failures_total{reason=...} from /metrics (0 when absent)."""
    text = server.http.get("/metrics").text
    found = re.search(
        rf'^authgate_mail_failures_total\{{reason="{reason}"\}} ([0-9.e+]+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


def sent(server: Server) -> float:
    text = server.http.get("/metrics").text
    found = re.search(r"^authgate_mail_sent_total ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.fixture
def down_port() -> int:
    """A loopback port that nothing listens on."""
    return free_port()


@pytest.fixture
def down(tmp_path: Path, down_port: int) -> Iterator[Server]:
    """authgate whose SMTP server is a closed port."""
    with running(
        tmp_path,
        AUTHGATE_EMAIL="smtp",
        AUTHGATE_SMTP_URL=f"smtp://127.0.0.1:{down_port}",
        AUTHGATE_EMAIL_FROM="authgate <no-reply@example.com>",
    ) as live:
        yield live


def test_smtp_down_forgot_answers_and_the_failure_is_retried_audited_and_counted(
    down: Server,
) -> None:
    registered = down.http.post(
        "/auth/register", json={"email": ADDRESS, "password": "correct horse battery staple 42"}
    )
    assert registered.status_code == 201, registered.text  # a mail failure fails nothing
    admin = down.make_admin()
    r = down.http.post("/auth/password/forgot", json={"email": ADDRESS})
    assert r.status_code == 202, r.text

    # Both mails (verification, then reset) fail after every attempt, each audited once.
    rows = eventually(lambda: len(down.audit("mail_failed")) >= 2 and down.audit("mail_failed"))
    details = [row["detail"] for row in rows]
    assert [d["kind"] for d in details] == ["verify_email", "reset_password"]
    assert all(d["attempts"] == 4 for d in details)
    assert all(d["error"] for d in details)
    # Retried with exponential backoff, on the injected sleep.
    backoff = [d for d in down.sleeps.delays if d in (2.0, 4.0, 8.0)]
    assert backoff == [2.0, 4.0, 8.0, 2.0, 4.0, 8.0]

    # The server keeps answering, and shows the failure to an admin and in the metrics.
    assert down.http.get("/healthz").status_code == 200
    assert down.http.post("/auth/password/forgot", json={"email": ADDRESS}).status_code == 202
    audit = down.http.get("/admin/audit", params={"event": "mail_failed"}, headers=bearer(admin))
    assert audit.status_code == 200, audit.text
    assert len(audit.json()) >= 2
    assert {row["event"] for row in audit.json()} == {"mail_failed"}
    eventually(lambda: failures(down) == 3, what="three failures counted")
    assert sent(down) == 0
    # The body of a failed mail (its link) is never in the audit log.
    assert "token" not in audit.text


def test_smtp_comes_back_and_mail_flows_again(down: Server, down_port: int) -> None:
    down.register(ADDRESS)
    eventually(lambda: down.audit("mail_failed"))
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=down_port)
    controller.start()
    try:
        r = down.http.post("/auth/password/forgot", json={"email": ADDRESS})
        assert r.status_code == 202, r.text
        token = mailbox.token(ADDRESS, "reset_password")
        r = down.http.post(
            "/auth/password/reset", json={"token": token, "new_password": "back again 12345"}
        )
        assert r.status_code == 204, r.text
        assert sent(down) == 1
        assert failures(down) == 1
    finally:
        controller.stop()


def test_an_untrusted_smtp_certificate_is_a_failure_never_a_plaintext_send(
    tmp_path: Path, smtp: Smtp
) -> None:
    """STARTTLS to a server whose CA is not trusted (no AUTHGATE_SMTP_CA_FILE): the mail
    is not sent, the failure is audited; nothing reaches the SMTP server."""
    env = smtp.env()
    del env["AUTHGATE_SMTP_CA_FILE"]
    with running(tmp_path, **env) as server:
        r = server.http.post(
            "/auth/register",
            json={"email": ADDRESS, "password": "correct horse battery staple 42"},
        )
        assert r.status_code == 201, r.text
        [row] = eventually(lambda: server.audit("mail_failed"))
        assert row["detail"]["kind"] == "verify_email"
        assert smtp.mailbox.messages() == []
        assert failures(server) == 1


def test_starttls_is_never_downgraded_to_plain_text(tmp_path: Path) -> None:
    """smtp+starttls:// to a server that offers no STARTTLS: nothing is sent (least of
    all the SMTP password, in the clear); the failure is audited without the password."""
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)  # no TLS at all
    controller.start()
    try:
        url = f"smtp+starttls://{quote(SMTP_USER, safe='')}:{quote(SMTP_PASSWORD, safe='')}"
        with running(
            tmp_path,
            AUTHGATE_EMAIL="smtp",
            AUTHGATE_SMTP_URL=f"{url}@127.0.0.1:{port}",
            AUTHGATE_EMAIL_FROM="authgate <no-reply@example.com>",
        ) as server:
            r = server.http.post(
                "/auth/register",
                json={"email": ADDRESS, "password": "correct horse battery staple 42"},
            )
            assert r.status_code == 201, r.text
            [row] = eventually(lambda: server.audit("mail_failed"))
            assert row["detail"]["kind"] == "verify_email"
            assert SMTP_PASSWORD not in json.dumps(row)
            assert mailbox.messages() == []
    finally:
        controller.stop()
