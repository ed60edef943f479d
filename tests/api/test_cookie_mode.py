"""The cookie mode of /auth/login, /auth/refresh and /auth/logout (browser sessions for
first-party single-page apps), against a real server: the cookies' attributes, the CSRF
proof of a refresh and a logout, rotation and reuse through the cookie, and the default
JSON mode unchanged."""

from __future__ import annotations

from http.cookies import SimpleCookie
from typing import Any

import httpx
import pytest

from _support.http import PASSWORD, assert_problem, bearer, new_email
from _support.tokens import claims_of
from authgate.errors import ConfigurationError
from authgate.settings import Settings

from .conftest import ServerFactory
from .server import LiveServer, base_env

COOKIE = {"Authgate-Token-Delivery": "cookie"}
ON = {"AUTHGATE_COOKIE_MODE": "on"}


def post(live: LiveServer, path: str, *, jar: dict[str, str] | None = None, **kw: Any) -> Any:
    """A POST with exactly the cookies of ``jar`` (no client-side cookie store)."""
    headers = dict(kw.pop("headers", {}))
    if jar:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
    return httpx.post(f"{live.url}{path}", headers=headers, timeout=30, **kw)


def set_cookies(response: httpx.Response) -> dict[str, Any]:
    """The response's Set-Cookie headers, by name (their attributes as Morsels)."""
    out: dict[str, Any] = {}
    for header in response.headers.get_list("set-cookie"):
        parsed: SimpleCookie = SimpleCookie()
        parsed.load(header)
        for name, morsel in parsed.items():
            out[name] = morsel
    return out


def cookie_login(live: LiveServer, email: str) -> tuple[httpx.Response, dict[str, str]]:
    r = post(live, "/auth/login", json={"email": email, "password": PASSWORD}, headers=COOKIE)
    assert r.status_code == 200, r.text
    return r, {name: m.value for name, m in set_cookies(r).items()}


def cookie_refresh(live: LiveServer, jar: dict[str, str], **headers: str) -> Any:
    return post(live, "/auth/refresh", jar=jar, headers={**COOKIE, **headers})


def proof(jar: dict[str, str]) -> dict[str, str]:
    return {"X-CSRF-Token": jar["authgate_csrf_token"]}


def family_rows(live: LiveServer, sid: str) -> int:
    with live.db() as db:
        (count,) = db.execute(
            "SELECT count(*) FROM refresh_tokens WHERE sid = ?", (sid,)
        ).fetchone()
    return int(count)


@pytest.fixture
def cookie_server(make_server: ServerFactory) -> LiveServer:
    return make_server(ON)


def test_login_sets_the_refresh_cookie_and_keeps_it_out_of_the_body(
    cookie_server: LiveServer,
) -> None:
    email = new_email()
    cookie_server.register(email)
    r, _ = cookie_login(cookie_server, email)
    body = r.json()
    assert "refresh_token" not in body
    assert body["token_type"] == "Bearer"
    assert body["access_token"]
    assert r.headers["cache-control"] == "no-store"
    cookies = set_cookies(r)
    refresh = cookies["authgate_refresh"]
    assert refresh.value.startswith("rt_")
    assert refresh["httponly"] is True
    assert refresh["samesite"] == "strict"
    assert refresh["path"] == "/auth"
    assert int(refresh["max-age"]) == body["refresh_expires_in"] == 14 * 86400
    assert not refresh["domain"]
    # Plain http on loopback (development): not Secure, so the name carries no prefix.
    assert not refresh["secure"]
    csrf = cookies["authgate_csrf_token"]
    assert csrf.value == body["csrf_token"]
    assert not csrf["httponly"]  # the page's script reads it
    assert csrf["samesite"] == "strict"
    assert csrf["path"] == "/"
    assert "authgate_access" not in cookies  # only with AUTHGATE_ACCESS_COOKIE


def test_https_cookies_are_secure_and_prefixed(make_server: ServerFactory) -> None:
    live = make_server(
        {**ON, "AUTHGATE_ISSUER": "https://auth.example.com", "AUTHGATE_ALLOWED_HOSTS": "127.0.0.1"}
    )
    email = new_email()
    live.register(email)
    r = post(live, "/auth/login", json={"email": email, "password": PASSWORD}, headers=COOKIE)
    assert r.status_code == 200, r.text
    cookies = set_cookies(r)
    assert set(cookies) == {"__Secure-authgate_refresh", "__Host-authgate_csrf_token"}
    assert cookies["__Secure-authgate_refresh"]["secure"] is True
    assert cookies["__Secure-authgate_refresh"]["path"] == "/auth"
    assert cookies["__Host-authgate_csrf_token"]["secure"] is True
    assert cookies["__Host-authgate_csrf_token"]["path"] == "/"


