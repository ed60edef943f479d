"""'Log in with authgate' end to end, in a real browser (Debian's Chromium through
Playwright), with unmodified third-party relying parties:

- a FastAPI app on Authlib's OpenID Connect client (examples/fastapi_oidc_login.py): a
  third-party confidential client; the hosted login with TOTP as second factor, consent,
  and the ID token checked by Authlib (nonce, at_hash);
- openid-client for Node (OpenID-certified): a first-party public client; discovery, the
  code flow with PKCE while the browser signs in with a passkey on Chromium's virtual
  authenticator, userinfo, refresh, and RP-initiated logout.

The server runs a fixed clock set to the real time: the relying parties check iat and exp
against theirs. With AUTHGATE_SCREENSHOTS=1 the new pages are saved under docs/screenshots/.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pyotp
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from _support.http import PASSWORD, bearer, new_email
from _support.live import FAST_ARGON2, AuthgateServer, ThreadedServer, bound_socket
from _support.screens import shots
from _support.services import unavailable
from api.server import SleepRecorder
from authgate.clock import FixedClock
from authgate.settings import Settings
from authgate.wiring import new_master_key
from web.test_browser import REGISTER_PASSKEY

INTEROP = Path(__file__).resolve().parents[1] / "interop"
NODE_RP = INTEROP / "oidc_rp.mjs"
INSTALL_HINT = "run `npm ci --prefix tests/interop` (Node 20+) before pytest"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_oidc_login.py"


def relying_party(**options: Any) -> Any:
    """examples/fastapi_oidc_login.py's app, as a user would run it."""
    spec = importlib.util.spec_from_file_location("fastapi_oidc_login", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.create_app(**options)


@pytest.fixture
def clock() -> FixedClock:
    """The server's clock: the real time now, moved only by the tests."""
    return FixedClock(float(int(time.time())))


@pytest.fixture
def site(tmp_path: Path, clock: FixedClock) -> Iterator[AuthgateServer]:
    """An authgate at http://localhost (a secure context, for WebAuthn)."""
    sock = bound_socket()
    url = f"http://localhost:{sock.getsockname()[1]}"
    env = {
        "AUTHGATE_MASTER_KEY": new_master_key(),
        "AUTHGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'authgate.db'}",
        "AUTHGATE_ISSUER": url,
        "AUTHGATE_PUBLIC_URL": url,
        "AUTHGATE_MAIL_IP_LIMIT": "1000000",
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


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context, failing on any CSP violation."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if "Content Security" in m.text else None)
    try:
        yield page
        assert not errors, errors
    finally:
        context.close()


def new_client(site: AuthgateServer, **options: Any) -> tuple[str, str | None]:
    """An OpenID Connect client made through the service; its id and secret."""

    async def create() -> tuple[str, str | None]:
        record, secret = await site.services.clients.create(
            options.pop("name", "Notes"), ["openid", "profile", "email"], **options
        )
        return record.client_id, secret

    return site.call(create())


class Catcher:
    """A relying party's address served for real (a redirect's target is a new request
    that browser-side routing never sees): it answers 200 and keeps every URL asked."""

    def __init__(self) -> None:
        self.urls: list[str] = []

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await self._app(scope, receive, send)

        self.server = ThreadedServer(app, name="catcher").start()
        self.base = self.server.url

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        query = scope["query_string"].decode()
        self.urls.append(self.base + scope["path"] + ("?" + query if query else ""))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"relying party"})

    def wait(self, page: Page, prefix: str) -> str:
        """The last URL under ``prefix`` that the browser was sent to."""
        page.wait_for_url(prefix + "**")
        matching = [u for u in self.urls if u.startswith(prefix)]
        assert matching, self.urls
        return matching[-1]


@pytest.fixture
def catcher() -> Iterator[Catcher]:
    """A relying party's address."""
    c = Catcher()
    try:
        yield c
    finally:
        c.server.stop()


@pytest.fixture
def evil() -> Iterator[Catcher]:
    """An address no client registered."""
    c = Catcher()
    try:
        yield c
    finally:
        c.server.stop()


