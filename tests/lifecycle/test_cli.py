"""The two lifecycle commands, as an operator runs them (``python -m authgate`` in a
subprocess) on the SQLite file a running server uses, mailing through the real STARTTLS
SMTP server: ``users verify EMAIL`` and ``users reset-link EMAIL`` (sent at once; a
delivery failure exits 1). The mailed link is then followed over HTTP."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _support.cli import add_user, run_cli
from _support.http import PASSWORD, assert_problem
from _support.live import FAST_ARGON2, free_port
from _support.services import clean_environ
from authgate.wiring import new_master_key

from .conftest import Server, Smtp, link_token, running

ADDRESS = "operator.user@example.com"


class Operator:
    """The CLI on the server's database, with the server's settings and key."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = {**clean_environ(), **FAST_ARGON2, **env}

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(self.folder, *args, env=self.env, stdin=stdin)

    def users(self) -> dict[str, dict[str, Any]]:
        result = self("users", "list")
        assert result.returncode == 0, result.stderr
        return {u["email"]: u for u in map(json.loads, result.stdout.splitlines())}


@pytest.fixture
def setup(tmp_path: Path, smtp: Smtp) -> Iterator[tuple[Server, Operator]]:
    """A running server and the CLI, sharing one SQLite file, key and SMTP server."""
    key = new_master_key()
    with running(tmp_path, **smtp.env(), AUTHGATE_MASTER_KEY=key) as server:
        env = {
            "AUTHGATE_MASTER_KEY": key,
            "AUTHGATE_DATABASE_URL": server.settings.database_url,
            "AUTHGATE_ISSUER": server.url,
            "AUTHGATE_PUBLIC_URL": server.settings.public_base_url,
            **smtp.env(),
        }
        cwd = tmp_path / "operator"
        cwd.mkdir()
        yield server, Operator(cwd, env)


def test_users_verify_marks_the_address_verified(setup: tuple[Server, Operator]) -> None:
    server, cli = setup
    added = cli(*add_user(ADDRESS), stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert server.me(server.login(ADDRESS)["access_token"]).json()["email_verified"] is False

    result = cli("users", "verify", ADDRESS.upper())
    assert result.returncode == 0, result.stderr
    assert ADDRESS in result.stderr
    assert cli.users()[ADDRESS]["email_verified"] is True
    login = server.login(ADDRESS)
    assert server.me(login["access_token"]).json()["email_verified"] is True
    [row] = server.audit("email_verified")
    assert row["detail"] == {"by": "cli"}

    missing = cli("users", "verify", "nobody@example.com")
    assert missing.returncode == 1
    assert "not_found" in missing.stderr


def test_users_reset_link_mails_a_link_that_resets(
    setup: tuple[Server, Operator], smtp: Smtp
) -> None:
    server, cli = setup
    tokens = server.register(ADDRESS)
    smtp.mailbox.wait(ADDRESS, "verify_email")

    result = cli("users", "reset-link", ADDRESS)
    assert result.returncode == 0, result.stderr
    # Sent synchronously: the mail is at the SMTP server when the command exits.
    [mail] = smtp.mailbox.to(ADDRESS, "reset_password")
    link = link_token(mail, "reset_password")
    assert link not in result.stdout + result.stderr  # never printed
    [row] = server.audit("password_reset_sent")
    assert row["detail"]["by"] == "cli"

    new_password = "chosen from the mailed link"
    r = server.http.post("/auth/password/reset", json={"token": link, "new_password": new_password})
    assert r.status_code == 204, r.text
    assert_problem(server.me(tokens["access_token"]), 401, "invalid_token")
    assert server.login(ADDRESS, new_password)

    missing = cli("users", "reset-link", "nobody@example.com")
    assert missing.returncode == 1
    assert "not_found" in missing.stderr


def test_users_reset_link_exits_1_when_the_mail_cannot_be_delivered(
    setup: tuple[Server, Operator], smtp: Smtp
) -> None:
    server, cli = setup
    server.register(ADDRESS)
    smtp.mailbox.wait(ADDRESS, "verify_email")
    cli.env["AUTHGATE_SMTP_URL"] = f"smtp://127.0.0.1:{free_port()}"  # nothing listens
    result = cli("users", "reset-link", ADDRESS)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "mail_failed" in result.stderr
    assert "Traceback" not in result.stderr
    assert smtp.mailbox.to(ADDRESS, "reset_password") == []


def test_users_reset_link_audits_a_failed_delivery(
    setup: tuple[Server, Operator], smtp: Smtp
) -> None:
    """Every mail failure is audited (issue 12: "audit every failure"), the CLI's too:
    the log must not say only that a link was sent when none left."""
    server, cli = setup
    uid = server.register(ADDRESS)["user"]["id"]
    smtp.mailbox.wait(ADDRESS, "verify_email")
    cli.env["AUTHGATE_SMTP_URL"] = f"smtp://127.0.0.1:{free_port()}"  # nothing listens
    assert cli("users", "reset-link", ADDRESS).returncode == 1
    failed = [row["detail"] for row in server.audit("mail_failed")]
    assert [d.get("kind") for d in failed] == ["reset_password"], (
        failed,
        [(r["event"], r["user_id"], r["detail"]) for r in server.audit("password_reset_sent")],
        uid,
    )
