"""The account page in a real browser (Debian's Chromium driven by Playwright) against a
real server that mails through a real SMTP server (aiosmtpd): a user signs up, confirms the
address from the mail, turns on TOTP by reading the secret off the page, signs out and in
again with it, adds a passkey (Chromium's virtual authenticator), and ends another
session, whose access token then fails at /auth/me. axe-core checks every page state (0
serious or critical violations); with AUTHGATE_SCREENSHOTS=1 each is saved at desktop and
phone width under docs/screenshots/."""

from __future__ import annotations

import time

import pyotp
from playwright.sync_api import Page

from _support import screens
from _support.http import PASSWORD, bearer, new_email
from _support.live import AuthgateServer
from api.test_link_pages import Inbox, link_in
from authgate.clock import FixedClock
from authgate.errors import TokenRevoked
from authgate.guard import Guard

from . import test_browser as shared

# The hosted pages' browser fixtures: a server mailing to an SMTP inbox, Chromium, a page.
site, inbox, clock, browser, page = (
    shared.site,
    shared.inbox,
    shared.clock,
    shared.browser,
    shared.page,
)
shots = screens.shots
PHONE = screens.PHONE

WRONG_PASSWORD = "not the password at all"


GUARD_WAIT_S = 10.0


def feed_guard(site: AuthgateServer, clock: FixedClock) -> Guard:
    """A real guard on the server, sharing its clock, following its revocation feed."""

    async def client() -> tuple[str, str | None]:
        record, secret = await site.services.clients.create("guard", ["authgate:revocations"])
        return record.client_id, secret

    client_id, secret = site.call(client())
    assert secret is not None
    return Guard(
        issuer=site.url,
        audience=site.settings.audience,
        client_id=client_id,
        client_secret=secret,
        clock=clock,
        feed_wait=1.0,
        feed_interval=0.05,
    )


def guard_accepts(guard: Guard, token: str) -> bool:
    try:
        guard.verify_sync(token)
    except TokenRevoked:
        return False
    return True


def end_other_session(page: Page, site: AuthgateServer) -> None:
    """On the sessions page: two sessions, this browser's marked; end the other one."""
    page.get_by_role("link", name="Sessions").click()
    page.wait_for_url(site.url + "/account/sessions")
    assert page.locator("li.card").count() == 2
    assert "This browser" in page.inner_text("main")
    shots(page, "account-sessions")
    page.get_by_role("button", name="End this session").click()
    page.wait_for_url(site.url + "/account/sessions?done=session_ended")
    assert "The session has ended" in page.get_by_role("status").inner_text()
    assert page.locator("li.card").count() == 1


def tab_to(page: Page, condition: str) -> None:
    """Press Tab until ``condition`` (JavaScript) holds for the focused element."""
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate(condition):
            return
    raise AssertionError(f"Tab never reached {condition}")


def add_virtual_authenticator(page: Page) -> None:
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


def api_login_with_totp(
    site: AuthgateServer, address: str, totp: pyotp.TOTP, clock: FixedClock
) -> str:
    """Another session, through the JSON API: its access token."""
    clock.advance(30)  # each code works once
    first = site.http.post("/auth/login", json={"email": address, "password": PASSWORD}).json()
    assert first["mfa_required"] is True
    r = site.http.post(
        "/auth/login/mfa", json={"mfa_token": first["mfa_token"], "code": totp.at(clock.now())}
    )
    assert r.status_code == 200, r.text
    access: str = r.json()["access_token"]
    return access