def test_authlib_fastapi_app_with_totp_and_consent(
    site: AuthgateServer, page: Page, clock: FixedClock
) -> None:
    address = new_email()
    access = site.register(address, name="Ada Lovelace")["access_token"]
    secret = site.http.post("/auth/mfa/totp", headers=bearer(access)).json()["secret"]
    totp = pyotp.TOTP(secret)
    confirmed = site.http.post(
        "/auth/mfa/totp/confirm", json={"code": totp.at(clock.now())}, headers=bearer(access)
    )
    assert confirmed.status_code == 200
    clock.advance(30)  # each TOTP code works once: the login's is the next one

    rp_sock = bound_socket()
    rp_url = f"http://127.0.0.1:{rp_sock.getsockname()[1]}"
    client_id, client_secret = new_client(
        site, name="Notes <b>app</b>", redirect_uris=[rp_url + "/callback"]
    )
    assert client_secret is not None
    app = relying_party(
        issuer=site.url,
        client_id=client_id,
        client_secret=client_secret,
        session_secret="a test session secret of enough length",
    )
    rp = ThreadedServer(app, name="relying-party", sock=rp_sock).start()
    try:
        page.goto(rp_url + "/")
        page.get_by_role("link", name="Log in with authgate").click()
        page.wait_for_url(site.url + "/login?next=%2Fauthorize%3F**")
        page.get_by_label("Email address").fill(address)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_label("Password").press("Enter")
        page.wait_for_url(site.url + "/login/mfa**")
        code = page.get_by_label("Code from your authenticator app")
        code.fill(totp.at(clock.now()))
        code.press("Enter")

        # A third-party client: the consent page, with the client's name as text.
        page.wait_for_url(site.url + "/authorize?**")
        assert "Notes <b>app</b> asks to use your account" in page.inner_text("main")
        assert "See your email address" in page.inner_text("main")
        shots(page, "consent")
        allow = page.get_by_role("button", name="Allow")
        assert allow.get_attribute("type") == "submit"
        assert allow.get_attribute("value") == "allow"
        allow.click()

        page.wait_for_url(rp_url + "/")
        assert page.inner_text("#who") == f"Hello, {address}"
        user = page.context.request.get(rp_url + "/whoami").json()["user"]
        assert user["iss"] == site.url
        assert user["aud"] == client_id
        assert user["email"] == address
        assert user["name"] == "Ada Lovelace"
        assert set(user["amr"]) >= {"pwd", "otp", "mfa"}
        assert isinstance(user["nonce"], str)  # Authlib checked it against its own
        assert isinstance(user["at_hash"], str)  # and the at_hash against the token

        # Signed in and consented: the next login with this client asks nothing.
        logins = site.db().execute("SELECT count(*) FROM web_logins").fetchone()[0]
        page.context.clear_cookies(domain="127.0.0.1")
        page.goto(rp_url + "/login")
        page.wait_for_url(rp_url + "/")
        assert page.inner_text("#who") == f"Hello, {address}"
        assert site.db().execute("SELECT count(*) FROM web_logins").fetchone()[0] == logins
    finally:
        rp.stop()


