"""The admin console in a real browser (Debian's Chromium driven by Playwright) against a
real server: an admin finds a user and removes a role (keyboard only), and the user's
next request fails; rotates the keys behind the password; creates a client and sees its
secret once. axe-core checks every page (no serious or critical violation), at desktop
and phone width; with AUTHGATE_SCREENSHOTS=1 each is saved under docs/screenshots/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from _support.http import PASSWORD, bearer, new_email
from _support.live import FAST_ARGON2, AuthgateServer, bound_socket
from _support.screens import shot
from _support.services import unavailable
from api.server import START, SleepRecorder
from authgate.clock import FixedClock
from authgate.settings import Settings
from authgate.wiring import new_master_key

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def site(tmp_path: Path, clock: FixedClock) -> Iterator[AuthgateServer]:
    """A server at http://localhost:PORT (mail to the console)."""
    sock = bound_socket()
    url = f"http://localhost:{sock.getsockname()[1]}"
    env = {
        "AUTHGATE_MASTER_KEY": new_master_key(),
        "AUTHGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'authgate.db'}",
        "AUTHGATE_PUBLIC_URL": url,
        **FAST_ARGON2,
    }
    settings = Settings.from_env(env, config_dir=tmp_path)
    server = AuthgateServer(settings, clock=clock, sleep=SleepRecorder(), sock=sock)
    server.start()
    server.url = url
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless."""
    executable = shutil.which("chromium")
    if executable is None:
        unavailable("no Chromium on this machine (apt-get install chromium)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def _page(browser: Browser, viewport: dict[str, int]) -> Iterator[Page]:
    context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if "Content Security" in m.text else None)
    try:
        yield page
        assert not errors, errors
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context at desktop width, failing on any CSP violation."""
    yield from _page(browser, DESKTOP)


class Setup:
    """An admin, a role ``editor`` (posts:write) and a user who holds it."""

    def __init__(self, site: AuthgateServer) -> None:
        self.site = site
        self.admin = new_email("admin")
        self.api = site.make_admin(self.admin)
        r = site.http.post(
            "/admin/roles",
            json={"name": "editor", "permissions": ["posts:write"]},
            headers=bearer(self.api),
        )
        assert r.status_code == 201, r.text
        self.email = new_email("grace")
        body = site.register(self.email, name="Grace <b>Hopper</b>")
        self.user_id = site.http.get("/auth/me", headers=bearer(body["access_token"])).json()["id"]
        r = site.http.patch(
            f"/admin/users/{self.user_id}", json={"roles": ["editor"]}, headers=bearer(self.api)
        )
        assert r.status_code == 200, r.text
        self.user = site.login(self.email)


def admin_sign_in(page: Page, site: AuthgateServer, email: str) -> None:
    page.goto(site.url + "/console")
    page.wait_for_url(site.url + "/login?next=%2Fconsole")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url(site.url + "/console")


def nav(page: Page, section: str) -> None:
    """Follow a link of the console's navigation."""
    links = page.get_by_role("navigation", name="Console sections")
    links.get_by_role("link", name=section, exact=True).click()