def test_a_user_manages_their_own_security(
    site: AuthgateServer,
    inbox: tuple[Inbox, int],
    page: Page,
    clock: FixedClock,
) -> None:
    address = new_email()

    # Sign up: signed in at once, the address not confirmed yet.
    page.goto(site.url + "/register")
    page.get_by_label("Name (optional)").fill("Ada <i>Lovelace</i>")
    page.get_by_label("Email address").fill(address)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url(site.url + "/account")
    assert "Ada <i>Lovelace</i>" in page.inner_text("main")  # text, not markup
    assert "Not yet" in page.inner_text("main")

    # A wrong password for the email change: the error in words, on the field.
    page.get_by_label("New email address").fill(new_email())
    page.get_by_label("Current password").fill(WRONG_PASSWORD)
    page.get_by_label("Current password").press("Enter")
    assert page.get_by_role("alert").inner_text() == "The email address or the password is wrong."
    assert page.get_by_label("Current password").get_attribute("aria-invalid") == "true"
    shots(page, "account-email-error")

    # Confirm the address from the mail.
    page.goto(link_in(inbox[0].wait_for(address, "Confirm your email")))
    page.get_by_role("button", name="Confirm my address").click()
    assert "Your email address is confirmed" in page.get_by_role("status").inner_text()
    page.goto(site.url + "/account")
    assert "Not yet" not in page.inner_text("main")
    shots(page, "account-profile")

    # Turn on TOTP: the QR code and the secret, read off the page; then the codes, once.
    page.get_by_role("link", name="Two-step sign-in").click()
    page.wait_for_url(site.url + "/account/mfa")
    shots(page, "account-mfa-off")
    page.get_by_role("button", name="Set up an authenticator app").click()
    assert page.get_by_role("img", name="QR code of the secret for your authenticator app")
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    totp = pyotp.TOTP(secret)
    shots(page, "account-totp")
    code = page.get_by_label("Code from your authenticator app")
    assert code.get_attribute("autocomplete") == "one-time-code"
    code.fill(totp.at(clock.now()))
    code.press("Enter")
    assert "shown only this once" in page.get_by_role("status").inner_text()
    assert page.locator("ul.codes li").count() == 10
    shots(page, "account-recovery-codes")

    # Sign out, and in again with the password and a TOTP code.
    page.goto(site.url + "/account")
    page.get_by_role("button", name="Sign out").click()
    page.goto(site.url + "/login?next=%2Faccount%2Fmfa")
    page.get_by_label("Email address").fill(address)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url(site.url + "/login/mfa?next=%2Faccount%2Fmfa")
    clock.advance(30)
    page.get_by_label("Code from your authenticator app").fill(totp.at(clock.now()))
    page.get_by_label("Code from your authenticator app").press("Enter")
    page.wait_for_url(site.url + "/account/mfa")

    # Add a passkey through the virtual authenticator.
    add_virtual_authenticator(page)
    page.get_by_label("Name of the new passkey (optional)").fill("Laptop <b>key</b>")
    page.get_by_role("button", name="Add a passkey").click()
    page.wait_for_url(site.url + "/account/mfa?done=passkey_added")
    assert page.get_by_role("status").inner_text() == "The passkey is added."
    assert page.get_by_role("heading", name="Laptop <b>key</b>").is_visible()
    page.get_by_text("Rename or remove").click()  # the details open: both forms checked
    shots(page, "account-mfa")

    # Another session (the JSON API), seen and ended from here; its token dies, at the
    # server and at a real guard following the revocation feed.
    access = api_login_with_totp(site, address, totp, clock)
    me = site.http.get("/auth/me", headers=bearer(access))
    assert me.status_code == 200
    user_id = me.json()["id"]
    guard = feed_guard(site, clock)
    guard.start_sync()
    try:
        assert guard.verify_sync(access).sub == user_id
        end_other_session(page, site)
        deadline = time.monotonic() + GUARD_WAIT_S
        while guard_accepts(guard, access):  # polling for the feed's event to arrive
            assert time.monotonic() < deadline, "the guard still accepts the ended session"
            time.sleep(0.02)
    finally:
        guard.close_sync()
    assert site.http.get("/auth/me", headers=bearer(access)).status_code == 401

    # The password form, refused in words.
    page.get_by_role("link", name="Password").click()
    shots(page, "account-password")
    page.get_by_label("Current password").fill(WRONG_PASSWORD)
    page.get_by_label("New password").fill("another fine passphrase 7")
    page.get_by_label("New password").press("Enter")
    assert "The email address or the password is wrong." in page.get_by_role("alert").inner_text()
    shots(page, "account-password-error")

    # Connected apps: one the user consented to, then none.
    user = site.call(site.services.accounts.by_email(address))
    record, _ = site.call(
        site.services.clients.create(
            "Photo Album", ["openid"], redirect_uris=["https://rp.test/cb"]
        )
    )
    site.call(site.services.oidc.grant_consent(user.id, record.client_id, ["openid", "email"]))
    page.get_by_role("link", name="Connected apps").click()
    assert "Photo Album" in page.inner_text("main")
    shots(page, "account-apps")
    page.get_by_role("button", name="Take back access").click()
    assert "No app has access" in page.inner_text("main")

    # Recent security events, in words.
    page.get_by_role("link", name="Activity").click()
    events = page.locator("ol.events").inner_text()
    for words in (
        "Passkey added",
        "Authenticator app turned on",
        "Email address confirmed",
        "A session was ended",
        "Wrong current password given",
    ):
        assert words in events, words
    shots(page, "account-activity")


def test_the_account_page_works_by_keyboard_at_phone_width(
    site: AuthgateServer,
    page: Page,
) -> None:
    address = new_email()
    site.register(address)
    page.set_viewport_size(PHONE)
    page.goto(site.url + "/login")
    page.get_by_label("Email address").fill(address)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url(site.url + "/account")
    # Tab to the password section's link, follow it with Enter, fill the form by keys.
    tab_to(page, "document.activeElement.textContent === 'Password'")
    page.keyboard.press("Enter")
    page.wait_for_url(site.url + "/account/password")
    tab_to(page, "document.activeElement.autocomplete === 'current-password'")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    page.keyboard.type("another fine passphrase 7")
    page.keyboard.press("Enter")
    page.wait_for_url(site.url + "/account/password?done=password")
    assert "Your password is changed" in page.get_by_role("status").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