def run_node_rp(config: dict[str, str]) -> subprocess.Popen[str]:
    node = shutil.which("node")
    if node is None:
        unavailable("no node on this machine")
    if not (INTEROP / "node_modules" / "openid-client").is_dir():
        unavailable(f"openid-client is not installed: {INSTALL_HINT}")
    return subprocess.Popen(
        [node, str(NODE_RP), json.dumps(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        assert proc.stderr is not None
        raise AssertionError("openid-client said nothing: " + proc.stderr.read())
    out: dict[str, Any] = json.loads(line)
    assert "error" not in out, out["error"]
    return out


def test_node_openid_client_with_a_passkey_refresh_and_logout(
    site: AuthgateServer, page: Page, catcher: Catcher
) -> None:
    address = new_email()
    access = site.register(address, name="Grace Hopper")["access_token"]
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

    rp = catcher.base
    client_id, secret = new_client(
        site,
        name="Node app",
        redirect_uris=[rp + "/cb"],
        post_logout_redirect_uris=[rp + "/bye"],
        public=True,
        first_party=True,
    )
    assert secret is None
    proc = run_node_rp(
        {
            "issuer": site.url,
            "client_id": client_id,
            "redirect_uri": rp + "/cb",
            "post_logout_redirect_uri": rp + "/bye",
            "scope": "openid profile email",
        }
    )
    try:
        authorize_url = read_line(proc)["authorize_url"]
        query = parse_qs(urlsplit(authorize_url).query)
        assert query["code_challenge_method"] == ["S256"]
        page.goto(authorize_url)
        page.wait_for_url(site.url + "/login?next=**")
        page.get_by_role("button", name="Sign in with a passkey").click()
        callback = catcher.wait(page, rp + "/cb")
        assert parse_qs(urlsplit(callback).query)["iss"] == [site.url]  # RFC 9207
        assert proc.stdin is not None
        proc.stdin.write(json.dumps({"callback_url": callback}) + "\n")
        proc.stdin.flush()
        result = read_line(proc)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    claims = result["claims"]
    me = site.http.get("/auth/me", headers=bearer(access)).json()
    assert claims["sub"] == me["id"]
    assert claims["iss"] == site.url
    assert "hwk" in claims["amr"]
    assert isinstance(claims["sid"], str)
    assert result["userinfo"] == {
        "sub": me["id"],
        "name": "Grace Hopper",
        "email": address,
        "email_verified": False,
    }
    refreshed = result["refreshed"]
    assert refreshed["refresh_token"] != result["first"]["refresh_token"]
    info = site.http.get("/userinfo", headers=bearer(refreshed["access_token"]))
    assert info.status_code == 200
    assert info.json()["sub"] == me["id"]

    # RP-initiated logout: a confirmation, then back to the registered address with state;
    # the hosted login and the client's session end (the revocation feed carries both).
    page.goto(result["end_session_url"])
    assert "Node app" in page.inner_text("main")
    shots(page, "logout-rp")
    page.get_by_role("button", name="Sign out").click()
    assert catcher.wait(page, rp + "/bye") == rp + "/bye?state=bye"
    dead = site.http.get("/userinfo", headers=bearer(refreshed["access_token"]))
    assert dead.status_code == 401
    again = site.http.post(
        "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refreshed["refresh_token"],
            "client_id": client_id,
        },
    )
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    page.goto(site.url + "/account")
    page.wait_for_url(site.url + "/login?next=%2Faccount")


def test_bad_requests_in_the_browser(
    site: AuthgateServer, page: Page, catcher: Catcher, evil: Catcher
) -> None:
    rp = catcher.base
    client_id, _ = new_client(
        site,
        name="Strict app",
        redirect_uris=[rp + "/cb"],
        post_logout_redirect_uris=[rp + "/bye"],
        public=True,
    )
    base = {
        "client_id": client_id,
        "response_type": "code",
        "scope": "openid",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
        "state": "s1",
    }

    # A redirect URI that is not registered: an error page, never a redirect.
    response = page.goto(site.url + "/authorize?" + urlencode({**base, "redirect_uri": evil.base}))
    assert response is not None
    assert response.status == 400
    assert page.url.startswith(site.url + "/authorize")
    assert "not valid" in page.inner_text("main")
    shots(page, "authorize-error")
    assert evil.urls == []

    # prompt=none without a login: login_required, back at the client with state and iss.
    page.goto(
        site.url + "/authorize?" + urlencode({**base, "redirect_uri": rp + "/cb", "prompt": "none"})
    )
    got = parse_qs(urlsplit(catcher.wait(page, rp + "/cb")).query)
    assert got["error"] == ["login_required"]
    assert got["state"] == ["s1"]
    assert got["iss"] == [site.url]

    # PKCE plain is refused, at the client.
    plain = {**base, "redirect_uri": rp + "/cb", "code_challenge_method": "plain"}
    page.goto(site.url + "/authorize?" + urlencode(plain))
    got = parse_qs(urlsplit(catcher.wait(page, rp + "/cb")).query)
    assert got["error"] == ["invalid_request"]

    # A foreign post_logout_redirect_uri: refused, no redirect.
    logout = {"client_id": client_id, "post_logout_redirect_uri": evil.base + "/x"}
    response = page.goto(site.url + "/logout?" + urlencode(logout))
    assert response is not None
    assert response.status == 400
    assert evil.urls == []
