"""The admin console over HTTP against a real server: who may use it (every route of its
router, enumerated, GET and POST), CSRF on every form, the re-authentication that the
most dangerous actions cannot skip, escaping, and each action as the admin API sees it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pyotp
import pytest
from fastapi.routing import APIRoute

from _support.http import PASSWORD, bearer, new_email
from api.server import LiveServer, running_server
from authgate.web._console import console_admin, route_paths
from authgate.web._console import router as console_router

from ._browser import browser, csrf_in, sign_in

MANY_MAILS = {"AUTHGATE_MAIL_IP_LIMIT": "1000000", "AUTHGATE_MAIL_LIMIT": "1000"}
ROUTES = route_paths()
POSTS = [path for method, path in ROUTES if method == "POST"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the module (each test uses its own accounts and cookie jars)."""
    with running_server(tmp_path_factory.mktemp("console"), MANY_MAILS) as live:
        yield live


class World:
    """An admin (signed in through the hosted login, and with an API token), and one
    user, one role and one client to act on."""

    def __init__(self, site: LiveServer, client: httpx.Client) -> None:
        self.site = site
        self.client = client
        self.admin_email = new_email("admin")
        self.api = site.make_admin(self.admin_email)
        self.role = "r" + new_email().split("@")[0].replace("-", "")[-12:]
        self.admin_post("/admin/roles", {"name": self.role, "permissions": ["posts:read"]})
        self.email = new_email()
        tokens = site.register(self.email, name="Target")
        self.user_id = self.me(tokens["access_token"])["id"]
        self.admin_patch(f"/admin/users/{self.user_id}", {"roles": [self.role]})
        self.user_tokens = site.login(self.email)  # a role change ended the first token
        created = self.admin_post("/admin/clients", {"name": "svc", "scopes": ["posts:read"]})
        self.client_id = created["client_id"]
        r = sign_in(client, self.admin_email)
        assert r.status_code == 303, r.text

    def me(self, token: str) -> Any:
        r = self.site.http.get("/auth/me", headers=bearer(token))
        assert r.status_code == 200, r.text
        return r.json()

    def admin_get(self, path: str) -> Any:
        r = self.site.http.get(path, headers=bearer(self.api))
        assert r.status_code == 200, r.text
        return r.json()

    def admin_post(self, path: str, body: dict[str, Any]) -> Any:
        r = self.site.http.post(path, json=body, headers=bearer(self.api))
        assert r.status_code in (200, 201), r.text
        return r.json()

    def admin_patch(self, path: str, body: dict[str, Any]) -> Any:
        r = self.site.http.patch(path, json=body, headers=bearer(self.api))
        assert r.status_code == 200, r.text
        return r.json()

    def user(self) -> Any:
        return self.admin_get(f"/admin/users/{self.user_id}")

    def sessions(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = self.admin_get(f"/admin/sessions?user={self.user_id}")
        return out

    def path(self, template: str, sid: str = "sid_x") -> str:
        """A route's template with this world's ids."""
        return (
            template.replace("{user_id}", self.user_id)
            .replace("{sid}", sid)
            .replace("{name}", self.role)
            .replace("{client_id}", self.client_id)
        )

    def token(self) -> str:
        return csrf_in(self.client.get("/logout").text)  # the same token on every page

    def post(self, path: str, data: dict[str, str] | None = None) -> httpx.Response:
        """POST a console form with this browser's CSRF token."""
        return self.client.post(path, data={"csrf": self.token(), **(data or {})})


@pytest.fixture
def world(site: LiveServer) -> Iterator[World]:
    with browser(site) as client:
        yield World(site, client)


def state(world: World) -> tuple[Any, ...]:
    """What any console action could change, read through the admin API."""
    user = world.user()
    return (
        user,
        sorted(s["sid"] for s in world.sessions()),
        world.admin_get("/admin/roles"),
        world.admin_get("/admin/clients"),
        world.admin_get("/admin/keys"),
    )


# --- who may use it ----------------------------------------------------------------------


def test_every_console_route_is_behind_the_admin_guard() -> None:
    """Each route of the console's router (what the tests below enumerate) carries the
    router's guard, which runs before any form is read."""
    assert {path for _, path in ROUTES} >= {"/console", "/console/users", "/console/health"}
    for route in console_router.routes:
        assert isinstance(route, APIRoute)
        guards = [d.call for d in route.dependant.dependencies]
        assert console_admin in guards, route.path
    assert len(POSTS) >= 15


@pytest.mark.parametrize(("method", "template"), ROUTES)
def test_a_non_admin_gets_403_on_every_console_route(
    site: LiveServer, world: World, method: str, template: str
) -> None:
    before = state(world)
    outsider = new_email("outsider")
    site.register(outsider)
    with browser(site) as client:
        assert sign_in(client, outsider).status_code == 303
        token = csrf_in(client.get("/login?reauth=1").text)
        path = world.path(template)
        data = {
            "csrf": token,
            "password": PASSWORD,
            "role": world.role,
            "name": "x",
            "permissions": "authgate:admin",
        }
        r = client.request(method, path, data=data if method == "POST" else None)
        assert r.status_code == 403, (method, path, r.status_code)
        assert "insufficient_scope" in r.text
        assert 'role="alert"' in r.text
        assert world.email not in r.text
    assert state(world) == before


@pytest.mark.parametrize(("method", "template"), ROUTES)
def test_not_signed_in_goes_to_the_login(
    site: LiveServer, world: World, method: str, template: str
) -> None:
    before = state(world)
    with browser(site) as client:
        token = csrf_in(client.get("/login").text)
        r = client.request(
            method, world.path(template), data={"csrf": token} if method == "POST" else None
        )
    assert r.status_code == 303
    assert r.headers["location"].startswith("/login")
    if method == "GET":
        assert r.headers["location"].startswith("/login?next=%2Fconsole")
    assert state(world) == before


def test_an_admin_whose_role_is_taken_away_is_refused_at_once(
    site: LiveServer, world: World
) -> None:
    assert world.client.get("/console").status_code == 200
    me = world.me(world.api)
    world.site.call(world.site.services.directory.set_roles(me["id"], []))
    assert world.client.get("/console").status_code == 403
    assert world.client.post("/console/roles", data={"csrf": world.token()}).status_code == 403


# --- CSRF --------------------------------------------------------------------------------


@pytest.mark.parametrize("template", POSTS)
@pytest.mark.parametrize("how", ["missing", "wrong", "other_browser"])
def test_every_console_form_refuses_a_missing_or_wrong_csrf_token(
    site: LiveServer, world: World, template: str, how: str
) -> None:
    sid = world.sessions()[0]["sid"]
    before = state(world)
    data = {"password": PASSWORD, "role": world.role, "name": "csrf-role"}
    data |= {"permissions": "x:y", "kind": "service", "scopes": "posts:read"}
    if how == "wrong":
        data["csrf"] = "A" * 43
    elif how == "other_browser":
        with browser(site) as other:
            data["csrf"] = csrf_in(other.get("/login").text)
    r = world.client.post(world.path(template, sid), data=data)
    assert r.status_code == 403, (template, r.status_code)
    assert "csrf_failed" in r.text
    assert state(world) == before


def test_a_cross_site_console_post_is_refused_even_with_the_token(world: World) -> None:
    r = world.client.post(
        f"/console/users/{world.user_id}/disable",
        data={"csrf": world.token()},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert r.status_code == 403
    assert world.user()["disabled"] is False


# --- a GET changes nothing ---------------------------------------------------------------


def test_every_console_get_changes_nothing(world: World) -> None:
    sid = world.sessions()[0]["sid"]
    before = state(world)
    for method, template in ROUTES:
        if method == "GET":
            r = world.client.get(world.path(template, sid))
            assert r.status_code == 200, (template, r.status_code, r.text[:300])
            assert "<script" not in r.text
            assert "style=" not in r.text
            assert r.headers["cache-control"] == "no-store"
            assert "form-action 'self'" in r.headers["content-security-policy"]
    assert state(world) == before


def test_the_confirm_pages_post_their_button(world: World) -> None:
    for what in ("disable", "delete", "mfa-reset", "sessions/end-all"):
        page = world.client.get(f"/console/users/{world.user_id}/{what}").text
        assert f'method="post" action="/console/users/{world.user_id}/{what}"' in page
        assert '<button type="submit"' in page
    delete = world.client.get(f"/console/users/{world.user_id}/delete").text
    assert 'autocomplete="current-password"' in delete
    assert 'for="password"' in delete
    disable = world.client.get(f"/console/users/{world.user_id}/disable").text
    assert 'name="password"' not in disable


# --- re-authentication -------------------------------------------------------------------


def _enrol_totp(site: LiveServer, access: str) -> pyotp.TOTP:
    secret = site.http.post("/auth/mfa/totp", headers=bearer(access)).json()["secret"]
    totp = pyotp.TOTP(secret)
    r = site.http.post(
        "/auth/mfa/totp/confirm",
        json={"code": totp.at(site.clock.now())},
        headers=bearer(access),
    )
    assert r.status_code == 200, r.text
    site.clock.advance(30)  # a code is used once
    return totp


@pytest.mark.parametrize("what", ["delete", "mfa-reset", "rotate"])
@pytest.mark.parametrize("password", [None, "", "wrong password 123"])
def test_the_reauthentication_cannot_be_skipped(
    site: LiveServer, world: World, what: str, password: str | None
) -> None:
    if what == "mfa-reset":
        _enrol_totp(site, world.user_tokens["access_token"])
    path = "/console/keys/rotate" if what == "rotate" else f"/console/users/{world.user_id}/{what}"
    before = state(world)
    admin_id = world.me(world.api)["id"]
    data = {} if password is None else {"password": password}
    r = world.post(path, data)
    assert r.status_code == 401, r.text
    assert 'role="alert"' in r.text
    expected = "The password is wrong. Nothing was changed."
    assert expected in r.text
    assert state(world) == before
    events = {e["event"] for e in world.admin_get(f"/admin/audit?user={admin_id}&limit=1000")}
    assert "password_check_failed" in events
    events |= {e["event"] for e in world.admin_get(f"/admin/audit?user={world.user_id}")}
    assert not {"user_deleted", "mfa_reset", "key_rotated"} & events
    # A code is no way around the password for an admin without TOTP.
    r = world.post(path, {"code": "123456"})
    assert r.status_code == 401
    assert state(world) == before


def test_the_reauthentication_goes_through_the_login_throttle(
    site: LiveServer, world: World
) -> None:
    path = f"/console/users/{world.user_id}/delete"
    statuses = [world.post(path, {"password": "wrong password 123"}).status_code for _ in range(10)]
    assert statuses[-1] == 429
    r = world.post(path, {"password": PASSWORD})  # locked: the right password too
    assert r.status_code == 429
    assert "Too many wrong attempts" in r.text
    assert "retry-after" in r.headers
    assert world.user()["email"] == world.email


def test_delete_mfa_reset_and_rotate_with_the_password(site: LiveServer, world: World) -> None:
    _enrol_totp(site, world.user_tokens["access_token"])
    assert world.user()["mfa"]["totp"] is True
    r = world.post(f"/console/users/{world.user_id}/mfa-reset", {"password": PASSWORD})
    assert r.status_code == 303
    assert r.headers["location"] == f"/console/users/{world.user_id}?done=mfa_reset"
    assert world.user()["mfa"] == {"totp": False, "passkeys": 0, "recovery_codes_left": 0}
    assert "Every second factor of the user is off" in world.client.get(r.headers["location"]).text

    keys = world.admin_get("/admin/keys")
    current = {k["kid"] for k in keys if k["state"] == "current"}
    r = world.post("/console/keys/rotate", {"password": PASSWORD})
    assert r.status_code == 303
    after = world.admin_get("/admin/keys")
    assert {k["kid"] for k in after if k["state"] == "retiring"} >= current
    assert not current & {k["kid"] for k in after if k["state"] == "current"}
    audit = world.admin_get("/admin/audit?event=key_rotated")
    assert audit[-1]["user_id"] == world.me(world.api)["id"]

    r = world.post(f"/console/users/{world.user_id}/delete", {"password": PASSWORD})
    assert r.status_code == 303
    assert r.headers["location"] == "/console/users?done=deleted"
    gone = site.http.get(f"/admin/users/{world.user_id}", headers=bearer(world.api))
    assert gone.status_code == 404
    me = site.http.get("/auth/me", headers=bearer(world.user_tokens["access_token"]))
    assert me.status_code == 401


def test_an_admin_with_totp_confirms_with_a_code(site: LiveServer) -> None:
    with browser(site) as client:
        world = World(site, client)
        totp = _enrol_totp(site, world.api)
        # The admin's login now needs the code: sign in again with both steps.
        client.cookies.clear()
        r = sign_in(client, world.admin_email)
        assert r.headers["location"].startswith("/login/mfa")
        page = client.get("/login/mfa").text
        r = client.post(
            "/login/mfa", data={"csrf": csrf_in(page), "code": totp.at(site.clock.now())}
        )
        assert r.status_code == 303
        site.clock.advance(30)
        confirm = client.get("/console/keys/rotate").text
        assert 'autocomplete="one-time-code"' in confirm
        before = world.admin_get("/admin/keys")
        r = world.post("/console/keys/rotate", {"code": "000000"})
        if totp.at(site.clock.now()) != "000000":
            assert r.status_code == 401
            assert "This code is wrong" in r.text
            assert world.admin_get("/admin/keys") == before
        r = world.post("/console/keys/rotate", {"code": totp.at(site.clock.now())})
        assert r.status_code == 303
        assert world.admin_get("/admin/keys") != before


# --- escaping ----------------------------------------------------------------------------


def test_markup_in_names_emails_and_user_agents_is_text(site: LiveServer, world: World) -> None:
    name = "<script>alert(1)</script>&amp;"
    address = new_email("x")
    site.register(address, name=name)
    ua = "<script>alert('ua')</script> Evil/1.0"
    login = site.http.post(
        "/auth/login", json={"email": address, "password": PASSWORD}, headers={"User-Agent": ua}
    )
    assert login.status_code == 200
    uid = world.me(login.json()["access_token"])["id"]
    page = world.client.get(f"/console/users/{uid}").text
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;amp;" in page
    assert "&lt;script&gt;alert(&#39;ua&#39;)&lt;/script&gt; Evil/1.0" in page
    listing = world.client.get("/console/users", params={"q": address}).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listing
    searched = world.client.get("/console/users", params={"q": '"><script>x</script>'}).text
    assert "<script>x" not in searched
    assert "&#34;&gt;&lt;script&gt;x&lt;/script&gt;" in searched

    r = world.post(
        "/console/clients",
        {"name": "<img src=x onerror=alert(1)>", "kind": "service", "scopes": "posts:read"},
    )
    assert r.status_code == 201
    assert "<img src=x" not in r.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in r.text
    assert "<img src=x" not in world.client.get("/console/clients").text
    audit = world.client.get("/console/audit", params={"user": "<b>x</b>"}).text
    assert "<b>x</b>" not in audit


# --- each action, as the admin API sees it --------------------------------------------------


def test_search_and_pages(site: LiveServer, world: World) -> None:
    tag = new_email("findme").split("@")[0]
    emails = sorted(f"{tag}-{i}@example.com" for i in range(30))
    for e in emails:
        site.register(e)
    page = world.client.get("/console/users", params={"q": tag.upper()}).text
    shown = re.findall(rf"{tag}-\d+@example\.com", page)
    assert len(set(shown)) == 25
    nxt = re.search(r'href="(/console/users\?after=[^"]+)" rel="next"', page)
    assert nxt is not None
    second = world.client.get(nxt.group(1).replace("&amp;", "&")).text
    rest = set(re.findall(rf"{tag}-\d+@example\.com", second))
    assert len(rest) == 5
    assert rest | set(shown) == set(emails)
    assert 'rel="next"' not in second
    # The admin API filters alike.
    api = world.admin_get(f"/admin/users?email={tag}&limit=200")
    assert sorted(u["email"] for u in api["users"]) == emails
    none = world.client.get("/console/users", params={"q": "no-such-" + tag}).text
    assert "No user has an email address that contains" in none


def test_user_actions_show_through_the_admin_api(site: LiveServer, world: World) -> None:
    page = world.client.get(f"/console/users/{world.user_id}").text
    assert world.email in page
    assert world.role in page

    # Roles: removed; the user's access token dies (the epoch moved).
    site.clock.advance(1)
    r = world.post(f"/console/users/{world.user_id}/roles", {})
    assert r.status_code == 303
    assert world.user()["roles"] == []
    me = site.http.get("/auth/me", headers=bearer(world.user_tokens["access_token"]))
    assert me.status_code == 401
    assert world.client.get(r.headers["location"]).text.count("The roles are saved") == 1
    r = world.client.post(
        f"/console/users/{world.user_id}/roles",
        data={"csrf": world.token(), "role": [world.role]},
    )
    assert r.status_code == 303
    assert world.user()["roles"] == [world.role]
    # An unknown role: refused in words, nothing changed.
    r = world.post(f"/console/users/{world.user_id}/roles", {"role": "no-such-role"})
    assert r.status_code == 404
    assert world.user()["roles"] == [world.role]

    # Verify the address.
    assert world.user()["email_verified"] is False
    assert world.post(f"/console/users/{world.user_id}/verify").status_code == 303
    assert world.user()["email_verified"] is True

    # A reset link.
    assert world.post(f"/console/users/{world.user_id}/reset-link").status_code == 303
    sent = world.admin_get(f"/admin/audit?user={world.user_id}&event=password_reset_sent")
    assert sent[-1]["detail"] == {"by": "admin"}

    # Sessions: end one, then every one.
    fresh = site.login(world.email)
    sids = [s["sid"] for s in world.sessions()]
    assert len(sids) >= 2
    r = world.post(f"/console/users/{world.user_id}/sessions/{sids[0]}/end")
    assert r.status_code == 303
    assert sids[0] not in [s["sid"] for s in world.sessions()]
    r = world.post(f"/console/users/{world.user_id}/sessions/sid_nope/end")
    assert r.status_code == 404
    r = world.post(f"/console/users/{world.user_id}/sessions/end-all")
    assert r.status_code == 303
    assert world.sessions() == []
    me = site.http.get("/auth/me", headers=bearer(fresh["access_token"]))
    assert me.status_code == 401

    # Disable, enable.
    assert world.post(f"/console/users/{world.user_id}/disable").status_code == 303
    assert world.user()["disabled"] is True
    assert "Enable the user" in world.client.get(f"/console/users/{world.user_id}").text
    assert world.post(f"/console/users/{world.user_id}/enable").status_code == 303
    assert world.user()["disabled"] is False

    # An unknown user.
    assert world.client.get("/console/users/usr_nope").status_code == 404
    assert world.post("/console/users/usr_nope/disable").status_code == 404


def test_roles_show_through_the_admin_api(world: World) -> None:
    name = "console-" + new_email().split("@")[0][-8:]
    r = world.post("/console/roles", {"name": name, "permissions": "a:read\nb:write, c:x"})
    assert r.status_code == 303
    assert world.admin_get(f"/admin/roles/{name}")["permissions"] == ["a:read", "b:write", "c:x"]
    again = world.post("/console/roles", {"name": name, "permissions": ""})
    assert again.status_code == 409
    assert "A role with this name exists already." in again.text
    bad = world.post("/console/roles", {"name": "Bad Name", "permissions": ""})
    assert bad.status_code == 400
    assert "The name is not valid" in bad.text
    assert 'aria-invalid="true"' in bad.text
    bad = world.post("/console/roles", {"name": name + "x", "permissions": 'q"uote'})
    assert bad.status_code == 400
    assert "A permission is not valid" in bad.text

    r = world.post(f"/console/roles/{name}", {"permissions": "z:z"})
    assert r.status_code == 303
    assert world.admin_get(f"/admin/roles/{name}")["permissions"] == ["z:z"]
    assert world.post(f"/console/roles/{name}/delete").status_code == 303
    r = world.site.http.get(f"/admin/roles/{name}", headers=bearer(world.api))
    assert r.status_code == 404
    assert world.client.get(f"/console/roles/{name}").status_code == 404


def test_clients_show_through_the_admin_api_and_the_secret_once(world: World) -> None:
    r = world.post(
        "/console/clients", {"name": "Reports", "kind": "service", "scopes": "posts:read"}
    )
    assert r.status_code == 201
    assert r.headers["cache-control"] == "no-store"
    client_id = re.search(r'id="client-id">([^<]+)<', r.text)
    secret = re.search(r'id="client-secret" class="secret">([^<]+)<', r.text)
    assert client_id is not None
    assert secret is not None
    cid, value = client_id.group(1), secret.group(1)
    listed = {c["client_id"]: c for c in world.admin_get("/admin/clients")}
    assert listed[cid]["scopes"] == ["posts:read"]
    assert listed[cid]["auth_method"] == "client_secret_basic"
    token = world.site.http.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(cid, value)
    )
    assert token.status_code == 200, token.text
    for path in ("/console/clients", f"/console/clients/{cid}/delete", "/console/audit"):
        assert value not in world.client.get(path).text

    r = world.post(
        "/console/clients",
        {
            "name": "Web app",
            "kind": "oidc",
            "redirect_uris": "https://app.example.com/cb\nhttp://127.0.0.1:9000/cb",
            "post_logout_redirect_uris": "https://app.example.com/bye",
            "public": "on",
            "first_party": "on",
        },
    )
    assert r.status_code == 201
    assert "This client has no secret: it is public." in r.text
    oidc = [c for c in world.admin_get("/admin/clients") if c["name"] == "Web app"][-1]
    assert oidc["redirect_uris"] == ["https://app.example.com/cb", "http://127.0.0.1:9000/cb"]
    assert oidc["post_logout_redirect_uris"] == ["https://app.example.com/bye"]
    assert oidc["public"] is True
    assert oidc["first_party"] is True
    assert oidc["scopes"] == ["email", "openid", "profile"]

    bad = world.post(
        "/console/clients",
        {"name": "Bad", "kind": "oidc", "redirect_uris": "http://evil.example/cb"},
    )
    assert bad.status_code == 400
    assert "A redirect URI is not valid" in bad.text
    assert 'value="Bad"' in bad.text
    mixed = world.post("/console/clients", {"name": "Bad", "kind": "oidc"})
    assert mixed.status_code == 400
    assert "needs at least one redirect URI" in mixed.text
    scope = world.post("/console/clients", {"name": "Bad", "kind": "service", "scopes": "nope:x"})
    assert scope.status_code == 400
    assert "A scope is not allowed" in scope.text

    assert world.post(f"/console/clients/{cid}/delete").status_code == 303
    listed = {c["client_id"]: c for c in world.admin_get("/admin/clients")}
    assert listed[cid]["revoked_at"] is not None
    again = world.site.http.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(cid, value)
    )
    assert again.status_code == 401
    assert world.post(f"/console/clients/{cid}/delete").status_code == 404


