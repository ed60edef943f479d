"""The hosted pages over HTTP against a real server: every refusal (CSRF, open redirects,
ended logins, the throttle), the cookie's attributes, session fixation, escaping, and the
security headers of every page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from _support.http import PASSWORD, bearer, new_email
from api.server import LiveServer, running_server

from ._browser import browser, csrf_in, login_cookie, post_form, sign_in

MANY_MAILS = {"AUTHGATE_MAIL_IP_LIMIT": "1000000", "AUTHGATE_MAIL_LIMIT": "1000"}
PAGES = ["/login", "/register", "/forgot-password", "/logout", "/reset-password?token=x"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the module (each test uses its own accounts and cookie jars)."""
    with running_server(tmp_path_factory.mktemp("web"), MANY_MAILS) as live:
        yield live


def account(site: LiveServer, name: str | None = None) -> str:
    """A new account through the JSON API; its address."""
    address = new_email()
    site.register(address, **({"name": name} if name else {}))
    return address


def signed_in(site: LiveServer, client: httpx.Client, address: str) -> httpx.Response:
    r = sign_in(client, address)
    assert r.status_code == 303, r.text
    assert client.get("/account").status_code == 200
    return r


def test_every_page_carries_the_security_headers(site: LiveServer) -> None:
    with browser(site) as client:
        for path in PAGES:
            r = client.get(path)
            assert r.status_code == 200, path
            csp = r.headers["content-security-policy"]
            for directive in (
                "default-src 'none'",
                "script-src 'self'",
                "style-src 'self'",
                "form-action 'self'",
                "frame-ancestors 'none'",
                "base-uri 'none'",
            ):
                assert directive in csp, (path, directive)
            assert "unsafe-inline" not in csp
            assert r.headers["x-frame-options"] == "DENY"
            # A mailed link's page (its token in the URL) sends no Referer at all.
            expected = "no-referrer" if "token=" in path else "same-origin"
            assert r.headers["referrer-policy"] == expected
            assert r.headers["cache-control"] == "no-store"
            assert r.headers["x-content-type-options"] == "nosniff"
            assert "<script>" not in r.text
            assert "style=" not in r.text
            assert '<html lang="en">' in r.text
            assert "<main>" in r.text
            assert "<title>" in r.text


def test_the_pages_stay_out_of_the_openapi_document(site: LiveServer) -> None:
    paths = site.http.get("/openapi.json").json()["paths"]
    assert not {"/login", "/login/mfa", "/register", "/logout", "/account"} & set(paths)


def test_static_files_are_versioned_and_cached(site: LiveServer) -> None:
    page = site.http.get("/login").text
    href = re.search(r'href="(/static/authgate\.css\?v=[0-9a-f]+)"', page)
    assert href is not None
    r = site.http.get(href.group(1))
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert r.headers["content-type"].startswith("text/css")
    assert site.http.get("/static/authgate.css?v=old").headers["cache-control"] == "no-cache"
    assert site.http.get("/static/..%2Fsettings.py").status_code == 404


def test_login_opens_a_session_and_the_cookie_is_httponly_lax(site: LiveServer) -> None:
    address = account(site)
    with browser(site) as client:
        r = signed_in(site, client, address)
        assert r.headers["location"] == "/account"
        cookie = login_cookie(r)
        assert len(cookie["value"]) == 43
        assert cookie["httponly"] is True
        assert cookie["samesite"].lower() == "lax"
        assert cookie["path"] == "/"
        assert "domain" not in cookie
        assert "secure" not in cookie  # a plain-http public URL (development)
        assert address in client.get("/account").text
    with site.db() as db:
        stored = db.execute("SELECT digest FROM web_logins").fetchall()
    assert all(row[0] != cookie["value"] for row in stored)  # only digests are stored


