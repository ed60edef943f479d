"""The account page over HTTP against a real server: every section behind the hosted
login; every form refused without its CSRF token (403, nothing changed); each action goes
through to what the JSON API sees (an ended session's access token fails at /auth/me);
the service's rules (a fresh login, the second factor) send the browser to the re-login;
HTML injection through user agents and names shows as text."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterator

import httpx
import pyotp
import pytest

from _support.http import PASSWORD, bearer, new_email
from api.server import LiveServer, running_server
from authgate.web._account import SECTIONS

from ._browser import browser, csrf_in, post_form, sign_in

NEW_PASSWORD = "a brand new passphrase 42"
MANY_MAILS = {"AUTHGATE_MAIL_IP_LIMIT": "1000000", "AUTHGATE_MAIL_LIMIT": "1000"}
SCRIPT_UA = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the module (each test uses its own accounts and cookie jars)."""
    with running_server(tmp_path_factory.mktemp("account"), MANY_MAILS) as live:
        yield live


def new_account(site: LiveServer, **extra: str) -> tuple[str, str]:
    """A new account through the JSON API: its address and an access token (one session)."""
    address = new_email()
    return address, site.register(address, **extra)["access_token"]


def signed_in(client: httpx.Client, address: str, password: str = PASSWORD) -> None:
    r = sign_in(client, address, password)
    assert r.status_code == 303, r.text
    assert client.get("/account").status_code == 200


def me(site: LiveServer, access: str) -> int:
    return site.http.get("/auth/me", headers=bearer(access)).status_code


def post(client: httpx.Client, path: str, data: dict[str, str], *, page: str) -> httpx.Response:
    """POST a form of ``page`` with the page's CSRF token."""
    return post_form(client, path, data, page=page)


def events(site: LiveServer, user_id: str) -> list[str]:
    return [r.event for r in site.call(site.services.storage.query_audit(user_id=user_id))]


def user_id(site: LiveServer, access: str) -> str:
    uid: str = site.http.get("/auth/me", headers=bearer(access)).json()["id"]
    return uid


# --- the sections ----------------------------------------------------------------------------


def test_every_section_needs_the_login_and_has_the_pages_headers(site: LiveServer) -> None:
    address, _ = new_account(site)
    with browser(site) as client:
        for section in SECTIONS.values():
            r = client.get(section.path)
            assert r.status_code == 303, section.path
            assert r.headers["location"].startswith("/login?next=%2Faccount")
        signed_in(client, address)
        for section in SECTIONS.values():
            r = client.get(section.path)
            assert r.status_code == 200, section.path
            assert r.headers["cache-control"] == "no-store"
            assert "unsafe-inline" not in r.headers["content-security-policy"]
            assert "img-src 'self' data:" in r.headers["content-security-policy"]
            assert "<script>" not in r.text
            assert "style=" not in r.text
            assert f'<a href="{section.path}" aria-current="page">' in r.text
            # Every field has a label, and each id is used once on the page.
            ids = re.findall(r'<input id="([^"]+)"', r.text)
            assert len(ids) == len(set(ids)), section.path
            for field_id in ids:
                assert f'<label for="{field_id}">' in r.text, (section.path, field_id)


def test_the_sections_autocomplete_tokens(site: LiveServer) -> None:
    address, _ = new_account(site)
    with browser(site) as client:
        signed_in(client, address)
        page = client.get("/account/password").text
        assert 'name="current_password" type="password" autocomplete="current-password"' in page
        assert 'name="new_password" type="password" autocomplete="new-password"' in page
        page = client.get("/account").text
        assert 'name="new_email" type="email" autocomplete="email"' in page
        r = post(client, "/account/totp", {}, page="/account/mfa")
        assert 'autocomplete="one-time-code"' in r.text


# --- CSRF: every form ------------------------------------------------------------------------

