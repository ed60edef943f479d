"""The pages that mailed links open, in a real browser (Debian's Chromium driven by
Playwright) against a real server that mails through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import email
import email.policy
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import Browser, Page, sync_playwright

from _support.http import PASSWORD, assert_problem, bearer, new_email
from _support.live import FAST_ARGON2, AuthgateServer, bound_socket, free_port
from _support.screens import shots
from _support.services import unavailable
from api.server import START, SleepRecorder
from authgate.clock import FixedClock
from authgate.settings import Settings
from authgate.web import PAGE_CSP
from authgate.wiring import new_master_key

NEW_PASSWORD = "a brand new passphrase 42"
MAIL_WAIT_S = 10.0


@dataclass
class Inbox:
    """aiosmtpd's handler: every accepted mail, parsed."""

    mails: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.mails.append(parsed)
        return "250 OK"

    def wait_for(self, to: str, subject: str) -> EmailMessage:
        """The first mail to ``to`` whose subject contains ``subject``, polled until it
        arrives (the server sends from a background queue)."""
        deadline = time.monotonic() + MAIL_WAIT_S
        while time.monotonic() < deadline:
            for mail in self.mails:
                if mail["To"] == to and subject in mail["Subject"]:
                    self.mails.remove(mail)
                    return mail
            time.sleep(0.02)  # polling for delivery, not waiting for time to pass
        raise AssertionError(f"no mail {subject!r} to {to} arrived")


def text_of(mail: EmailMessage) -> str:
    """The mail's text part."""
    part = mail.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def link_in(mail: EmailMessage) -> str:
    """The one link of the mail's text part."""
    links = re.findall(r"https?://\S+", text_of(mail))
    assert len(links) == 1, links
    return str(links[0])


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
def site(tmp_path: Path, inbox: tuple[Inbox, int]) -> Iterator[AuthgateServer]:
    """A server whose links point at itself, mailing through ``inbox``."""
    sock = bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    env = {
        "AUTHGATE_MASTER_KEY": new_master_key(),
        "AUTHGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'authgate.db'}",
        "AUTHGATE_PUBLIC_URL": url,
        "AUTHGATE_EMAIL": "smtp",
        "AUTHGATE_SMTP_URL": f"smtp://127.0.0.1:{inbox[1]}",
        **FAST_ARGON2,
    }
    settings = Settings.from_env(env, config_dir=tmp_path)
    server = AuthgateServer(settings, clock=FixedClock(START), sleep=SleepRecorder(), sock=sock)
    server.start()
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
    """A fresh browser context (no shared state between tests)."""
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


def test_verify_link_confirms_the_address_in_the_browser(
    site: AuthgateServer, inbox: tuple[Inbox, int], page: Page
) -> None:
    address = new_email()
    site.register(address)
    link = link_in(inbox[0].wait_for(address, "Confirm your email"))
    assert link.startswith(site.url + "/verify-email?token=")

    # Opening the link (as a mail scanner would) changes nothing; the button does.
    response = page.goto(link)
    assert response is not None
    assert response.status == 200
    assert response.headers["content-security-policy"] == PAGE_CSP
    assert response.headers["cache-control"] == "no-store"
    shots(page, "verify-email")
    me = site.http.get("/auth/me", headers=bearer(site.login(address)["access_token"]))
    assert me.json()["email_verified"] is False

    page.get_by_role("button", name="Confirm my address").click()
    assert page.get_by_role("status").inner_text().startswith("Your email address is confirmed")
    shots(page, "verify-email-done")
    me = site.http.get("/auth/me", headers=bearer(site.login(address)["access_token"]))
    assert me.json()["email_verified"] is True

    # The same link again: refused in words, with the API's status.
    again = page.goto(link)
    assert again is not None
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Confirm my address").click()
    assert posted.value.status == 400
    assert "used already" in page.get_by_role("alert").inner_text()