def test_https_public_url_makes_the_cookies_host_prefixed_and_secure(tmp_path: Path) -> None:
    env = {"AUTHGATE_PUBLIC_URL": "https://auth.example.com", **MANY_MAILS}
    with running_server(tmp_path, env) as live:
        address = new_email()
        live.register(address)
        with browser(live) as client:
            first = client.get("/login")
            csrf_cookie = login_cookie(first, "__Host-authgate_csrf")
            assert csrf_cookie["secure"] is True
            # httpx keeps a Secure cookie off plain http: send it by hand.
            token = csrf_in(first.text)
            client.cookies.set("__Host-authgate_csrf", csrf_cookie["value"])
            r = client.post("/login", data={"csrf": token, "email": address, "password": PASSWORD})
        assert r.status_code == 303
        cookie = login_cookie(r, "__Host-authgate_login")
        assert cookie["secure"] is True
        assert cookie["httponly"] is True
        assert cookie["path"] == "/"
        assert "domain" not in cookie


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/login", {"email": "x@example.com", "password": PASSWORD}),
        ("/login/mfa", {"code": "123456"}),
        ("/login/passkey", {"credential": "{}"}),
        ("/register", {"email": "csrf@example.com", "password": PASSWORD}),
        ("/forgot-password", {"email": "x@example.com"}),
        ("/logout", {}),
        ("/reset-password", {"email": "x@example.com"}),
    ],
)
@pytest.mark.parametrize("token", ["missing", "wrong", "other_browser", "no_cookie"])
def test_a_form_without_its_csrf_token_is_refused(
    site: LiveServer, path: str, fields: dict[str, str], token: str
) -> None:
    address = account(site)
    with browser(site) as client, browser(site) as other:
        signed_in(site, client, address)
        data = dict(fields)
        if path == "/login":
            data["email"] = address
        if token == "wrong":
            data["csrf"] = "A" * 43
        elif token == "other_browser":
            data["csrf"] = csrf_in(other.get("/login").text)
        elif token == "no_cookie":
            data["csrf"] = csrf_in(client.get("/forgot-password").text)
            client.cookies.delete("authgate_csrf")
        before = len(site.http.get("/openapi.json").text)  # the server is up
        r = client.post(path, data=data)
        assert r.status_code == 403, r.text
        assert "csrf_failed" in r.text
        assert 'role="alert"' in r.text
        assert "set-cookie" not in {k.lower() for k in r.headers if k.lower() != "set-cookie"}
        assert login_cookie_absent(r)
        # Nothing changed: still signed in, no account made.
        assert client.get("/account").status_code == 200
        assert before
    with site.db() as db:
        assert db.execute("SELECT 1 FROM users WHERE email = 'csrf@example.com'").fetchone() is None


def login_cookie_absent(response: httpx.Response) -> bool:
    return all(not h.startswith("authgate_login=") for h in response.headers.get_list("set-cookie"))


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_a_cross_site_post_is_refused_even_with_the_token(
    site: LiveServer, headers: dict[str, str]
) -> None:
    address = account(site)
    with browser(site) as client:
        token = csrf_in(client.get("/login").text)
        r = client.post(
            "/login",
            data={"csrf": token, "email": address, "password": PASSWORD},
            headers=headers,
        )
    assert r.status_code == 403
    assert "csrf_failed" in r.text
    assert login_cookie_absent(r)


def test_a_same_origin_post_passes(site: LiveServer) -> None:
    address = account(site)
    with browser(site) as client:
        token = csrf_in(client.get("/login").text)
        r = client.post(
            "/login",
            data={"csrf": token, "email": address, "password": PASSWORD},
            headers={"Origin": site.url, "Sec-Fetch-Site": "same-origin"},
        )
    assert r.status_code == 303


@pytest.mark.parametrize(
    "bad",
    [
        "//evil.example/x",
        "/\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "/%0d%0aSet-Cookie:x=1",
        "/ok\r\nx",
        "http:/evil",
        "",
    ],
)
def test_next_never_leaves_the_site(site: LiveServer, bad: str) -> None:
    address = account(site)
    with browser(site) as client:
        page = client.get("/login", params={"next": bad}).text
        r = client.post(
            "/login",
            data={"csrf": csrf_in(page), "email": address, "password": PASSWORD, "next": bad},
        )
        assert r.status_code == 303
        location = r.headers["location"]
        assert location in ("/account", bad)
        assert location.startswith("/")
        assert not location.startswith("//")
        assert "\\" not in location
        if bad != "/%0d%0aSet-Cookie:x=1":
            assert location == "/account"


