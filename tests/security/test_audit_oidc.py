"""Proofs of the holes an outside audit found in the OpenID Connect provider and the hosted
pages, kept as regression tests: each says what must hold, by the finding it proved."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from _support.http import PASSWORD, basic, bearer, new_email
from api.server import LiveServer, running_server
from oidc.conftest import pkce
from passkeys._authenticator import SoftAuthenticator
from web._browser import browser, csrf_in, post_form

REDIRECT = "https://rp.example.com/cb"
LOGOUT_REDIRECT = "https://rp.example.com/bye"
MARK = "_authgate_login_after"


@pytest.fixture
def site(tmp_path: Any) -> Iterator[LiveServer]:
    with running_server(tmp_path) as live:
        yield live


@pytest.fixture
def admin(site: LiveServer) -> str:
    return site.make_admin()


def new_client(site: LiveServer, admin: str, **more: Any) -> dict[str, Any]:
    r = site.http.post(
        "/admin/clients",
        json={
            "name": "Third-party RP",
            "redirect_uris": [REDIRECT],
            "post_logout_redirect_uris": [LOGOUT_REDIRECT],
            **more,
        },
        headers=bearer(admin),
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def account(site: LiveServer) -> str:
    address = new_email("victim")
    site.register(address)
    return address


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


class Flow:
    def __init__(self, client: dict[str, Any], **more: str) -> None:
        self.client = client
        self.verifier, challenge = pkce()
        self.params = {
            "client_id": client["client_id"],
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "scope": "openid",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": "s1",
            **more,
        }

    @property
    def url(self) -> str:
        return "/authorize?" + urlencode(self.params)

    def exchange(self, site: LiveServer, code: str) -> dict[str, Any]:
        r = site.http.post(
            "/oauth2/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "code_verifier": self.verifier,
            },
            headers=basic(self.client["client_id"], self.client["client_secret"]),
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


def log_in_from(client: httpx.Client, response: httpx.Response, address: str) -> httpx.Response:
    assert response.status_code == 303, (response.status_code, response.text[:300])
    login_page = response.headers["location"]
    next_path = query_of(login_page)["next"]
    data = {"email": address, "password": PASSWORD, "next": next_path}
    done = post_form(client, "/login", data, page=login_page)
    assert done.status_code == 303, done.text[:300]
    return client.get(done.headers["location"])


def allow(client: httpx.Client, page: httpx.Response) -> httpx.Response:
    assert page.status_code == 200, (page.status_code, page.text[:300])
    request = html.unescape(page.text.split('name="request" value="', 1)[1].split('"', 1)[0])
    data = {"csrf": csrf_in(page.text), "request": request, "decision": "allow"}
    return client.post("/authorize/consent", data=data)


def code_of(response: httpx.Response) -> str:
    assert response.status_code == 302, (response.status_code, response.text[:300])
    assert response.headers["location"].startswith(REDIRECT + "?")
    return query_of(response.headers["location"])["code"]


def rp_tokens(site: LiveServer, client: httpx.Client, rp: dict[str, Any], address: str) -> Any:
    """The victim signs in at the RP (scope openid only) and consents: the RP's tokens."""
    flow = Flow(rp)
    page = log_in_from(client, client.get(flow.url), address)
    if page.status_code == 200:
        page = allow(client, page)
    return flow.exchange(site, code_of(page))


# --- finding 1 ---------------------------------------------------------------------------


def test_rp_access_token_reads_the_account_api_beyond_its_scope(
    site: LiveServer, admin: str
) -> None:
    rp = new_client(site, admin, scopes=["openid"])
    address = account(site)
    with browser(site) as client:
        tokens = rp_tokens(site, client, rp, address)
    assert tokens["scope"] == "openid"  # the user let it know who they are, nothing more
    # /userinfo rightly gives the sub only...
    info = site.http.get("/userinfo", headers=bearer(tokens["access_token"]))
    assert info.json().keys() == {"sub"}
    # ...but the account API takes the same token as the user's own.
    me = site.http.get("/auth/me", headers=bearer(tokens["access_token"]))
    assert me.status_code in (401, 403), me.text  # today: 200 with email, roles, permissions
    sessions = site.http.get("/auth/sessions", headers=bearer(tokens["access_token"]))
    assert sessions.status_code in (401, 403), sessions.text


def test_rp_access_token_adds_a_passkey_and_takes_the_account_over(
    site: LiveServer, admin: str
) -> None:
    rp = new_client(site, admin, scopes=["openid"])
    address = account(site)
    with browser(site) as client:
        tokens = rp_tokens(site, client, rp, address)
        assert client.get("/account").status_code == 200
    # The RP's server, with the victim's fresh auth_time in its token, plays a browser.
    stolen = bearer(tokens["access_token"])
    options = site.http.post("/auth/passkeys/register/options", headers=stolen)
    takeover = False
    if options.status_code == 200:
        body = options.json()
        origin = site.settings.public_base_url.rstrip("/")
        rogue = SoftAuthenticator(origin=origin, rp_id=body["rp"]["id"])
        added = site.http.post(
            "/auth/passkeys/register/verify",
            headers=stolen,
            json={"credential": rogue.create(body)},
        )
        if added.status_code == 201:
            login_options = site.http.post("/auth/passkeys/login/options").json()
            login = site.http.post(
                "/auth/passkeys/login/verify", json={"credential": rogue.get(login_options)}
            )
            me = site.http.get("/auth/me", headers=bearer(login.json()["access_token"]))
            takeover = login.status_code == 200 and me.json()["email"] == address
    assert not takeover, "the RP logged in as the user with a passkey of its own"