def test_keys_audit_and_health_pages(world: World) -> None:
    keys = world.client.get("/console/keys").text
    for k in world.admin_get("/admin/keys"):
        assert k["kid"] in keys
    assert '<th scope="col">State</th>' in keys

    audit = world.client.get("/console/audit", params={"user": world.email}).text
    assert "Check the hash chain" in audit  # not walked on every view
    checked = world.client.get("/console/audit", params={"verify": "1"}).text
    assert "The hash chain verifies" in checked
    assert "user_created" in audit
    by_event = world.client.get("/console/audit", params={"event": "roles_changed"}).text
    assert "roles_changed" in by_event
    assert "user_created" not in by_event

    health = world.client.get("/console/health").text
    assert "reachable" in health
    assert "unreachable" not in health
    assert "not configured" in health  # no Redis here
    for k in world.admin_get("/admin/keys"):
        if k["state"] == "current":
            assert k["kid"] in health


def test_a_broken_audit_chain_shows(tmp_path: Any) -> None:
    import sqlite3

    with running_server(tmp_path, MANY_MAILS) as live, browser(live) as client:
        world = World(live, client)
        with sqlite3.connect(live.db_path) as db:
            db.execute("UPDATE audit_events SET event = 'edited' WHERE id = 2")
        page = client.get("/console/audit", params={"verify": "1"}).text
        assert "The hash chain is broken at event 2" in page
        assert 'role="alert"' in page
        assert world.user_id
