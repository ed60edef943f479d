"""The /authorize pages over HTTP against a real server, as a browser goes through them:
the login redirect and its way back, prompt=login and max_age, the consent page (shown,
remembered, asked again, denied, refused without CSRF), a first-party client, a code whose
hosted login ended, and the end-session confirmation."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt as pyjwt
import pytest

from _support.http import basic, bearer, new_email
from api.server import LiveServer, running_server
from web._browser import browser, csrf_in, post_form

from .conftest import pkce

REDIRECT = "https://rp.example.com/cb"
LOGOUT_REDIRECT = "https://rp.example.com/bye"
MARK = "_authgate_login_after"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the module (each test uses its own accounts, clients and cookies)."""
    with running_server(tmp_path_factory.mktemp("oidc-pages")) as live:
        yield live


@pytest.fixture(scope="module")
def admin(site: LiveServer) -> str:
    return site.make_admin()


def new_client(site: LiveServer, admin: str, **more: Any) -> dict[str, Any]:
    """A confidential OpenID Connect client (third-party unless ``first_party``)."""
    r = site.http.post(
        "/admin/clients",
        json={
            "name": "Example RP",
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
    address = new_email("oidc")
    site.register(address)
    return address


class Flow:
    """One authorization request of a client, with its PKCE verifier."""

    def __init__(self, client: dict[str, Any], **more: str) -> None:
        self.client = client
        self.verifier, challenge = pkce()
        self.params = {
            "client_id": client["client_id"],
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "scope": "openid email",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": "st-" + new_email()[:8],
            "nonce": "n-0S6_WzA2Mj",
            **more,
        }

    @property
    def url(self) -> str:
        return "/authorize?" + urlencode(self.params)

    def exchange(self, site: LiveServer, code: str) -> httpx.Response:
        return site.http.post(
            "/oauth2/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "code_verifier": self.verifier,
            },
            headers=basic(self.client["client_id"], self.client["client_secret"]),
        )


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def at_client(response: httpx.Response) -> dict[str, str]:
    """The client's redirect: its query (code or error, state, iss)."""
    assert response.status_code == 302, (response.status_code, response.text[:500])
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?"), location
    return query_of(location)


def log_in_from(client: httpx.Client, response: httpx.Response, address: str) -> httpx.Response:
    """Follow a 303 to the login page, sign in there, follow the 303 back; the answer of
    the page it comes back to."""
    assert response.status_code == 303, (response.status_code, response.text[:500])
    login_page = response.headers["location"]
    assert login_page.startswith("/login?next=")
    next_path = query_of(login_page)["next"]
    done = post_form(
        client,
        "/login",
        {"email": address, "password": "correct horse battery staple 42", "next": next_path},
        page=login_page,
    )
    assert done.status_code == 303, done.text[:500]
    assert done.headers["location"] == next_path
    return client.get(next_path)


def consent(
    client: httpx.Client, page: httpx.Response, decision: str = "allow", **more: str
) -> httpx.Response:
    """Answer a consent page with its own form."""
    assert page.status_code == 200, page.text[:500]
    assert 'action="/authorize/consent"' in page.text
    request = page.text.split('name="request" value="', 1)[1].split('"', 1)[0]
    data = {
        "csrf": csrf_in(page.text),
        "request": html.unescape(request),
        "decision": decision,
        **more,
    }
    return client.post("/authorize/consent", data=data)


def signed_in_code(
    site: LiveServer, client: httpx.Client, flow: Flow, address: str
) -> dict[str, str]:
    """Sign in through /authorize and consent: the client's redirect query."""
    page = log_in_from(client, client.get(flow.url), address)
    if page.status_code == 200:
        page = consent(client, page)
    return at_client(page)


# --- login -------------------------------------------------------------------------------


def test_without_a_login_authorize_sends_to_the_login_and_back(
    site: LiveServer, admin: str
) -> None:
    rp = new_client(site, admin, first_party=True)
    address = account(site)
    flow = Flow(rp)
    with browser(site) as client:
        first = client.get(flow.url)
        assert first.status_code == 303
        next_path = query_of(first.headers["location"])["next"]
        assert next_path.startswith("/authorize?")
        back = query_of(next_path)
        assert back[MARK]  # the signed marker of when the login was asked for
        assert {k: v for k, v in back.items() if k != MARK} == flow.params
        # The login page's CSP lets its form lead on to the client's origin.
        login_page = client.get(first.headers["location"])
        assert (
            "form-action 'self' https://rp.example.com"
            in (login_page.headers["content-security-policy"])
        )
        answer = at_client(log_in_from(client, first, address))
    assert answer["state"] == flow.params["state"]
    assert answer["iss"] == site.settings.issuer
    tokens = flow.exchange(site, answer["code"])
    assert tokens.status_code == 200, tokens.text
    assert "id_token" in tokens.json()


def test_prompt_login_asks_again_and_a_forged_marker_does_not_skip_it(
    site: LiveServer, admin: str
) -> None:
    rp = new_client(site, admin, first_party=True)
    address = account(site)
    with browser(site) as client:
        signed_in_code(site, client, Flow(rp), address)
        # Signed in: a plain request gets its code at once.
        at_client(client.get(Flow(rp).url))
        relog = Flow(rp, prompt="login")
        first = client.get(relog.url)
        assert first.status_code == 303
        assert first.headers["location"].endswith("&reauth=1")
        # The login page does not skip ahead for a reauth, though a login is live.
        assert client.get(first.headers["location"]).status_code == 200
        # A marker that is not the server's is ignored: still the login.
        for forged in ("1.deadbeef", "99999999999.00", f"{int(site.clock.now()) - 5}.x", "abc"):
            r = client.get(relog.url + "&" + urlencode({MARK: forged}))
            assert r.status_code == 303, forged
            assert r.headers["location"].startswith("/login?next=")
        # Signing in again through the login page gives the code, with the new auth_time.
        site.clock.advance(30)
        answer = at_client(log_in_from(client, client.get(relog.url), address))
        tokens = relog.exchange(site, answer["code"])
        assert tokens.status_code == 200, tokens.text
        claims = pyjwt.decode(tokens.json()["id_token"], options={"verify_signature": False})
        assert claims["auth_time"] == int(site.clock.now())
        # The next prompt=login asks once more: the login just made does not carry over.
        again = client.get(Flow(rp, prompt="login").url)
        assert again.status_code == 303
        assert again.headers["location"].endswith("&reauth=1")


def flow_code_ok(site: LiveServer, flow: Flow, answer: dict[str, str]) -> bool:
    r = flow.exchange(site, answer["code"])
    assert r.status_code == 200, r.text
    return True


def test_max_age_sends_an_old_login_to_log_in_again(site: LiveServer, admin: str) -> None:
    rp = new_client(site, admin, first_party=True)
    address = account(site)
    with browser(site) as client:
        signed_in_code(site, client, Flow(rp), address)
        site.clock.advance(120)
        young = Flow(rp, max_age="600")
        at_client(client.get(young.url))  # 120 s old: within 600
        old = Flow(rp, max_age="60")
        r = client.get(old.url)
        assert r.status_code == 303
        assert r.headers["location"].endswith("&reauth=1")
        answer = at_client(log_in_from(client, r, address))
        tokens = old.exchange(site, answer["code"]).json()
        claims = pyjwt.decode(tokens["id_token"], options={"verify_signature": False})
        assert claims["auth_time"] == int(site.clock.now())
        # prompt=none with a login past max_age: login_required back at the client.
        site.clock.advance(120)
        none = Flow(rp, max_age="60", prompt="none")
        answer = at_client(client.get(none.url))
        assert answer["error"] == "login_required"
        assert answer["state"] == none.params["state"]


def test_bad_max_age_and_prompt_are_errors_at_the_client(site: LiveServer, admin: str) -> None:
    rp = new_client(site, admin)
    with browser(site) as client:
        for more in ({"max_age": "-1"}, {"max_age": "1e3"}, {"prompt": "none login"}):
            answer = at_client(client.get(Flow(rp, **more).url))
            assert answer["error"] == "invalid_request", more
            assert answer["iss"] == site.settings.issuer


# --- consent -----------------------------------------------------------------------------


def test_consent_is_asked_remembered_and_asked_again_for_prompt_consent(
    site: LiveServer, admin: str
) -> None:
    rp = new_client(site, admin)
    address = account(site)
    flow = Flow(rp)
    with browser(site) as client:
        page = log_in_from(client, client.get(flow.url), address)
        assert page.status_code == 200
        assert "Example RP" in page.text
        assert "See your email address" in page.text
        assert page.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert '<button type="submit" name="decision" value="allow">' in page.text
        answer = at_client(consent(client, page))
        assert answer["state"] == flow.params["state"]
        assert answer["iss"] == site.settings.issuer
        assert flow_code_ok(site, flow, answer)
        # Remembered: the next request of the same scope goes straight back with a code.
        again = Flow(rp)
        assert "code" in at_client(client.get(again.url))
        # A wider scope than the one consented to asks again.
        wider = client.get(Flow(rp, scope="openid email profile").url)
        assert wider.status_code == 200
        assert "See your name" in wider.text
        # prompt=consent asks again, though the consent covers the scope.
        asked = client.get(Flow(rp, prompt="consent").url)
        assert asked.status_code == 200
        assert 'action="/authorize/consent"' in asked.text
        # prompt=none without a consent for the scope: consent_required at the client.
        none = at_client(client.get(Flow(rp, scope="openid profile", prompt="none").url))
        assert none["error"] == "consent_required"


def test_deny_sends_access_denied_with_state_and_iss(site: LiveServer, admin: str) -> None:
    rp = new_client(site, admin)
    address = account(site)
    flow = Flow(rp)
    with browser(site) as client:
        page = log_in_from(client, client.get(flow.url), address)
        answer = at_client(consent(client, page, decision="deny"))
        assert answer["error"] == "access_denied"
        assert answer["state"] == flow.params["state"]
        assert answer["iss"] == site.settings.issuer
        assert "code" not in answer
        # Nothing was remembered: the consent page again.
        assert client.get(Flow(rp).url).status_code == 200


def test_consent_without_csrf_is_refused_and_grants_nothing(site: LiveServer, admin: str) -> None:
    rp = new_client(site, admin)
    address = account(site)
    flow = Flow(rp)
    with browser(site) as client:
        page = log_in_from(client, client.get(flow.url), address)
        assert page.status_code == 200
        request = urlencode(flow.params)
        for data, headers in (
            ({"request": request, "decision": "allow"}, {}),
            ({"request": request, "decision": "allow", "csrf": "x" * 43}, {}),
            (
                {"request": request, "decision": "allow", "csrf": csrf_in(page.text)},
                {"Origin": "https://evil.example"},
            ),
            (
                {"request": request, "decision": "allow", "csrf": csrf_in(page.text)},
                {"Sec-Fetch-Site": "cross-site"},
            ),
        ):
            r = client.post("/authorize/consent", data=data, headers=headers)
            assert r.status_code == 403, (data, headers, r.status_code)
            assert "csrf_failed" in r.text
            assert "location" not in r.headers
        # Nothing was granted: the consent page again, and prompt=none says so.
        assert client.get(Flow(rp).url).status_code == 200
        assert at_client(client.get(Flow(rp, prompt="none").url))["error"] == "consent_required"
    with site.db() as db:
        count = db.execute(
            "SELECT COUNT(*) FROM consents WHERE client_id = ?", (rp["client_id"],)
        ).fetchone()[0]
    assert count == 0


def test_the_client_name_and_the_request_are_escaped_on_the_consent_page(
    site: LiveServer, admin: str
) -> None:
    rp = new_client(site, admin, name="<img src=x onerror=alert(1)>\"'")
    address = account(site)
    flow = Flow(rp, state='"><script>alert(1)</script>', nonce="</form><form action=//evil>")
    with browser(site) as client:
        page = log_in_from(client, client.get(flow.url), address)
        assert page.status_code == 200
        assert "<img src=x" not in page.text
        assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
        assert "<script>alert" not in page.text
        assert "</form><form" not in page.text
        assert page.text.count("<form") == 1
        # The hidden request is the request, exactly, once unescaped.
        answer = at_client(consent(client, page))
    assert answer["state"] == flow.params["state"]


def test_a_first_party_client_skips_the_consent(site: LiveServer, admin: str) -> None:
    rp = new_client(site, admin, first_party=True)
    address = account(site)
    flow = Flow(rp, scope="openid profile email")
    with browser(site) as client:
        answer = at_client(log_in_from(client, client.get(flow.url), address))
    assert flow_code_ok(site, flow, answer)


# --- the hosted login's end --------------------------------------------------------------


def test_a_code_whose_hosted_login_ended_is_refused(site: LiveServer, admin: str) -> None:
    rp = new_client(site, admin, first_party=True)
    address = account(site)
    flow = Flow(rp)
    with browser(site) as client:
        answer = at_client(log_in_from(client, client.get(flow.url), address))
        signed_out = post_form(client, "/logout", {})
        assert signed_out.status_code == 200
        assert "You are signed out" in signed_out.text
    r = flow.exchange(site, answer["code"])
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")


def test_end_session_asks_first_and_a_get_ends_nothing(site: LiveServer, admin: str) -> None:
    rp = new_client(site, admin, first_party=True)
    address = account(site)
    flow = Flow(rp)
    with browser(site) as client:
        tokens = flow.exchange(site, signed_in_code(site, client, flow, address)["code"]).json()
        query = {
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": LOGOUT_REDIRECT,
            "state": "bye-1",
        }
        page = client.get("/logout?" + urlencode(query))
        assert page.status_code == 200
        assert "Example RP" in page.text
        assert 'method="post" action="/logout"' in page.text
        assert (
            "form-action 'self' https://rp.example.com" in (page.headers["content-security-policy"])
        )
        # The GET ended nothing: the login goes on, and so do the client's tokens.
        assert client.get("/account").status_code == 200
        assert site.http.get("/userinfo", headers=bearer(tokens["access_token"])).status_code == 200
        # A POST without the CSRF token ends nothing either.
        refused = client.post("/logout", data=query)
        assert refused.status_code == 403
        assert client.get("/account").status_code == 200
        # The confirmed POST ends the login and the client's session, then goes back.
        done = post_form(client, "/logout", query, page="/logout?" + urlencode(query))
        assert done.status_code == 303
        assert done.headers["location"] == LOGOUT_REDIRECT + "?state=bye-1"
        assert client.get("/account").status_code == 303
    r = site.http.get("/userinfo", headers=bearer(tokens["access_token"]))
    assert r.status_code == 401
    refreshed = site.http.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        headers=basic(rp["client_id"], rp["client_secret"]),
    )
    assert refreshed.status_code == 400


def test_end_session_refuses_an_unregistered_post_logout_redirect(
    site: LiveServer, admin: str
) -> None:
    rp = new_client(site, admin)
    with browser(site) as client:
        for target in (
            "https://evil.example/bye",
            LOGOUT_REDIRECT + "/",
            LOGOUT_REDIRECT.upper(),
            "https://rp.example.com@evil.example/bye",
        ):
            q = urlencode({"client_id": rp["client_id"], "post_logout_redirect_uri": target})
            r = client.get("/logout?" + q)
            assert r.status_code == 400, target
            assert "location" not in r.headers
        # Without a client, no redirect at all.
        r = client.get("/logout?" + urlencode({"post_logout_redirect_uri": LOGOUT_REDIRECT}))
        assert r.status_code == 400
