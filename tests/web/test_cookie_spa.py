"""The cookie mode in a real browser (Debian's Chromium driven by Playwright): a tiny
same-origin single-page app logs in, refreshes with ``fetch`` and its credentials, and logs
out; its script never sees the refresh token, and a refresh without the CSRF proof is
refused."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

from _support.http import PASSWORD, new_email
from _support.live import FAST_ARGON2, AuthgateServer, bound_socket
from _support.services import unavailable
from api.server import START, SleepRecorder
from authgate.clock import FixedClock
from authgate.settings import Settings
from authgate.wiring import new_master_key

SPA = "<!doctype html><html lang=en><title>SPA</title><main>app</main></html>"

# One call of the page's own script: the delivery header, the proof when asked for.
CALL = """async ([path, body, csrf]) => {
  const headers = {"Authgate-Token-Delivery": "cookie"};
  if (body !== null) headers["Content-Type"] = "application/json";
  if (csrf !== null) headers["X-CSRF-Token"] = csrf;
  const r = await fetch(path, {method: "POST", headers, credentials: "same-origin",
                               body: body === null ? undefined : JSON.stringify(body)});
  const text = await r.text();
  return {status: r.status, body: text ? JSON.parse(text) : null, cookie: document.cookie};
}"""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[AuthgateServer]:
    sock = bound_socket()
    url = f"http://localhost:{sock.getsockname()[1]}"
    env = {
        "AUTHGATE_MASTER_KEY": new_master_key(),
        "AUTHGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'authgate.db'}",
        "AUTHGATE_PUBLIC_URL": url,
        "AUTHGATE_COOKIE_MODE": "on",
        **FAST_ARGON2,
    }
    settings = Settings.from_env(env, config_dir=tmp_path)
    server = AuthgateServer(settings, clock=FixedClock(START), sleep=SleepRecorder(), sock=sock)
    server.start()
    server.url = url
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def page() -> Iterator[Page]:
    executable = shutil.which("chromium")
    if executable is None:
        unavailable("no Chromium on this machine (apt-get install chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser.new_context().new_page()
        finally:
            browser.close()


def csrf_of(cookie: str) -> str:
    jar = dict(part.split("=", 1) for part in cookie.split("; ") if "=" in part)
    return jar["authgate_csrf_token"]


def test_spa_login_refresh_logout(site: AuthgateServer, page: Page) -> None:
    email = new_email()
    site.register(email)
    # The SPA's page, served at the server's own origin.
    page.route(site.url + "/app", lambda route: route.fulfill(body=SPA, content_type="text/html"))
    page.goto(site.url + "/app")

    def call(path: str, body: dict[str, Any] | None = None, csrf: str | None = None) -> Any:
        return page.evaluate(CALL, [path, body, csrf])

    login = call("/auth/login", {"email": email, "password": PASSWORD})
    assert login["status"] == 200, login
    assert "refresh_token" not in login["body"]
    assert login["body"]["access_token"]
    # The script reads the CSRF cookie, never the HttpOnly refresh cookie.
    assert "authgate_refresh" not in login["cookie"]
    csrf = csrf_of(login["cookie"])
    assert csrf == login["body"]["csrf_token"]

    refused = call("/auth/refresh")
    assert refused["status"] == 403
    assert refused["body"]["code"] == "csrf_failed"

    refreshed = call("/auth/refresh", csrf=csrf)
    assert refreshed["status"] == 200, refreshed
    assert refreshed["body"]["access_token"] != login["body"]["access_token"]
    new_csrf = csrf_of(refreshed["cookie"])
    assert new_csrf == refreshed["body"]["csrf_token"] != csrf

    out = call("/auth/logout", csrf=new_csrf)
    assert out["status"] == 204
    assert "authgate_csrf_token" not in out["cookie"]
    after = call("/auth/refresh", csrf=new_csrf)
    assert after["status"] == 401
    assert after["body"]["code"] == "invalid_grant"
    me = page.request.get(
        site.url + "/auth/me",
        headers={"Authorization": f"Bearer {refreshed['body']['access_token']}"},
    )
    assert me.status == 401