FORMS = [
    ("/account/verify-email", {}),
    ("/account/email", {"new_email": "x@example.com", "current_password": PASSWORD}),
    ("/account/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
    ("/account/sessions/end", {"sid": "SID"}),
    ("/account/sessions/end-others", {}),
    ("/account/totp", {}),
    ("/account/totp/confirm", {"code": "123456"}),
    ("/account/totp/disable", {"password": PASSWORD, "code": "123456"}),
    ("/account/recovery-codes", {"password": PASSWORD, "code": "123456"}),
    ("/account/passkeys", {"name": "k", "credential": "{}"}),
    ("/account/passkeys/pk_x/rename", {"name": "k"}),
    ("/account/passkeys/pk_x/delete", {"password": PASSWORD}),
    ("/account/apps/revoke", {"client_id": "CLIENT"}),
    ("/logout", {}),
]


def test_every_form_refuses_a_missing_or_wrong_csrf_token_and_changes_nothing(
    site: LiveServer,
) -> None:
    address, access = new_account(site)
    uid = user_id(site, access)
    client_record, _ = site.call(
        site.services.clients.create("Photos", ["openid"], redirect_uris=["https://rp.test/cb"])
    )
    site.call(site.services.oidc.grant_consent(uid, client_record.client_id, ["openid"]))
    sid = site.http.get("/auth/sessions", headers=bearer(access)).json()[0]["sid"]
    before = events(site, uid)
    with browser(site) as client:
        signed_in(client, address)
        token = csrf_in(client.get("/account").text)
        for path, data in FORMS:
            data = {
                k: v.replace("SID", sid).replace("CLIENT", client_record.client_id)
                for k, v in data.items()
            }
            assert client.post(path, data=data).status_code == 403, path
            wrong = client.post(path, data={**data, "csrf": token[:-2] + "xx"})
            assert wrong.status_code == 403, path
            assert "This form expired" in wrong.text
            # The right token from another site is refused too.
            foreign = client.post(
                path, data={**data, "csrf": token}, headers={"origin": "https://evil.test"}
            )
            assert foreign.status_code == 403, path
        r = client.post("/account/passkeys/options")
        assert r.status_code == 403
        r = client.post("/account/passkeys/options", headers={"x-csrf-token": "nope"})
        assert r.status_code == 403
        assert client.get("/account").status_code == 200  # still signed in
    # Nothing changed: the session lives, the password is the old one, no factor, the
    # consent stands, and not one event was written.
    assert me(site, access) == 200
    assert site.http.get("/auth/me", headers=bearer(access)).json()["mfa"]["totp"] is False
    assert [c["client_id"] for c in site.http.get("/auth/consents", headers=bearer(access)).json()]
    assert events(site, uid)[len(before) :] == ["login_ok", "web_login"]
    assert site.login(address)["access_token"]


# --- escaping ------------------------------------------------------------------------------


def test_a_script_user_agent_and_name_show_as_text(site: LiveServer) -> None:
    address, _ = new_account(site, name="<img src=x onerror=alert(2)>")
    r = site.http.post(
        "/auth/login",
        json={"email": address, "password": PASSWORD},
        headers={"user-agent": SCRIPT_UA},
    )
    assert r.status_code == 200
    with browser(site) as client:
        signed_in(client, address)
        page = client.get("/account/sessions").text
        profile = client.get("/account").text
    assert html.escape(SCRIPT_UA, quote=False) in page
    assert "<script>alert" not in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in profile
    assert "<img src=x" not in profile


# --- profile and email ---------------------------------------------------------------------


def test_resend_verification_and_change_the_email(site: LiveServer) -> None:
    address, access = new_account(site)
    uid = user_id(site, access)
    with browser(site) as client:
        signed_in(client, address)
        page = client.get("/account").text
        assert "Not yet" in page
        r = post(client, "/account/verify-email", {}, page="/account")
        assert r.status_code == 202  # the API's
        assert "A new verification link is on its way" in r.text
        new = new_email()
        r = post(
            client,
            "/account/email",
            {"new_email": new, "current_password": "wrong"},
            page="/account",
        )
        assert r.status_code == 401
        assert "The email address or the password is wrong." in r.text
        assert 'id="email-current_password" name="current_password"' in r.text
        assert 'aria-invalid="true"' in r.text
        r = post(
            client,
            "/account/email",
            {"new_email": new, "current_password": PASSWORD},
            page="/account",
        )
        assert r.status_code == 202
        assert "Check the mailbox of the new address" in r.text
    assert "email_change_requested" in events(site, uid)
    assert events(site, uid).count("verification_sent") == 2  # registration, then the resend


# --- password ------------------------------------------------------------------------------


def test_the_password_change_keeps_this_browser_and_ends_the_others(site: LiveServer) -> None:
    address, access = new_account(site)
    with browser(site) as client:
        signed_in(client, address)
        r = post(
            client,
            "/account/password",
            {"current_password": PASSWORD, "new_password": "password"},
            page="/account/password",
        )
        assert r.status_code == 400
        assert "too weak" in r.text
        assert me(site, access) == 200  # a refusal ends nothing
        r = post(
            client,
            "/account/password",
            {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
            page="/account/password",
        )
        assert r.status_code == 303
        assert r.headers["location"] == "/account/password?done=password"
        page = client.get(r.headers["location"]).text
        assert "Your password is changed." in page
        assert client.get("/account").status_code == 200  # this browser goes on
    assert me(site, access) == 401  # the API's session ended
    assert (
        site.http.post("/auth/login", json={"email": address, "password": NEW_PASSWORD}).status_code
        == 200
    )


# --- sessions ------------------------------------------------------------------------------


def test_end_one_session_then_all_others(site: LiveServer) -> None:
    address, first = new_account(site)
    second = site.login(address)["access_token"]
    with browser(site) as client:
        signed_in(client, address)
        page = client.get("/account/sessions").text
        assert page.count('class="card"') == 3
        assert "This browser" in page
        sids = {s["sid"]: s for s in site.http.get("/auth/sessions", headers=bearer(first)).json()}
        first_sid = next(sid for sid, s in sids.items() if s["current"])
        r = post(client, "/account/sessions/end", {"sid": first_sid}, page="/account/sessions")
        assert r.status_code == 303
        assert "The session has ended" in client.get(r.headers["location"]).text
        assert me(site, first) == 401
        assert me(site, second) == 200
        # A session that does not exist (or another user's): 404 in words.
        r = post(client, "/account/sessions/end", {"sid": "sid_nope"}, page="/account/sessions")
        assert r.status_code == 404
        assert "no longer exists" in r.text
        r = post(client, "/account/sessions/end-others", {}, page="/account/sessions")
        assert r.status_code == 303
        assert me(site, second) == 401
        page = client.get("/account/sessions").text
        assert page.count('class="card"') == 1
        assert "End all other sessions" not in page


def test_ending_this_browsers_session_signs_out(site: LiveServer) -> None:
    address, access = new_account(site)
    with browser(site) as client:
        signed_in(client, address)
        page = client.get("/account/sessions").text
        sids = re.findall(r'name="sid" value="([^"]+)"', page)
        listed = site.http.get("/auth/sessions", headers=bearer(access)).json()
        api_sid = next(s["sid"] for s in listed if s["current"])
        assert sids == [api_sid]  # this browser's own row has no end button
        all_sids = [
            s["sid"] for s in site.http.get("/auth/sessions", headers=bearer(access)).json()
        ]
        own = next(s for s in all_sids if s != api_sid)
        r = post(client, "/account/sessions/end", {"sid": own}, page="/account/sessions")
        assert r.status_code == 303
        assert r.headers["location"] == "/login"
        assert client.get("/account").status_code == 303
    assert me(site, access) == 200


def test_another_users_session_cannot_be_ended(site: LiveServer) -> None:
    address, _ = new_account(site)
    _, victim = new_account(site)
    victim_sid = site.http.get("/auth/sessions", headers=bearer(victim)).json()[0]["sid"]
    with browser(site) as client:
        signed_in(client, address)
        r = post(client, "/account/sessions/end", {"sid": victim_sid}, page="/account/sessions")
        assert r.status_code == 404
    assert me(site, victim) == 200


# --- two-step sign-in ----------------------------------------------------------------------


def secret_on(page: str) -> str:
    found = re.search(r'<code class="secret" id="totp-secret">([A-Z2-7 ]+)</code>', page)
    assert found is not None, page
    return found.group(1).replace(" ", "")


def enrol_totp(site: LiveServer, client: httpx.Client) -> tuple[pyotp.TOTP, list[str]]:
    r = post(client, "/account/totp", {}, page="/account/mfa")
    assert r.status_code == 200, r.text
    qr = re.search(r'<img class="qr" src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', r.text)
    assert qr is not None
    assert base64.b64decode(qr.group(1)).startswith(b'<svg xmlns="http://www.w3.org/2000/svg"')
    totp = pyotp.TOTP(secret_on(r.text))
    wrong = "000000" if totp.at(site.clock.now()) != "000000" else "111111"
    r = post(client, "/account/totp/confirm", {"code": wrong}, page="/account/mfa")
    assert r.status_code == 401
    assert "This code is wrong" in r.text
    assert "totp-secret" not in r.text  # the secret is not shown again
    r = post(client, "/account/totp/confirm", {"code": totp.at(site.clock.now())}, page="/account")
    assert r.status_code == 200
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", r.text)
    assert len(codes) == 10
    assert "shown only this once" in r.text
    return totp, codes


def reauth(client: httpx.Client, address: str) -> httpx.Response:
    """The re-login form (shown to a signed-in browser), back to the MFA section."""
    data = {"email": address, "password": PASSWORD, "next": "/account/mfa"}
    return post_form(client, "/login", data, page="/login?next=%2Faccount%2Fmfa&reauth=1")


def sign_in_with_totp(
    site: LiveServer, client: httpx.Client, address: str, totp: pyotp.TOTP
) -> None:
    site.clock.advance(30)  # each code works once
    r = reauth(client, address)
    assert r.headers["location"].startswith("/login/mfa")
    r = post_form(client, "/login/mfa", {"code": totp.at(site.clock.now()), "next": "/account/mfa"})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/account/mfa"


def test_totp_enrol_regenerate_codes_and_turn_off(site: LiveServer) -> None:
    address, access = new_account(site)
    with browser(site) as client:
        signed_in(client, address)
        totp, codes = enrol_totp(site, client)
        assert me(site, access) == 401  # turning a factor on ends the other sessions
        token = site.login(address)
        assert token.get("mfa_required") is True
        page = client.get("/account/mfa").text
        assert "10 of 10 left" in page
        # This browser signed in with the password only: the second factor is asked for.
        r = post(
            client,
            "/account/recovery-codes",
            {"password": PASSWORD, "code": codes[0]},
            page="/account/mfa",
        )
        assert r.status_code == 303
        assert r.headers["location"] == "/login?next=%2Faccount%2Fmfa&reauth=1"
        sign_in_with_totp(site, client, address, totp)
        r = post(
            client,
            "/account/recovery-codes",
            {"password": "wrong", "code": codes[0]},
            page="/account/mfa",
        )
        assert r.status_code == 401
        assert 'id="codes-password"' in r.text
        assert 'aria-invalid="true"' in r.text
        r = post(
            client,
            "/account/recovery-codes",
            {"password": PASSWORD, "code": codes[0]},
            page="/account/mfa",
        )
        assert r.status_code == 200
        new_codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", r.text)
        assert len(new_codes) == 10
        assert not set(new_codes) & set(codes)
        site.clock.advance(30)
        r = post(
            client,
            "/account/totp/disable",
            {"password": PASSWORD, "code": totp.at(site.clock.now())},
            page="/account/mfa",
        )
        assert r.status_code == 303
        assert "authenticator app is off" in client.get(r.headers["location"]).text
    assert "access_token" in site.login(address)  # no second step any more


def test_a_stale_login_is_sent_to_sign_in_again(site: LiveServer) -> None:
    address, _ = new_account(site)
    with browser(site) as client:
        signed_in(client, address)
        site.clock.advance(11 * 60)  # past the ten minutes of a fresh login
        r = post(client, "/account/totp", {}, page="/account/mfa")
        assert r.status_code == 303
        assert r.headers["location"] == "/login?next=%2Faccount%2Fmfa&reauth=1"
        r = client.post(
            "/account/passkeys/options",
            headers={"x-csrf-token": csrf_in(client.get("/account/mfa").text)},
        )
        assert r.status_code == 401
        assert r.json()["code"] == "insufficient_user_authentication"
        r = post(client, "/account/passkeys", {"credential": ""}, page="/account/mfa")
        assert r.headers["location"] == "/login?next=%2Faccount%2Fmfa&reauth=1"
        # The re-login page asks even though the browser is signed in; then back.
        assert client.get(r.headers["location"]).status_code == 200
        r = reauth(client, address)
        assert r.headers["location"] == "/account/mfa"
        r = post(client, "/account/totp", {}, page="/account/mfa")
        assert r.status_code == 200
        assert "totp-secret" in r.text


def test_passkey_options_rename_and_delete_refusals(site: LiveServer) -> None:
    address, _ = new_account(site)
    with browser(site) as client:
        signed_in(client, address)
        page = client.get("/account/mfa").text
        r = client.post("/account/passkeys/options", headers={"x-csrf-token": csrf_in(page)})
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-store"
        options = r.json()
        assert options["challenge"]
        assert options["rp"]["id"]
        r = post(client, "/account/passkeys", {"credential": ""}, page="/account/mfa")
        assert r.status_code == 400
        assert "The passkey was not added" in r.text
        r = post(client, "/account/passkeys", {"credential": "{not json"}, page="/account/mfa")
        assert r.status_code == 400
        r = post(client, "/account/passkeys/pk_nope/rename", {"name": "x"}, page="/account/mfa")
        assert r.status_code == 404
        r = post(
            client, "/account/passkeys/pk_nope/delete", {"password": PASSWORD}, page="/account/mfa"
        )
        assert r.status_code == 404


# --- connected apps and activity ---------------------------------------------------------


def test_connected_apps_are_listed_and_revoked(site: LiveServer) -> None:
    address, access = new_account(site)
    uid = user_id(site, access)
    record, _ = site.call(
        site.services.clients.create(
            "<b>Photos</b>", ["openid", "email"], redirect_uris=["https://rp.test/cb"]
        )
    )
    site.call(site.services.oidc.grant_consent(uid, record.client_id, ["openid", "email"]))
    with browser(site) as client:
        signed_in(client, address)
        page = client.get("/account/apps").text
        assert "&lt;b&gt;Photos&lt;/b&gt;" in page
        assert "email, openid" in page
        r = post(
            client, "/account/apps/revoke", {"client_id": record.client_id}, page="/account/apps"
        )
        assert r.status_code == 303
        page = client.get(r.headers["location"]).text
        assert "access is taken back" in page
        assert "No app has access" in page
        r = post(client, "/account/apps/revoke", {"client_id": record.client_id}, page="/account")
        assert r.status_code == 404
    assert site.http.get("/auth/consents", headers=bearer(access)).json() == []


def test_recent_security_events_in_words(site: LiveServer) -> None:
    address, _ = new_account(site)
    with browser(site) as client:
        assert sign_in(client, address, "wrong").status_code == 401
        signed_in(client, address)
        post(
            client,
            "/account/password",
            {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
            page="/account/password",
        )
        page = client.get("/account/activity").text
    items = re.findall(r'<span class="event">([^<]+)</span>', page)
    assert items[:3] == ["Sessions were ended", "Password changed", "Signed in on the web"]
    assert "Failed sign-in: wrong password" in items
    assert "Account created" in items
    assert "from 127.0.0.1" in page
