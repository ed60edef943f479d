"""The hosted pages in a real browser (Debian's Chromium driven by Playwright) against a
real server that mails through a real SMTP server (aiosmtpd): sign in with a password,
with TOTP as a second factor, with a passkey (Chromium's virtual authenticator); register;
forgotten password to a new one; sign out. With AUTHGATE_SCREENSHOTS=1, each page is also
saved as a PNG under docs/screenshots/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import Browser, Page, sync_playwright

from _support.http import PASSWORD, bearer, new_email
from _support.live import FAST_ARGON2, AuthgateServer, bound_socket, free_port
from _support.screens import shots
from _support.services import unavailable
from api.server import START, SleepRecorder
from api.test_link_pages import Inbox, link_in
from authgate.clock import FixedClock
from authgate.settings import Settings
from authgate.wiring import new_master_key

NEW_PASSWORD = "a brand new passphrase 42"


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    """A plain SMTP server on loopback."""
    handler, port = Inbox(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture
def clock() -> FixedClock:
    """The server's clock (a TOTP code is computed at its time)."""
    return FixedClock(START)


@pytest.fixture
def site(tmp_path: Path, inbox: tuple[Inbox, int], clock: FixedClock) -> Iterator[AuthgateServer]:
    """A server whose links and WebAuthn origin are itself, mailing through ``inbox``."""
    sock = bound_socket()
    url = f"http://localhost:{sock.getsockname()[1]}"
    env = {
        "AUTHGATE_MASTER_KEY": new_master_key(),
        "AUTHGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'authgate.db'}",
        "AUTHGATE_ISSUER": url,
        "AUTHGATE_PUBLIC_URL": url,
        "AUTHGATE_EMAIL": "smtp",
        "AUTHGATE_SMTP_URL": f"smtp://127.0.0.1:{inbox[1]}",
        "AUTHGATE_MAIL_IP_LIMIT": "1000000",
        **FAST_ARGON2,
    }
    settings = Settings.from_env(env, config_dir=tmp_path)
    server = AuthgateServer(settings, clock=clock, sleep=SleepRecorder(), sock=sock)
    server.start()
    server.url = url  # WebAuthn needs a secure context: localhost is one, 127.0.0.1 too
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


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context at desktop width, failing on any CSP violation."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if "Content Security" in m.text else None)
    try:
        yield page
        assert not errors, errors
    finally:
        context.close()


def sign_in(page: Page, site: AuthgateServer, email: str, password: str = PASSWORD) -> None:
    page.goto(site.url + "/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_label("Password").press("Enter")


def test_password_sign_in_then_sign_out(site: AuthgateServer, page: Page) -> None:
    address = new_email()
    site.register(address, name="Ada Lovelace")
    page.goto(site.url + "/login")
    shots(page, "login")
    page.get_by_label("Email address").fill(address)
    page.get_by_label("Password").fill("wrong password")
    page.get_by_label("Password").press("Enter")
    assert page.get_by_role("alert").inner_text() == "The email address or the password is wrong."
    assert page.get_by_label("Email address").input_value() == address
    shots(page, "login-error")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url(site.url + "/account")
    assert "Ada Lovelace" in page.inner_text("main")
    shots(page, "account")
    page.goto(site.url + "/logout")
    shots(page, "logout")
    page.get_by_role("button", name="Sign out").click()
    assert page.get_by_role("status").inner_text() == "You are signed out."
    page.goto(site.url + "/account")
    page.wait_for_url(site.url + "/login?next=%2Faccount")


def test_totp_as_the_second_factor(site: AuthgateServer, page: Page, clock: FixedClock) -> None:
    address = new_email()
    access = site.register(address)["access_token"]
    secret = site.http.post("/auth/mfa/totp", headers=bearer(access)).json()["secret"]
    totp = pyotp.TOTP(secret)
    r = site.http.post(
        "/auth/mfa/totp/confirm", json={"code": totp.at(clock.now())}, headers=bearer(access)
    )
    assert r.status_code == 200
    clock.advance(30)  # a code is used once: the login's is the next one
    sign_in(page, site, address)
    page.wait_for_url(site.url + "/login/mfa")
    shots(page, "login-mfa")
    code = page.get_by_label("Code from your authenticator app")
    assert code.get_attribute("autocomplete") == "one-time-code"
    code.fill("000000" if totp.at(clock.now()) != "000000" else "111111")
    code.press("Enter")
    assert "This code is wrong" in page.get_by_role("alert").inner_text()
    code = page.get_by_label("Code from your authenticator app")
    code.fill(totp.at(clock.now()))
    code.press("Enter")
    page.wait_for_url(site.url + "/account")
    assert address in page.inner_text("main")


REGISTER_PASSKEY = """
async ([access]) => {
  const auth = { "Authorization": "Bearer " + access, "Content-Type": "application/json" };
  const options = await (await fetch("/auth/passkeys/register/options",
                                     { method: "POST", headers: auth })).json();
  const credential = await navigator.credentials.create(
      { publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options) });
  const r = await fetch("/auth/passkeys/register/verify", { method: "POST", headers: auth,
      body: JSON.stringify({ credential: credential.toJSON(), name: "Test key" }) });
  return r.status;
}
"""


def test_passkey_sign_in_with_a_virtual_authenticator(site: AuthgateServer, page: Page) -> None:
    address = new_email()
    access = site.register(address)["access_token"]
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    page.goto(site.url + "/login")
    assert page.evaluate(REGISTER_PASSKEY, [access]) == 201
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url(site.url + "/account")
    assert address in page.inner_text("main")


def test_register_then_forgot_and_reset_the_password(
    site: AuthgateServer, inbox: tuple[Inbox, int], page: Page
) -> None:
    address = new_email()
    page.goto(site.url + "/register")
    shots(page, "register")
    page.get_by_label("Name (optional)").fill("Grace <b>Hopper</b>")
    page.get_by_label("Email address").fill(address)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url(site.url + "/account")
    assert "Grace <b>Hopper</b>" in page.inner_text("main")  # text, not markup
    inbox[0].wait_for(address, "Confirm your email")
    page.get_by_role("button", name="Sign out").click()
    page.goto(site.url + "/forgot-password")
    shots(page, "forgot-password")
    page.get_by_label("Email address").fill(address)
    page.get_by_label("Email address").press("Enter")
    assert "If an account has this address" in page.get_by_role("status").inner_text()
    link = link_in(inbox[0].wait_for(address, "Reset your password"))
    page.goto(link)
    shots(page, "reset-password")
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_label("New password").press("Enter")
    assert "Your password is changed" in page.get_by_role("status").inner_text()
    sign_in(page, site, address, NEW_PASSWORD)
    page.wait_for_url(site.url + "/account")


def test_the_login_page_works_at_phone_width(site: AuthgateServer, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 740})
    try:
        page = context.new_page()
        page.goto(site.url + "/login")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360
        page.keyboard.press("Tab")  # keyboard only: the first stop is a link or a field
        assert page.evaluate("document.activeElement.tagName") in ("A", "INPUT")
    finally:
        context.close()


def test_the_accessibility_check_is_live(page: Page) -> None:
    """axe-core runs and sees a field without a label: the checks above can fail."""
    from _support.axe import violations

    page.set_content("<html lang='en'><title>t</title><main><input type='text'></main></html>")
    assert "label" in {v["id"] for v in violations(page)}