def test_a_safe_next_is_followed(site: LiveServer) -> None:
    address = account(site)
    with browser(site) as client:
        r = client.get("/account")
        assert r.status_code == 303
        assert r.headers["location"] == "/login?next=%2Faccount"
        r = sign_in(client, address, next="/account?tab=x")
        assert r.headers["location"] == "/account?tab=x"


def test_each_login_gets_a_new_cookie_value(site: LiveServer) -> None:
    address = account(site)
    with browser(site) as client:
        planted = "P" * 43  # a value an attacker set before the login
        client.cookies.set("authgate_login", planted)
        first = login_cookie(sign_in(client, address))["value"]
        again = {"email": address, "password": PASSWORD}
        second = login_cookie(post_form(client, "/login", again, page="/forgot-password"))["value"]
        assert len({planted, first, second}) == 3
    with browser(site) as attacker:
        attacker.cookies.set("authgate_login", planted)
        assert attacker.get("/account").status_code == 303


def test_wrong_password_is_401_in_words_and_keeps_the_email(site: LiveServer) -> None:
    with browser(site) as client:
        r = sign_in(client, '"><b>x@example.com', password="nope")
    assert r.status_code == 401
    assert "The email address or the password is wrong." in r.text
    assert 'value="&#34;&gt;&lt;b&gt;x@example.com"' in r.text
    assert "<b>x" not in r.text
    assert 'aria-describedby="form-error"' in r.text
    assert login_cookie_absent(r)


def test_the_throttle_lock_is_a_429_page(site: LiveServer) -> None:
    address = account(site)
    with browser(site) as client:
        statuses = [sign_in(client, address, password="wrong").status_code for _ in range(10)]
        r = sign_in(client, address)  # the right password is refused too while locked
    assert statuses[0] == 401
    assert r.status_code == 429
    assert "Too many attempts" in r.text
    assert int(r.headers["retry-after"]) > 0
    assert login_cookie_absent(r)


def test_the_verified_email_rule_is_the_apis(tmp_path: Path) -> None:
    env = {"AUTHGATE_REQUIRE_VERIFIED_EMAIL": "true", **MANY_MAILS}
    with running_server(tmp_path, env) as live, browser(live) as client:
        address = new_email()
        r = post_form(client, "/register", {"email": address, "password": PASSWORD})
        assert r.status_code == 202
        assert "Check your mailbox" in r.text
        assert login_cookie_absent(r)
        r = sign_in(client, address)
        assert r.status_code == 403
        assert "Confirm your email address first" in r.text


def test_enumeration_safe_registration_answers_alike(tmp_path: Path) -> None:
    env = {
        "AUTHGATE_REQUIRE_VERIFIED_EMAIL": "true",
        "AUTHGATE_ENUMERATION_SAFE_REGISTRATION": "true",
        **MANY_MAILS,
    }
    with running_server(tmp_path, env) as live, browser(live) as client:
        taken = new_email()
        live.call(live.services.accounts.create_user(taken, PASSWORD))
        answers = [
            post_form(client, "/register", {"email": address, "password": PASSWORD})
            for address in (taken, new_email())
        ]
        assert [a.status_code for a in answers] == [202, 202]
        assert answers[0].text == answers[1].text
        assert "Check your mailbox" in answers[0].text


def test_register_signs_in_and_shows_the_name_as_text(site: LiveServer) -> None:
    address = new_email()
    name = "<script>alert(1)</script>&amp;"
    with browser(site) as client:
        r = post_form(client, "/register", {"name": name, "email": address, "password": PASSWORD})
        assert r.status_code == 303, r.text
        page = client.get("/account").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;amp;" in page
    assert "<script>alert" not in page


def test_register_refusals_in_words(site: LiveServer) -> None:
    taken = account(site)
    with browser(site) as client:
        r = post_form(client, "/register", {"email": taken, "password": PASSWORD})
        assert r.status_code == 409
        assert "exists already" in r.text
        assert f'value="{taken}"' in r.text
        r = post_form(client, "/register", {"email": new_email(), "password": "password"})
        assert r.status_code == 400
        assert "too weak" in r.text


def test_forgot_password_answers_alike_for_any_address(site: LiveServer) -> None:
    known = account(site)
    with browser(site) as client:
        answers = [
            post_form(client, "/forgot-password", {"email": a}) for a in (known, new_email())
        ]
    assert [a.status_code for a in answers] == [202, 202]
    assert all("If an account has this address" in a.text for a in answers)