def test_the_access_cookie_when_configured(make_server: ServerFactory) -> None:
    live = make_server({**ON, "AUTHGATE_ACCESS_COOKIE": "on"})
    email = new_email()
    live.register(email)
    r, jar = cookie_login(live, email)
    assert "access_token" not in r.json()
    access = set_cookies(r)["authgate_access"]
    assert access["httponly"] is True
    assert access["samesite"] == "strict"
    assert access["path"] == "/"
    assert int(access["max-age"]) == r.json()["expires_in"]
    assert claims_of(jar["authgate_access"])["sub"]


def test_refresh_with_the_cookie_and_the_proof_rotates(cookie_server: LiveServer) -> None:
    email = new_email()
    cookie_server.register(email)
    _, jar = cookie_login(cookie_server, email)
    cookie_server.clock.advance(30)
    r = cookie_refresh(cookie_server, jar, **proof(jar), Origin=cookie_server.url)
    assert r.status_code == 200, r.text
    new = {name: m.value for name, m in set_cookies(r).items()}
    assert new["authgate_refresh"] != jar["authgate_refresh"]
    assert new["authgate_csrf_token"] == r.json()["csrf_token"] != jar["authgate_csrf_token"]
    assert "refresh_token" not in r.json()
    me = cookie_server.http.get("/auth/me", headers=bearer(r.json()["access_token"]))
    assert me.status_code == 200
    # And again with the new cookie and its proof.
    cookie_server.clock.advance(30)
    again = cookie_refresh(cookie_server, new, **proof(new))
    assert again.status_code == 200, again.text


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-proof"),
        pytest.param({"X-CSRF-Token": "A" * 43}, id="wrong-proof"),
        pytest.param({"X-CSRF-Token": ""}, id="empty-proof"),
        pytest.param({"Origin": "https://evil.example"}, id="cross-site-origin"),
        pytest.param({"Sec-Fetch-Site": "cross-site"}, id="cross-site-fetch"),
        pytest.param({"Origin": "null"}, id="opaque-origin"),
    ],
)
def test_refresh_without_the_proof_is_refused_and_rotates_nothing(
    cookie_server: LiveServer, headers: dict[str, str]
) -> None:
    email = new_email()
    cookie_server.register(email)
    r, jar = cookie_login(cookie_server, email)
    sid = claims_of(r.json()["access_token"])["sid"]
    rows = family_rows(cookie_server, sid)
    sent = dict(headers)
    if "X-CSRF-Token" not in sent and ("Origin" in sent or "Sec-Fetch-Site" in sent):
        sent.update(proof(jar))  # the right proof, from the wrong place
    refused = cookie_refresh(cookie_server, jar, **sent)
    assert_problem(refused, 403, "csrf_failed")
    assert not set_cookies(refused)  # nothing cleared, nothing set
    assert family_rows(cookie_server, sid) == rows
    # The cookie still works, with the proof.
    ok = cookie_refresh(cookie_server, jar, **proof(jar))
    assert ok.status_code == 200, ok.text


def test_the_proof_of_another_session_is_refused(cookie_server: LiveServer) -> None:
    email = new_email()
    cookie_server.register(email)
    _, mine = cookie_login(cookie_server, email)
    _, other = cookie_login(cookie_server, email)
    assert_problem(cookie_refresh(cookie_server, mine, **proof(other)), 403, "csrf_failed")


def test_reuse_of_a_rotated_cookie_revokes_the_family(cookie_server: LiveServer) -> None:
    email = new_email()
    cookie_server.register(email)
    _, old = cookie_login(cookie_server, email)
    r = cookie_refresh(cookie_server, old, **proof(old))
    assert r.status_code == 200, r.text
    new = {name: m.value for name, m in set_cookies(r).items()}
    access = r.json()["access_token"]
    cookie_server.clock.advance(60)  # past the grace window
    reused = cookie_refresh(cookie_server, old, **proof(old))
    assert_problem(reused, 401, "invalid_grant")
    cleared = set_cookies(reused)
    assert cleared["authgate_refresh"].value == ""
    assert int(cleared["authgate_refresh"]["max-age"]) == 0
    assert_problem(cookie_refresh(cookie_server, new, **proof(new)), 401, "invalid_grant")
    assert cookie_server.http.get("/auth/me", headers=bearer(access)).status_code == 401


def test_within_the_grace_window_the_predecessor_gets_the_same_cookie(
    cookie_server: LiveServer,
) -> None:
    email = new_email()
    cookie_server.register(email)
    _, old = cookie_login(cookie_server, email)
    first = cookie_refresh(cookie_server, old, **proof(old))
    second = cookie_refresh(cookie_server, old, **proof(old))  # a second tab, at once
    assert first.status_code == second.status_code == 200, second.text
    assert set_cookies(first)["authgate_refresh"].value == (
        set_cookies(second)["authgate_refresh"].value
    )