def test_forgotten_password_reset_entirely_in_the_browser(
    site: AuthgateServer, inbox: tuple[Inbox, int], page: Page
) -> None:
    address = new_email()
    old = site.register(address)
    inbox[0].wait_for(address, "Confirm your email")

    page.goto(site.url + "/reset-password")
    page.get_by_label("Email address").fill(address)
    page.get_by_label("Email address").press("Enter")
    assert "a mail with a reset link" in page.get_by_role("status").inner_text()

    link = link_in(inbox[0].wait_for(address, "Reset your password"))
    assert link.startswith(site.url + "/reset-password?token=")
    page.goto(link)
    field_ = page.get_by_label("New password")
    assert field_.get_attribute("autocomplete") == "new-password"
    field_.fill(NEW_PASSWORD)
    field_.press("Enter")
    assert "every session of your account has ended" in page.get_by_role("status").inner_text()

    # The old session is over, the old password too; the new one works.
    refused = site.http.post("/auth/refresh", json={"refresh_token": old["refresh_token"]})
    assert refused.status_code == 401
    assert site.http.get("/auth/me", headers=bearer(old["access_token"])).status_code == 401
    wrong = site.http.post("/auth/login", json={"email": address, "password": PASSWORD})
    assert_problem(wrong, 401, "invalid_credentials")
    assert site.login(address, NEW_PASSWORD)["access_token"]


def test_a_weak_password_keeps_the_form_and_the_link(
    site: AuthgateServer, inbox: tuple[Inbox, int], page: Page
) -> None:
    address = new_email()
    site.register(address)
    site.http.post("/auth/password/forgot", json={"email": address})
    link = link_in(inbox[0].wait_for(address, "Reset your password"))
    page.goto(link)
    page.get_by_label("New password").fill("password")
    page.get_by_role("button", name="Set the new password").click()
    assert "too weak" in page.get_by_role("alert").inner_text()
    # Nothing was used up: the form is back, and the link still works.
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set the new password").click()
    assert page.get_by_role("status").is_visible()
    assert site.login(address, NEW_PASSWORD)["access_token"]


def test_a_dead_link_shows_its_reason_and_offers_a_new_one(
    site: AuthgateServer, inbox: tuple[Inbox, int], page: Page
) -> None:
    address = new_email()
    site.register(address)
    site.http.post("/auth/password/forgot", json={"email": address})
    first = link_in(inbox[0].wait_for(address, "Reset your password"))
    site.http.post("/auth/password/forgot", json={"email": address})
    inbox[0].wait_for(address, "Reset your password")

    page.goto(first)
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set the new password").click()
    assert "newer link was sent" in page.get_by_role("alert").inner_text()
    assert page.get_by_label("Email address").is_visible()
    wrong = site.http.post("/auth/login", json={"email": address, "password": NEW_PASSWORD})
    assert_problem(wrong, 401, "invalid_credentials")


def test_email_change_confirmed_in_the_browser(
    site: AuthgateServer, inbox: tuple[Inbox, int], page: Page
) -> None:
    address, moved = new_email(), new_email("moved")
    token = site.register(address)["access_token"]
    r = site.http.post(
        "/auth/email",
        json={"new_email": moved, "current_password": PASSWORD},
        headers=bearer(token),
    )
    assert r.status_code == 202
    assert moved in text_of(inbox[0].wait_for(address, "being changed"))
    link = link_in(inbox[0].wait_for(moved, "Confirm your new email"))
    assert parse_qs(urlsplit(link).query)["token"]

    page.goto(link)
    shots(page, "email-confirm")
    page.get_by_role("button", name="Change my address").click()
    assert "Your email address is changed" in page.get_by_role("status").inner_text()
    shots(page, "email-confirm-done")
    assert site.login(moved)["access_token"]
    assert site.http.get("/auth/me", headers=bearer(token)).status_code == 401


def test_names_and_tokens_are_escaped(site: AuthgateServer, page: Page) -> None:
    hostile = '"><script>document.title="pwned"</script>'
    page.goto(site.url + "/verify-email?token=" + hostile)
    assert page.title() == "Confirm your email address"
    assert page.locator("input[name=token]").get_attribute("value") == hostile
    assert page.locator("script").count() == 0
