"""The guard's cookie option with authgate's cookie mode: a token read from a cookie
authenticates safe requests, and an unsafe one (POST, PUT, PATCH, DELETE) only with the
``X-CSRF-Token`` header equal to the CSRF cookie (double submit); a Bearer header needs
none. Every adapter, on a real app server, against a real authgate server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from authgate.bearer import check_cookie_csrf, csrf_cookie_for
from authgate.errors import ConfigurationError, CsrfFailed
from authgate.guard import Guard
from authgate.jose import Key

from ._apps import fastapi_app, flask_app, starlette_app
from ._support import AppServer, AuthServer, WsgiServer, make_guard

PASSWORD = "correct horse battery staple 42"
ADAPTERS = ["fastapi", "fastapi+middleware", "starlette", "flask"]
ACCESS = "authgate_access"
CSRF = "authgate_csrf_token"


@pytest.fixture(scope="module")
def writer(auth: AuthServer) -> str:
    """An access token with posts:write."""

    async def create() -> None:
        await auth.services.directory.put_role("cookie-writer", ["posts:read", "posts:write"])
        await auth.services.accounts.create_user(
            "cookie-writer@example.com", PASSWORD, roles=["cookie-writer"]
        )

    auth.call(create())
    r = auth.http.post(
        "/auth/login", json={"email": "cookie-writer@example.com", "password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


@pytest.fixture(scope="module", params=ADAPTERS)
def http(
    request: pytest.FixtureRequest, auth: AuthServer, creds: tuple[str, str]
) -> Iterator[httpx.Client]:
    name: str = request.param
    guard = make_guard(auth, creds, cookie=ACCESS)
    if name.startswith("fastapi"):
        server: AppServer | WsgiServer = AppServer(
            fastapi_app(guard, middleware=name.endswith("middleware"))
        )
    elif name == "starlette":
        server = AppServer(starlette_app(guard))
    else:
        server = WsgiServer(flask_app(guard))
    with server as client:
        yield client
    guard.close_sync()


def cookies(**jar: str) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}


def test_a_cookie_token_reads_without_a_proof(http: httpx.Client, writer: str) -> None:
    r = http.get("/posts", headers=cookies(**{ACCESS: writer}))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({}, id="no-header-no-cookie"),
        pytest.param({"X-CSRF-Token": "abc"}, id="header-without-cookie"),
        pytest.param({"csrf_cookie": "abc"}, id="cookie-without-header"),
        pytest.param({"X-CSRF-Token": "abc", "csrf_cookie": "abd"}, id="mismatch"),
        pytest.param({"X-CSRF-Token": "", "csrf_cookie": ""}, id="both-empty"),
    ],
)
def test_a_cookie_token_writes_only_with_the_proof(
    http: httpx.Client, writer: str, extra: dict[str, str]
) -> None:
    jar = {ACCESS: writer}
    if "csrf_cookie" in extra:
        jar[CSRF] = extra["csrf_cookie"]
    headers = cookies(**jar)
    if "X-CSRF-Token" in extra:
        headers["X-CSRF-Token"] = extra["X-CSRF-Token"]
    r = http.post("/posts", headers=headers)
    assert r.status_code == 403, r.text
    assert "csrf_failed" in (r.json().get("error"), r.json().get("detail"))


def test_a_cookie_token_writes_with_the_proof(http: httpx.Client, writer: str) -> None:
    headers = {**cookies(**{ACCESS: writer, CSRF: "proof-1"}), "X-CSRF-Token": "proof-1"}
    r = http.post("/posts", headers=headers)
    assert r.status_code == 200, r.text


def test_a_bearer_token_needs_no_proof(http: httpx.Client, writer: str) -> None:
    r = http.post("/posts", headers={"Authorization": f"Bearer {writer}"})
    assert r.status_code == 200, r.text


def test_an_invalid_cookie_token_is_still_401(http: httpx.Client) -> None:
    r = http.get("/me", headers=cookies(**{ACCESS: "a.b.c"}))
    assert r.status_code == 401


def test_check_cookie_csrf() -> None:
    for method in ("GET", "HEAD", "OPTIONS", "TRACE", "get"):
        check_cookie_csrf(method, header=None, cookie=None)
    for method in ("POST", "PUT", "PATCH", "DELETE", "PROPFIND"):
        with pytest.raises(CsrfFailed):
            check_cookie_csrf(method, header=None, cookie="x")
        with pytest.raises(CsrfFailed):
            check_cookie_csrf(method, header="x", cookie="y")
        check_cookie_csrf(method, header="x", cookie="x")


def test_the_csrf_cookie_option() -> None:
    key = Key.generate("ES256")
    assert csrf_cookie_for("__Host-authgate_access") == "__Host-authgate_csrf_token"
    assert csrf_cookie_for("authgate_access") == "authgate_csrf_token"
    base: dict[str, Any] = {"keys": key, "audience": "api", "revocation": "off"}
    assert Guard(**base, cookie="__Host-authgate_access").csrf_cookie == (
        "__Host-authgate_csrf_token"
    )
    assert Guard(**base, cookie="at", csrf_cookie="xsrf").csrf_cookie == "xsrf"
    assert Guard(**base).csrf_cookie is None
    with pytest.raises(ConfigurationError):
        Guard(**base, csrf_cookie="xsrf")  # no cookie to guard
    with pytest.raises(ConfigurationError):
        Guard(**base, cookie="at", csrf_cookie="at")