def tab_to(page: Page, selector: str, *, limit: int = 60) -> None:
    """Press Tab until ``selector`` has the focus (keyboard only)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def test_an_admin_finds_a_user_removes_a_role_and_the_users_next_request_fails(
    site: AuthgateServer, page: Page, clock: FixedClock
) -> None:
    setup = Setup(site)
    me = site.http.get("/auth/me", headers=bearer(setup.user["access_token"]))
    assert me.status_code == 200
    assert me.json()["roles"] == ["editor"]

    admin_sign_in(page, site, setup.admin)
    shot(page, "console")
    nav(page, "Users")
    page.get_by_label("Email address contains").fill(setup.email.split("@")[0])
    page.get_by_label("Email address contains").press("Enter")
    shot(page, "console-users")
    page.get_by_role("link", name=setup.email).click()
    page.wait_for_url(f"{site.url}/console/users/{setup.user_id}")
    assert "Grace <b>Hopper</b>" in page.inner_text("main")  # text, not markup
    shot(page, "console-user")

    # Keyboard only: Tab to the role's box, Space unticks it, Tab to the button, Enter.
    clock.advance(1)
    tab_to(page, "input[name=role][value=editor]")
    page.keyboard.press("Space")
    assert not page.get_by_label("editor").is_checked()
    tab_to(page, "button[type=submit]")
    assert page.evaluate("document.activeElement.textContent") == "Save the roles"
    page.keyboard.press("Enter")
    page.wait_for_url(f"{site.url}/console/users/{setup.user_id}?done=roles")
    assert "The roles are saved" in page.get_by_role("status").inner_text()

    # The user's next request fails: the role change moved the user's epoch.
    r = site.http.get("/auth/me", headers=bearer(setup.user["access_token"]))
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    fresh = site.http.post("/auth/refresh", json={"refresh_token": setup.user["refresh_token"]})
    assert fresh.status_code == 200
    assert fresh.json()["scope"] == ""
    user = site.http.get(f"/admin/users/{setup.user_id}", headers=bearer(setup.api)).json()
    assert user["roles"] == []

    # The role's page, and the audit log that recorded the change.
    nav(page, "Roles")
    shot(page, "console-roles")
    page.get_by_role("link", name="editor").click()
    shot(page, "console-role")
    nav(page, "Audit log")
    page.get_by_role("button", name="Check the hash chain").click()
    assert "The hash chain verifies" in page.get_by_role("status").first.inner_text()
    page.get_by_label("Event", exact=True).fill("roles_changed")
    page.get_by_label("Event", exact=True).press("Enter")
    assert "roles_changed" in page.inner_text("table")
    shot(page, "console-audit")


def test_rotate_the_keys_with_the_password(site: AuthgateServer, page: Page) -> None:
    setup = Setup(site)
    before = site.http.get("/admin/keys", headers=bearer(setup.api)).json()
    current = {k["kid"] for k in before if k["state"] == "current"}
    admin_sign_in(page, site, setup.admin)
    nav(page, "Signing keys")
    shot(page, "console-keys")
    page.get_by_role("link", name="Rotate now…").click()
    page.wait_for_url(site.url + "/console/keys/rotate")
    shot(page, "console-keys-rotate")
    password = page.get_by_label("Your password")
    assert password.get_attribute("autocomplete") == "current-password"
    password.fill("not my password 42")
    password.press("Enter")
    assert "The password is wrong" in page.get_by_role("alert").inner_text()
    assert site.http.get("/admin/keys", headers=bearer(setup.api)).json() == before
    shot(page, "console-keys-rotate-error")
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Rotate now").click()
    page.wait_for_url(site.url + "/console/keys?done=rotated")
    assert "The keys are rotated" in page.get_by_role("status").inner_text()
    after = site.http.get("/admin/keys", headers=bearer(setup.api)).json()
    assert current <= {k["kid"] for k in after if k["state"] == "retiring"}
    for kid in current:
        assert kid in page.inner_text("table")


def test_create_a_client_and_see_its_secret_once(site: AuthgateServer, page: Page) -> None:
    setup = Setup(site)
    admin_sign_in(page, site, setup.admin)
    nav(page, "Clients")
    page.get_by_role("link", name="New client").click()
    shot(page, "console-client-new")
    page.get_by_label("Name").fill("Nightly reports")
    page.get_by_label("Service (client_credentials").check()
    page.get_by_label("Scopes").fill("posts:write")
    page.get_by_role("button", name="Create the client").click()
    page.wait_for_url(site.url + "/console/clients")
    client_id = page.locator("#client-id").inner_text()
    secret = page.locator("#client-secret").inner_text()
    assert "shown on this page once" in page.get_by_role("status").inner_text()
    shot(page, "console-client-created")
    token = site.http.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert token.status_code == 200, token.text
    page.get_by_role("link", name="Back to the clients").click()
    assert client_id in page.inner_text("table")
    assert secret not in page.content()
    shot(page, "console-clients")
    page.get_by_role("link", name="Revoke Nightly reports").click()
    shot(page, "console-client-revoke")
    page.get_by_role("button", name="Revoke the client").click()
    assert "The client is revoked" in page.get_by_role("status").inner_text()
    assert secret not in page.content()


def test_every_console_page_at_desktop_and_phone_width(
    site: AuthgateServer, browser: Browser
) -> None:
    """Each page passes axe-core, fits a phone's width (wide tables scroll in their own
    focusable region), and is reached by Tab from the top."""
    setup = Setup(site)
    site.http.post(  # a session with markup in its user agent, for the user's page
        "/auth/login",
        json={"email": setup.email, "password": PASSWORD},
        headers={"User-Agent": "<script>alert(1)</script> Phone/1.0"},
    )
    pages = {
        "console": "/console",
        "console-users": "/console/users",
        "console-user": f"/console/users/{setup.user_id}",
        "console-user-delete": f"/console/users/{setup.user_id}/delete",
        "console-user-disable": f"/console/users/{setup.user_id}/disable",
        "console-user-mfa-reset": f"/console/users/{setup.user_id}/mfa-reset",
        "console-roles": "/console/roles",
        "console-role": "/console/roles/editor",
        "console-clients": "/console/clients",
        "console-client-new": "/console/clients/new",
        "console-keys": "/console/keys",
        "console-keys-rotate": "/console/keys/rotate",
        "console-audit": "/console/audit",
        "console-health": "/console/health",
    }
    for suffix, viewport in (("", DESKTOP), ("-phone", PHONE)):
        for page in _page(browser, viewport):
            admin_sign_in(page, site, setup.admin)
            for name, path in pages.items():
                page.goto(site.url + path)
                assert page.url == site.url + path
                if name == "console-user":
                    assert "<script>alert(1)</script> Phone/1.0" in page.inner_text("main")
                if suffix:
                    width = page.evaluate("document.documentElement.scrollWidth")
                    assert width <= viewport["width"], (path, width)
                shot(page, name + suffix)
                page.keyboard.press("Tab")
                assert page.evaluate("document.activeElement.tagName") == "A"


def test_a_non_admin_sees_the_403_page(site: AuthgateServer, page: Page) -> None:
    address = new_email()
    site.register(address)
    page.goto(site.url + "/console/users")
    page.get_by_label("Email address").fill(address)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url(site.url + "/console/users")
    assert "for administrators" in page.get_by_role("alert").inner_text()
    shot(page, "console-forbidden")