def test_logout_with_the_cookie_and_the_proof_ends_and_clears(cookie_server: LiveServer) -> None:
    email = new_email()
    cookie_server.register(email)
    r, jar = cookie_login(cookie_server, email)
    access = r.json()["access_token"]
    assert_problem(post(cookie_server, "/auth/logout", jar=jar, headers=COOKIE), 403, "csrf_failed")
    assert cookie_server.http.get("/auth/me", headers=bearer(access)).status_code == 200
    out = post(cookie_server, "/auth/logout", jar=jar, headers={**COOKIE, **proof(jar)})
    assert out.status_code == 204, out.text
    cleared = set_cookies(out)
    for name in ("authgate_refresh", "authgate_csrf_token", "authgate_access"):
        assert cleared[name].value == ""
        assert int(cleared[name]["max-age"]) == 0
    assert cleared["authgate_refresh"]["path"] == "/auth"
    assert_problem(cookie_refresh(cookie_server, jar, **proof(jar)), 401, "invalid_grant")
    assert cookie_server.http.get("/auth/me", headers=bearer(access)).status_code == 401


def test_logout_with_a_bearer_in_cookie_mode_ends_and_clears(cookie_server: LiveServer) -> None:
    email = new_email()
    cookie_server.register(email)
    r, jar = cookie_login(cookie_server, email)
    access = r.json()["access_token"]
    out = post(cookie_server, "/auth/logout", jar=jar, headers={**COOKIE, **bearer(access)})
    assert out.status_code == 204
    assert set_cookies(out)["authgate_refresh"].value == ""
    assert_problem(cookie_refresh(cookie_server, jar, **proof(jar)), 401, "invalid_grant")


def test_logout_without_a_bearer_or_a_cookie_is_401(cookie_server: LiveServer) -> None:
    r = post(cookie_server, "/auth/logout", headers=COOKIE)
    assert_problem(r, 401, "authentication_required")


def test_cookie_mode_off_refuses_cookie_delivery(server: LiveServer) -> None:
    email = new_email()
    server.register(email)
    for path, kw in (
        ("/auth/login", {"json": {"email": email, "password": PASSWORD}}),
        ("/auth/refresh", {}),
        ("/auth/logout", {}),
    ):
        r = post(server, path, headers=COOKIE, **kw)
        assert_problem(r, 400, "cookie_mode_off")
        assert not set_cookies(r)


def test_the_default_json_mode_is_unchanged(cookie_server: LiveServer) -> None:
    email = new_email()
    cookie_server.register(email)
    body = cookie_server.login(email)
    assert set(body) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "refresh_expires_in",
        "scope",
    }
    r = post(cookie_server, "/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert r.status_code == 200
    assert "refresh_token" in r.json()
    assert not set_cookies(r)
    explicit = post(
        cookie_server,
        "/auth/refresh",
        json={"refresh_token": r.json()["refresh_token"]},
        headers={"Authgate-Token-Delivery": "body"},
    )
    assert explicit.status_code == 200
    assert "refresh_token" in explicit.json()
    # A refresh cookie alone is not read in the JSON mode.
    _, jar = cookie_login(cookie_server, email)
    assert_problem(post(cookie_server, "/auth/refresh", jar=jar), 400, "invalid_request")


def test_cookie_mode_takes_no_refresh_token_in_the_body(cookie_server: LiveServer) -> None:
    email = new_email()
    cookie_server.register(email)
    tokens = cookie_server.login(email)
    r = post(
        cookie_server,
        "/auth/refresh",
        json={"refresh_token": tokens["refresh_token"]},
        headers=COOKIE,
    )
    assert_problem(r, 400, "invalid_request")


def test_cors_allows_credentials_and_the_headers_in_cookie_mode(
    make_server: ServerFactory,
) -> None:
    app = "http://localhost:5173"
    live = make_server({**ON, "AUTHGATE_CORS_ORIGINS": app})
    r = httpx.options(
        f"{live.url}/auth/refresh",
        headers={
            "Origin": app,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authgate-token-delivery, x-csrf-token",
        },
    )
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-credentials"] == "true"
    allowed = r.headers["access-control-allow-headers"].lower()
    assert "authgate-token-delivery" in allowed
    assert "x-csrf-token" in allowed


def test_settings_refuse_the_cookie_mode_over_plain_http_off_loopback(tmp_path: Any) -> None:
    env = {**base_env(tmp_path), **ON, "AUTHGATE_ISSUER": "http://auth.example.com"}
    with pytest.raises(ConfigurationError):
        Settings.from_env(env, config_dir=tmp_path)
    with pytest.raises(ConfigurationError):
        Settings.from_env(
            {**base_env(tmp_path), "AUTHGATE_ACCESS_COOKIE": "on"}, config_dir=tmp_path
        )