def _ended_by(site: LiveServer, how: str, address: str, client: httpx.Client) -> None:
    tokens = site.login(address)
    if how == "logout_all":
        r = site.http.post("/auth/logout-all", headers=bearer(tokens["access_token"]))
        assert r.status_code == 204
    elif how == "password_change":
        r = site.http.post(
            "/auth/password",
            json={"current_password": PASSWORD, "new_password": "another good passphrase 7"},
            headers=bearer(tokens["access_token"]),
        )
        assert r.status_code == 204
    elif how == "admin_disable":
        admin = site.make_admin(new_email("admin"))
        user_id = site.http.get("/auth/me", headers=bearer(tokens["access_token"])).json()["id"]
        r = site.http.patch(
            f"/admin/users/{user_id}", json={"disabled": True}, headers=bearer(admin)
        )
        assert r.status_code == 200, r.text
    elif how == "admin_revoke":
        admin = site.make_admin(new_email("admin"))
        with site.db() as db:
            (sid,) = db.execute(
                "SELECT w.sid FROM web_logins w JOIN users u ON u.id = w.user_id WHERE u.email = ?",
                (address,),
            ).fetchone()
        r = site.http.delete(f"/admin/sessions/{sid}", headers=bearer(admin))
        assert r.status_code == 204, r.text
    elif how == "logout":
        r = post_form(client, "/logout", {}, page="/logout")
        assert r.status_code == 200
        assert "You are signed out." in r.text
        cleared = [h for h in r.headers.get_list("set-cookie") if h.startswith("authgate_login=")]
        assert cleared
        assert "max-age=0" in cleared[0].lower()
    else:
        raise AssertionError(how)


@pytest.mark.parametrize(
    "how", ["logout", "logout_all", "password_change", "admin_disable", "admin_revoke"]
)
def test_a_login_ended_anywhere_is_refused_at_the_next_page(site: LiveServer, how: str) -> None:
    address = account(site)
    with browser(site) as client:
        cookie = login_cookie(signed_in(site, client, address))["value"]
        _ended_by(site, how, address, client)
        client.cookies.set("authgate_login", cookie)  # even if the browser kept it
        r = client.get("/account")
        assert r.status_code == 303
        assert r.headers["location"].startswith("/login")


def test_logout_ends_the_session_through_the_feed(site: LiveServer) -> None:
    address = account(site)
    with browser(site) as client:
        signed_in(site, client, address)
        with site.db() as db:
            (sid,) = db.execute(
                "SELECT w.sid FROM web_logins w JOIN users u ON u.id = w.user_id WHERE u.email = ?",
                (address,),
            ).fetchone()
        r = post_form(client, "/logout", {}, page="/logout")
        assert r.status_code == 200
    feed = site.call(site.services.revocations.wait(None, timeout=0))
    assert any(e.kind == "sid" and e.value == sid for e in feed.events)
    with site.db() as db:
        assert db.execute("SELECT revoked_at FROM sessions WHERE sid = ?", (sid,)).fetchone()[0]


def test_logout_page_asks_first(site: LiveServer) -> None:
    address = account(site)
    with browser(site) as client:
        signed_in(site, client, address)
        page = client.get("/logout").text
        assert address in page
        assert '<button type="submit">Sign out</button>' in page
        assert client.get("/account").status_code == 200  # the GET changed nothing


def test_a_signed_in_browser_skips_the_login_form(site: LiveServer) -> None:
    address = account(site)
    with browser(site) as client:
        signed_in(site, client, address)
        r = client.get("/login", params={"next": "/logout"})
        assert r.status_code == 303
        assert r.headers["location"] == "/logout"


def test_forms_use_the_standard_autocomplete_tokens(site: LiveServer) -> None:
    login = site.http.get("/login").text
    assert 'autocomplete="username"' in login
    assert 'autocomplete="current-password"' in login
    assert 'autocomplete="new-password"' in site.http.get("/register").text
    for page in (login, site.http.get("/register").text, site.http.get("/forgot-password").text):
        for field_id in re.findall(r'<input id="([^"]+)"', page):
            assert f'<label for="{field_id}">' in page, field_id
        assert '<button type="submit"' in page
