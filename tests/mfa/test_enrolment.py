"""TOTP enrolment over HTTP: enrol, confirm, /auth/me, re-enrol, disable, regenerate the
recovery codes, and the verified-email rule."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp

from _support.http import PASSWORD, assert_problem, bearer
from api.server import running_server
from authgate.wiring import new_master_key

from .conftest import (
    Server,
    code_at,
    enrol,
    enrolled,
    first_step,
    fresh_code,
    me,
    mfa_login,
    second_step,
)

ADDRESS = "enrol@example.com"


def test_enrol_then_confirm_turns_totp_on_with_ten_recovery_codes(server: Server) -> None:
    tokens = server.register(ADDRESS)
    token = tokens["access_token"]
    assert me(server, token)["mfa"] == {"totp": False, "passkeys": 0, "recovery_codes_left": 0}

    r = server.http.post("/auth/mfa/totp", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert "no-store" in r.headers["cache-control"]
    body = r.json()
    secret = body["secret"]
    assert re.fullmatch(r"[A-Z2-7]{16,}", secret), secret
    uri = urlsplit(body["otpauth_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert ADDRESS in unquote(uri.path)
    query = parse_qs(uri.query)
    assert query["secret"] == [secret]
    assert pyotp.parse_uri(body["otpauth_uri"]).secret == secret
    svg = ET.fromstring(body["qr_svg"])
    assert svg.tag.endswith("svg"), svg.tag

    # Not active until confirmed: the password alone still logs in.
    assert me(server, token)["mfa"]["totp"] is False
    assert "access_token" in server.login(ADDRESS)

    wrong = f"{(int(code_at(server, secret)) + 1) % 1_000_000:06d}"
    r = server.http.post("/auth/mfa/totp/confirm", headers=bearer(token), json={"code": wrong})
    assert_problem(r, 401, "invalid_mfa_code")
    assert me(server, token)["mfa"]["totp"] is False

    r = server.http.post(
        "/auth/mfa/totp/confirm", headers=bearer(token), json={"code": code_at(server, secret)}
    )
    assert r.status_code == 200, r.text
    assert "no-store" in r.headers["cache-control"]
    codes = r.json()["recovery_codes"]
    assert len(codes) == 10
    assert len(set(codes)) == 10
    assert all(isinstance(c, str) and len(c) >= 10 for c in codes)
    assert me(server, token)["mfa"] == {"totp": True, "passkeys": 0, "recovery_codes_left": 10}

    challenge = first_step(server, ADDRESS)
    assert set(challenge["methods"]) == {"totp", "recovery_code"}
    [row] = server.audit("totp_enabled")
    assert row["user_id"] == tokens["user"]["id"]


def test_the_secret_is_encrypted_at_rest(server: Server) -> None:
    account = enrolled(server, ADDRESS)
    with server.db() as db:
        [(stored,)] = db.execute(
            "SELECT secret FROM mfa_totp WHERE user_id = ?", (account.user_id,)
        ).fetchall()
        dump = "\n".join(db.iterdump())
    assert isinstance(stored, bytes)
    assert account.secret.encode() not in stored
    assert account.secret not in dump
    for code in account.recovery_codes:
        assert code not in dump
        assert code.replace("-", "") not in dump


def test_re_enrolling_while_active_needs_the_password_and_a_current_code(
    server: Server,
) -> None:
    account = enrolled(server, ADDRESS)
    token = account.access_token
    r = server.http.post("/auth/mfa/totp", headers=bearer(token))
    assert_problem(r, 409, "mfa_already_enabled")
    r = server.http.post("/auth/mfa/totp", headers=bearer(token), json={"password": PASSWORD})
    assert_problem(r, 409, "mfa_already_enabled")
    code = fresh_code(server, account.secret)
    r = server.http.post(
        "/auth/mfa/totp", headers=bearer(token), json={"password": "wrong password!", "code": code}
    )
    assert_problem(r, 401, "invalid_credentials")
    r = server.http.post(
        "/auth/mfa/totp", headers=bearer(token), json={"password": PASSWORD, "code": "000000"}
    )
    assert_problem(r, 401, "invalid_mfa_code")

    r = server.http.post(
        "/auth/mfa/totp", headers=bearer(token), json={"password": PASSWORD, "code": code}
    )
    assert r.status_code == 200, r.text
    new_secret = r.json()["secret"]
    assert new_secret != account.secret
    # Until the new one is confirmed, the old secret stays the active one.
    challenge = first_step(server, ADDRESS)
    r = second_step(server, challenge["mfa_token"], code=fresh_code(server, account.secret))
    assert r.status_code == 200, r.text

    r = server.http.post(
        "/auth/mfa/totp/confirm", headers=bearer(token), json={"code": code_at(server, new_secret)}
    )
    assert r.status_code == 200, r.text
    new_codes = r.json()["recovery_codes"]
    # Now only the new secret and the new recovery codes work.
    server.clock.advance(30)
    challenge = first_step(server, ADDRESS)
    r = second_step(server, challenge["mfa_token"], code=code_at(server, account.secret))
    assert_problem(r, 401, "invalid_mfa_code")
    r = second_step(server, challenge["mfa_token"], recovery_code=account.recovery_codes[0])
    assert_problem(r, 401, "invalid_mfa_code")
    r = second_step(server, challenge["mfa_token"], code=code_at(server, new_secret))
    assert r.status_code == 200, r.text
    assert me(server, r.json()["access_token"])["mfa"]["recovery_codes_left"] == len(new_codes)


def test_disabling_needs_the_password_and_a_current_code(server: Server) -> None:
    account = enrolled(server, ADDRESS)
    token = account.access_token
    code = fresh_code(server, account.secret)
    r = server.http.request("DELETE", "/auth/mfa/totp", headers=bearer(token))
    assert r.status_code in (400, 422), r.text
    r = server.http.request(
        "DELETE", "/auth/mfa/totp", headers=bearer(token), json={"password": PASSWORD}
    )
    assert r.status_code in (400, 422), r.text
    r = server.http.request(
        "DELETE",
        "/auth/mfa/totp",
        headers=bearer(token),
        json={"password": "wrong password!", "code": code},
    )
    assert_problem(r, 401, "invalid_credentials")
    r = server.http.request(
        "DELETE",
        "/auth/mfa/totp",
        headers=bearer(token),
        json={"password": PASSWORD, "code": "0000-not-a-code"},
    )
    assert_problem(r, 401, "invalid_mfa_code")
    assert me(server, token)["mfa"]["totp"] is True

    r = server.http.request(
        "DELETE",
        "/auth/mfa/totp",
        headers=bearer(token),
        json={"password": PASSWORD, "code": code},
    )
    assert r.status_code == 204, r.text
    assert me(server, token)["mfa"] == {"totp": False, "passkeys": 0, "recovery_codes_left": 0}
    assert "access_token" in server.login(ADDRESS)
    assert len(server.audit("totp_disabled")) == 1
    r = server.http.request(
        "DELETE",
        "/auth/mfa/totp",
        headers=bearer(token),
        json={"password": PASSWORD, "code": fresh_code(server, account.secret)},
    )
    assert_problem(r, 404, "mfa_not_enabled")


def test_a_user_who_lost_the_authenticator_disables_it_with_a_recovery_code(
    server: Server,
) -> None:
    """Lose the phone: sign in with a recovery code, then turn TOTP off (and on again)
    with the password and a recovery code in place of a current code."""
    account = enrolled(server, ADDRESS)
    token = account.access_token
    r = server.http.request(
        "DELETE",
        "/auth/mfa/totp",
        headers=bearer(token),
        json={"password": PASSWORD, "code": account.recovery_codes[0]},
    )
    assert r.status_code == 204, r.text
    assert me(server, token)["mfa"]["totp"] is False
    # The code it took is spent with the rest of the set.
    assert "access_token" in server.login(ADDRESS)


def test_regenerating_recovery_codes_kills_the_old_set(server: Server) -> None:
    account = enrolled(server, ADDRESS)
    # The registration's session did not log in with the second factor: it may not.
    r = server.http.post(
        "/auth/mfa/recovery-codes",
        headers=bearer(account.access_token),
        json={"password": PASSWORD, "code": fresh_code(server, account.secret)},
    )
    assert_problem(r, 401, "insufficient_user_authentication")
    assert 'error="insufficient_user_authentication"' in r.headers["www-authenticate"]
    token = mfa_login(server, account)["access_token"]
    r = server.http.post(
        "/auth/mfa/recovery-codes", headers=bearer(token), json={"password": PASSWORD}
    )
    assert r.status_code in (400, 422), r.text
    r = server.http.post(
        "/auth/mfa/recovery-codes",
        headers=bearer(token),
        json={"password": PASSWORD, "code": "123456"},
    )
    assert_problem(r, 401, "invalid_mfa_code")

    # Use one old code first, so that the count shows the new set.
    challenge = first_step(server, ADDRESS)
    r = second_step(server, challenge["mfa_token"], recovery_code=account.recovery_codes[0])
    assert r.status_code == 200, r.text
    assert me(server, token)["mfa"]["recovery_codes_left"] == 9

    r = server.http.post(
        "/auth/mfa/recovery-codes",
        headers=bearer(token),
        json={"password": PASSWORD, "code": fresh_code(server, account.secret)},
    )
    assert r.status_code == 200, r.text
    new_codes = r.json()["recovery_codes"]
    assert len(set(new_codes)) == 10
    assert not set(new_codes) & set(account.recovery_codes)
    assert me(server, token)["mfa"]["recovery_codes_left"] == 10

    challenge = first_step(server, ADDRESS)
    for old in account.recovery_codes[1:3]:
        r = second_step(server, challenge["mfa_token"], recovery_code=old)
        assert_problem(r, 401, "invalid_mfa_code")
    r = second_step(server, challenge["mfa_token"], recovery_code=new_codes[0])
    assert r.status_code == 200, r.text
    assert me(server, token)["mfa"]["recovery_codes_left"] == 9
    assert len(server.audit("recovery_codes_regenerated")) == 1


def test_enrolment_needs_a_verified_email_when_the_setting_is_on(tmp_path: Path) -> None:
    """An account registered before AUTHGATE_REQUIRE_VERIFIED_EMAIL was turned on keeps a
    live session; with the setting on, its unverified address cannot turn on TOTP."""
    key = new_master_key()
    with running_server(tmp_path, master_key=key) as before:
        tokens = before.register(ADDRESS)
    env = {"AUTHGATE_REQUIRE_VERIFIED_EMAIL": "true"}
    with running_server(tmp_path, env, master_key=key) as strict:
        token = tokens["access_token"]
        r = strict.http.post("/auth/mfa/totp", headers=bearer(token))
        assert_problem(r, 403, "email_not_verified")
        with strict.db() as db:
            rows = db.execute("SELECT count(*) FROM mfa_totp").fetchone()
        assert rows == (0,)
        # Once verified, the same session may enrol.
        user_id = tokens["user"]["id"]
        strict.call(strict.services.links.mark_verified(user_id, by="test"))
        r = strict.http.post("/auth/mfa/totp", headers=bearer(token))
        assert r.status_code == 200, r.text


def test_confirm_without_an_enrolment_is_refused(server: Server) -> None:
    token = server.register(ADDRESS)["access_token"]
    r = server.http.post("/auth/mfa/totp/confirm", headers=bearer(token), json={"code": "123456"})
    assert_problem(r, 404, "mfa_not_enabled")
    assert enrol(server, token)["secret"]
