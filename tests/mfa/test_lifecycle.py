"""MFA with the account lifecycle, over real SMTP: the admin reset (API and CLI) turns the
second factor off, audits, and mails the user; a password reset never bypasses MFA."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from _support.cli import run_cli
from _support.http import PASSWORD, assert_problem, bearer
from _support.live import FAST_ARGON2
from _support.services import clean_environ
from authgate.wiring import new_master_key
from lifecycle.conftest import eventually, link_token, text_of

from .conftest import (
    Server,
    Smtp,
    claims,
    enrolled,
    first_step,
    fresh_code,
    me,
    running,
    second_step,
    session_count,
)

ADDRESS = "lifecycle.mfa@example.com"
NEW_PASSWORD = "a fresh passphrase for 2026"
MFA_RESET_SUBJECT = "Two-step sign-in was turned off on your account"


def mfa_reset_mails(smtp: Smtp, address: str) -> list[object]:
    return [m for m in smtp.mailbox.to(address) if m["Subject"] == MFA_RESET_SUBJECT]


def assert_mfa_is_off(server: Server, token: str) -> None:
    assert me(server, token)["mfa"] == {"totp": False, "passkeys": 0, "recovery_codes_left": 0}
    r = server.http.post("/auth/login", json={"email": ADDRESS, "password": PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "mfa_required" not in body
    assert claims(body["access_token"])["amr"] == ["pwd"]


def test_admin_mfa_reset_turns_it_off_audits_and_mails_the_user(server: Server, smtp: Smtp) -> None:
    account = enrolled(server, ADDRESS)
    admin = server.make_admin()
    pending = first_step(server, ADDRESS)["mfa_token"]

    # Not for a user without the admin permission.
    r = server.http.post(
        f"/admin/users/{account.user_id}/mfa-reset", headers=bearer(account.access_token)
    )
    assert r.status_code == 403, r.text
    assert me(server, account.access_token)["mfa"]["totp"] is True
    r = server.http.post("/admin/users/usr_nobody/mfa-reset", headers=bearer(admin))
    assert_problem(r, 404, "not_found")

    r = server.http.post(f"/admin/users/{account.user_id}/mfa-reset", headers=bearer(admin))
    assert r.status_code == 204, r.text
    [row] = server.audit("mfa_reset")
    assert row["user_id"] == account.user_id
    # The acting admin is named (their user id), and where the call came from.
    assert row["detail"]["by"] == claims(admin)["sub"]
    assert row["ip"] == "127.0.0.1"
    mail = eventually(lambda: mfa_reset_mails(smtp, ADDRESS), what="the mfa_reset mail")[0]
    assert ADDRESS in text_of(mail)  # type: ignore[arg-type]

    assert_mfa_is_off(server, account.access_token)
    # A login waiting for its second factor cannot be finished with the old factors.
    r = second_step(server, pending, code=fresh_code(server, account.secret))
    assert r.status_code == 401, r.text
    r = second_step(server, pending, recovery_code=account.recovery_codes[0])
    assert r.status_code == 401, r.text


@pytest.fixture
def with_cli(tmp_path: Path, smtp: Smtp) -> Iterator[tuple[Server, dict[str, str]]]:
    """A running server and the CLI's environment: one SQLite file, key and SMTP server."""
    key = new_master_key()
    with running(tmp_path, **smtp.env(), AUTHGATE_MASTER_KEY=key) as server:  # type: ignore[arg-type]
        env = {
            **clean_environ(),
            **FAST_ARGON2,
            "AUTHGATE_MASTER_KEY": key,
            "AUTHGATE_DATABASE_URL": server.settings.database_url,
            "AUTHGATE_ISSUER": server.url,
            "AUTHGATE_PUBLIC_URL": server.settings.public_base_url,
            **smtp.env(),
        }
        (tmp_path / "operator").mkdir()
        yield server, env