def test_guard_refuses_an_rp_access_token(site: LiveServer, admin: str) -> None:
    import asyncio

    from authgate.clock import FixedClock
    from authgate.errors import InvalidToken
    from authgate.guard import Guard
    from authgate.jose import KeySet

    rp = new_client(site, admin, scopes=["openid"])
    address = account(site)
    with browser(site) as client:
        tokens = rp_tokens(site, client, rp, address)
    jwks = site.http.get("/.well-known/jwks.json").json()
    guard = Guard(
        keys=KeySet.from_jwks(jwks),
        issuer=site.settings.issuer,
        audience=site.settings.audience,
        revocation="off",
        clock=FixedClock(site.clock.now()),
    )

    async def verify() -> object:
        return await guard.verify(tokens["access_token"])

    with pytest.raises(InvalidToken):
        asyncio.run(verify())  # today: a Principal with the user's sub and roles


# --- finding 2 ---------------------------------------------------------------------------


def test_id_token_hint_of_another_user_does_not_end_their_login(
    site: LiveServer, admin: str
) -> None:
    rp = new_client(site, admin, first_party=True)
    victim = account(site)
    with browser(site) as victim_browser:
        tokens = rp_tokens(site, victim_browser, rp, victim)
        # Any holder of the victim's ID token (any RP it went to, a log, an expired
        # copy) opens the end-session page in a browser of its own, signed in or not.
        site.clock.advance(3600)  # the ID token expired long ago: still accepted as a hint
        hint = {"id_token_hint": tokens["id_token"]}
        with browser(site) as attacker:
            page = attacker.get("/logout?" + urlencode(hint))
            assert page.status_code == 200
            assert "<form" not in page.text  # nothing of this browser's to end
            # It posts anyway, with this browser's own CSRF token (from any page).
            post_form(attacker, "/logout", hint, page="/login")
        still = victim_browser.get("/account")
    assert still.status_code == 200, "the victim's hosted login was ended by a stranger"


# --- finding 3 ---------------------------------------------------------------------------


def test_a_marker_from_another_browser_does_not_skip_prompt_login(
    site: LiveServer, admin: str
) -> None:
    rp = new_client(site, admin, first_party=True)
    victim = account(site)
    # The attacker mints a marker in a browser of its own (no account needed).
    with browser(site) as attacker:
        r = attacker.get(Flow(rp, prompt="login").url)
        marker = query_of(query_of(r.headers["location"])["next"])[MARK]
    site.clock.advance(3600)
    with browser(site) as victim_browser:
        rp_tokens(site, victim_browser, rp, victim)  # the victim's login, after the marker
        site.clock.advance(3600)
        # The RP demands a new login (before a sensitive action); at the victim's unlocked
        # browser, the marker is appended to its request.
        relog = Flow(rp, prompt="login")
        r = victim_browser.get(relog.url + "&" + urlencode({MARK: marker}))
    assert r.status_code == 303, "prompt=login was skipped: a code for an hour-old login"


# --- finding 4 ---------------------------------------------------------------------------


def test_prompt_consent_issues_a_code_once_allowed(site: LiveServer, admin: str) -> None:
    rp = new_client(site, admin)
    address = account(site)
    with browser(site) as client:
        rp_tokens(site, client, rp, address)
        page = client.get(Flow(rp, prompt="consent").url)
        answers = [allow(client, page)]
        for _ in range(3):
            if answers[-1].status_code != 200:
                break
            answers.append(allow(client, answers[-1]))
    assert answers[0].status_code == 302, [a.status_code for a in answers]


def test_max_age_zero_accepts_the_login_just_made(site: LiveServer, admin: str) -> None:
    rp = new_client(site, admin, first_party=True)
    address = account(site)
    with browser(site) as client:
        flow = Flow(rp, max_age="0")
        first = client.get(flow.url)
        login_page = first.headers["location"]
        data = {"email": address, "password": PASSWORD, "next": query_of(login_page)["next"]}
        done = post_form(client, "/login", data, page=login_page)
        site.clock.advance(1)  # the browser follows the redirect a moment later
        back = client.get(done.headers["location"])
    assert back.status_code == 302, back.headers.get("location")


# --- finding 5 ---------------------------------------------------------------------------


def test_rp_refresh_token_dies_with_an_expired_hosted_login(site: LiveServer, admin: str) -> None:
    rp = new_client(site, admin, first_party=True)
    address = account(site)
    with browser(site) as client:
        tokens = rp_tokens(site, client, rp, address)
        refresh = tokens["refresh_token"]
        # 8 days on, refreshing every 6 days (within the refresh idle lifetime): the web
        # login (7 days at most) is over, and the browser must sign in again...
        for _ in range(2):
            site.clock.advance(6 * 86400)
            r = site.http.post(
                "/oauth2/token",
                data={"grant_type": "refresh_token", "refresh_token": refresh},
                headers=basic(rp["client_id"], rp["client_secret"]),
            )
            if r.status_code != 200:
                break
            refresh = r.json()["refresh_token"]
        assert client.get("/account").status_code == 303
    # ...but the RP still mints tokens for the user.
    assert r.status_code == 400, r.text


def test_prompt_login_with_consent_needs_one_login(site: LiveServer, admin: str) -> None:
    rp = new_client(site, admin)
    address = account(site)
    with browser(site) as client:
        page = log_in_from(client, client.get(Flow(rp, prompt="login").url), address)
        answer = allow(client, page)
    assert answer.status_code == 302, answer.headers.get("location")


# --- finding 6 ---------------------------------------------------------------------------


def test_a_non_ascii_marker_is_no_server_error(site: LiveServer, admin: str) -> None:
    rp = new_client(site, admin)
    url = Flow(rp).url + "&" + urlencode({MARK: "1.\u00e9"})
    try:
        status = site.http.get(url).status_code
    except httpx.HTTPError:  # the test server drops the connection on an unhandled error
        status = 500
    assert status == 303