def test_cli_mfa_reset_turns_it_off_audits_and_mails_the_user(
    with_cli: tuple[Server, dict[str, str]], smtp: Smtp, tmp_path: Path
) -> None:
    server, env = with_cli
    account = enrolled(server, ADDRESS)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(tmp_path / "operator", *args, env=env)

    missing = cli("users", "mfa-reset", "nobody@example.com")
    assert missing.returncode == 1, missing.stderr
    assert me(server, account.access_token)["mfa"]["totp"] is True

    done = cli("users", "mfa-reset", ADDRESS.upper())
    assert done.returncode == 0, done.stderr
    assert ADDRESS in done.stderr
    [row] = server.audit("mfa_reset")
    assert row["user_id"] == account.user_id
    assert row["detail"]["by"] == "cli"
    eventually(lambda: mfa_reset_mails(smtp, ADDRESS), what="the mfa_reset mail")
    assert_mfa_is_off(server, account.access_token)
    listed = cli("users", "list")
    assert listed.returncode == 0, listed.stderr
    users = {u["email"]: u for u in map(json.loads, listed.stdout.splitlines())}
    assert ADDRESS in users


def test_a_password_reset_never_bypasses_mfa(server: Server, smtp: Smtp) -> None:
    account = enrolled(server, ADDRESS)
    pending = first_step(server, ADDRESS)["mfa_token"]

    r = server.http.post("/auth/password/forgot", json={"email": ADDRESS})
    assert r.status_code == 202, r.text
    token = link_token(smtp.mailbox.wait(ADDRESS, "reset_password"), "reset_password")
    before = session_count(server, account.user_id)
    r = server.http.post(
        "/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert r.status_code == 204, r.text
    assert "access_token" not in r.text
    assert "refresh_token" not in r.text
    assert session_count(server, account.user_id)[0] <= before[0]

    # The old password is gone, and the new one still needs the second factor.
    r = server.http.post("/auth/login", json={"email": ADDRESS, "password": PASSWORD})
    assert_problem(r, 401, "invalid_credentials")
    challenge = first_step(server, ADDRESS, NEW_PASSWORD)
    assert set(challenge["methods"]) == {"totp", "recovery_code"}

    # The mfa_token of a login made with the old password cannot finish.
    r = second_step(server, pending, code=fresh_code(server, account.secret))
    assert r.status_code == 401, r.text
    assert "access_token" not in r.text

    r = second_step(server, challenge["mfa_token"], code=fresh_code(server, account.secret))
    assert r.status_code == 200, r.text
    pair = r.json()
    assert {"pwd", "otp", "mfa"} <= set(claims(pair["access_token"])["amr"])
    assert me(server, pair["access_token"])["mfa"] == {
        "totp": True,
        "passkeys": 0,
        "recovery_codes_left": 10,
    }


def test_a_reset_through_the_hosted_page_never_bypasses_mfa(server: Server, smtp: Smtp) -> None:
    account = enrolled(server, ADDRESS)
    r = server.http.post("/auth/password/forgot", json={"email": ADDRESS})
    assert r.status_code == 202, r.text
    token = link_token(smtp.mailbox.wait(ADDRESS, "reset_password"), "reset_password")
    before = session_count(server, account.user_id)
    r = server.http.post(
        "/reset-password",
        data={"token": token, "new_password": NEW_PASSWORD},
        headers={"Origin": server.url},
    )
    assert r.status_code == 200, r.text
    assert "set-cookie" not in r.headers
    assert session_count(server, account.user_id)[0] <= before[0]
    first_step(server, ADDRESS, NEW_PASSWORD)


def test_the_admin_user_list_shows_each_users_factors(server: Server) -> None:
    """A page of users carries each one's factors (read for the whole page at once), as
    the user's own record does."""
    account = enrolled(server, ADDRESS)
    plain = server.register("plain@example.com")["user"]["id"]
    admin = server.make_admin()
    r = server.http.get("/admin/users", params={"limit": 200}, headers=bearer(admin))
    assert r.status_code == 200, r.text
    listed = {u["id"]: u["mfa"] for u in r.json()["users"]}
    assert listed[account.user_id] == {"totp": True, "passkeys": 0, "recovery_codes_left": 10}
    assert listed[plain] == {"totp": False, "passkeys": 0, "recovery_codes_left": 0}
    one = server.http.get(f"/admin/users/{account.user_id}", headers=bearer(admin))
    assert one.json()["mfa"] == listed[account.user_id]
