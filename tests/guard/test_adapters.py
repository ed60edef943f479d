"""Each adapter on a real app server (uvicorn for FastAPI and Starlette, werkzeug for Flask)
against a real authgate server: 401/403/200 per RFC 6750, and revocation end to end."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from authgate.errors import TokenRevoked
from authgate.guard import Guard

from ._apps import fastapi_app, flask_app, starlette_app
from ._support import (
    AppServer,
    AuthServer,
    WsgiServer,
    bearer,
    eventually,
    make_guard,
)

PASSWORD = "correct horse battery staple 42"
NEW_PASSWORD = "a brand new passphrase 77"
ADAPTERS = ["fastapi", "fastapi+middleware", "starlette", "flask"]
MIDDLEWARE_ADAPTERS = {"fastapi+middleware", "starlette", "flask"}


@dataclass
class People:
    auth: AuthServer
    admin_token: str

    def user(self, email: str, roles: list[str]) -> dict[str, Any]:
        async def create() -> None:
            await self.auth.services.accounts.create_user(email, PASSWORD, roles=roles)

        self.auth.call(create())
        return self.login(email)

    def login(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        r = self.auth.http.post("/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def admin(self) -> dict[str, str]:
        return bearer(self.admin_token)


@pytest.fixture(scope="module")
def people(auth: AuthServer, admin: str) -> People:
    async def roles() -> None:
        await auth.services.directory.put_role("viewer", ["posts:read"])
        await auth.services.directory.put_role("editor", ["posts:read", "posts:write"])

    auth.call(roles())
    return People(auth, admin)


@pytest.fixture(scope="module")
def viewer(people: People) -> dict[str, Any]:
    return people.user("viewer@example.com", ["viewer"])


@pytest.fixture(scope="module")
def editor(people: People) -> dict[str, Any]:
    return people.user("editor@example.com", ["editor", "admin"])


@pytest.fixture(scope="module")
def nobody(people: People) -> dict[str, Any]:
    return people.user("nobody@example.com", [])


@dataclass
class Adapter:
    name: str
    http: httpx.Client
    guard: Guard


@pytest.fixture(scope="module", params=ADAPTERS)
def adapter(
    request: pytest.FixtureRequest, auth: AuthServer, creds: tuple[str, str]
) -> Iterator[Adapter]:
    name: str = request.param
    guard = make_guard(auth, creds)
    if name.startswith("fastapi"):
        server: AppServer | WsgiServer = AppServer(
            fastapi_app(guard, middleware=name.endswith("middleware"))
        )
    elif name == "starlette":
        server = AppServer(starlette_app(guard))
    else:
        server = WsgiServer(flask_app(guard))
    with server as http:
        yield Adapter(name, http, guard)
    guard.close_sync()


def assert_challenge(r: httpx.Response, status: int, header: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["www-authenticate"] == header
    assert r.headers["cache-control"] == "no-store"


INVALID = 'Bearer error="invalid_token"'


def test_a_public_route_needs_nothing(adapter: Adapter) -> None:
    r = adapter.http.get("/public")
    assert r.status_code == 200
    assert r.json()["ok"] is True


def test_no_token_is_401_with_a_bare_bearer_challenge(adapter: Adapter) -> None:
    for path in ("/me", "/posts", "/admin"):
        assert_challenge(adapter.http.get(path), 401, "Bearer")
    assert_challenge(adapter.http.post("/posts"), 401, "Bearer")


@pytest.mark.parametrize(
    "value",
    ["Bearer not-a-jwt", "Bearer a.b.c", "Bearer " + "x" * 9000, "bearer e30.e30.e30", "Bearer"],
)
def test_an_invalid_token_is_401_invalid_token(adapter: Adapter, value: str) -> None:
    r = adapter.http.get("/me", headers={"Authorization": value})
    assert_challenge(r, 401, INVALID)
    assert r.status_code != 500


def test_a_token_in_the_query_string_is_ignored(adapter: Adapter, viewer: dict[str, Any]) -> None:
    token = viewer["access_token"]
    for name in ("access_token", "token", "jwt"):
        r = adapter.http.get("/me", params={name: token})
        assert_challenge(r, 401, "Bearer")


def test_other_authorization_schemes_are_not_a_bearer_token(adapter: Adapter) -> None:
    r = adapter.http.get("/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_challenge(r, 401, "Bearer")


def test_a_valid_token_gives_200_and_the_principal(
    adapter: Adapter, viewer: dict[str, Any], auth: AuthServer
) -> None:
    token = viewer["access_token"]
    me = auth.http.get("/auth/me", headers=bearer(token)).json()
    for path in ("/me", "/posts"):
        r = adapter.http.get(path, headers=bearer(token))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["sub"] == me["id"]
        assert body["sid"].startswith("sid_")
        assert body["roles"] == ["viewer"]
        assert body["permissions"] == ["posts:read"]
        assert body["client_id"] == "authgate"


def test_a_missing_permission_is_403_insufficient_scope(
    adapter: Adapter, viewer: dict[str, Any], editor: dict[str, Any]
) -> None:
    r = adapter.http.post("/posts", headers=bearer(viewer["access_token"]))
    assert_challenge(r, 403, 'Bearer error="insufficient_scope", scope="posts:write"')
    r = adapter.http.post("/posts", headers=bearer(editor["access_token"]))
    assert r.status_code == 200, r.text
    assert {"posts:read", "posts:write"} <= set(r.json()["permissions"])


def test_a_missing_role_is_403(
    adapter: Adapter, viewer: dict[str, Any], editor: dict[str, Any]
) -> None:
    r = adapter.http.get("/admin", headers=bearer(viewer["access_token"]))
    assert_challenge(r, 403, 'Bearer error="insufficient_scope"')
    assert adapter.http.get("/admin", headers=bearer(editor["access_token"])).status_code == 200


def test_a_client_credentials_token_has_no_session(
    adapter: Adapter, auth: AuthServer, people: People
) -> None:
    client_id, secret = auth.new_client(["posts:read"])
    r = auth.http.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    body = adapter.http.get("/posts", headers=bearer(token)).json()
    assert body == {
        "sub": client_id,
        "sid": None,
        "roles": [],
        "permissions": ["posts:read"],
        "client_id": client_id,
    }
    r = adapter.http.post("/posts", headers=bearer(token))
    assert_challenge(r, 403, 'Bearer error="insufficient_scope", scope="posts:write"')


def test_an_invalid_token_on_a_public_route(adapter: Adapter) -> None:
    r = adapter.http.get("/public", headers={"Authorization": "Bearer a.b.c"})
    if adapter.name in MIDDLEWARE_ADAPTERS:
        # The middleware authenticates every request that carries a token.
        assert_challenge(r, 401, INVALID)
    else:
        assert r.status_code == 200


def test_the_middleware_sets_the_user(adapter: Adapter, viewer: dict[str, Any]) -> None:
    anonymous = adapter.http.get("/public").json()["authenticated"]
    known = adapter.http.get("/public", headers=bearer(viewer["access_token"]))
    if adapter.name in MIDDLEWARE_ADAPTERS:
        assert (anonymous, known.json()["authenticated"]) == (False, True)
    else:  # the FastAPI dependency alone sets nothing on routes that do not use it
        assert (anonymous, known.json()["authenticated"]) == (None, None)


def test_a_logged_out_token_is_refused(adapter: Adapter, people: People) -> None:
    pair = people.login("viewer@example.com")
    token = pair["access_token"]
    assert adapter.http.get("/me", headers=bearer(token)).status_code == 200
    assert people.auth.http.post("/auth/logout", headers=bearer(token)).status_code == 204
    eventually(lambda: adapter.http.get("/me", headers=bearer(token)).status_code == 401)
    assert_challenge(adapter.http.get("/me", headers=bearer(token)), 401, INVALID)


# --- Starlette's own authorization helpers -------------------------------------------------


def test_starlettes_requires_reads_our_scope(
    auth: AuthServer, creds: tuple[str, str], viewer: dict[str, Any], nobody: dict[str, Any]
) -> None:
    guard = make_guard(auth, creds)
    with AppServer(starlette_app(guard)) as http:
        r = http.get("/starlette-requires", headers=bearer(viewer["access_token"]))
        assert r.status_code == 200, r.text
        assert r.json()["scopes"] == ["authenticated", "posts:read"]
        r = http.get("/starlette-requires", headers=bearer(nobody["access_token"]))
        assert r.status_code == 403  # Starlette's answer, from request.auth.scopes
        assert http.get("/starlette-requires").status_code == 403
    guard.close_sync()


# --- FastAPI's OpenAPI ---------------------------------------------------------------------


def test_fastapi_shows_the_security_scheme(auth: AuthServer, creds: tuple[str, str]) -> None:
    guard = make_guard(auth, creds)
    with AppServer(fastapi_app(guard)) as http:
        doc = http.get("/openapi.json").json()
    guard.close_sync()
    schemes = doc["components"]["securitySchemes"]
    assert schemes == {
        "authgate": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": f"An authgate access token issued by {auth.url}.",
        }
    }
    for path, method in (("/me", "get"), ("/posts", "get"), ("/posts", "post"), ("/admin", "get")):
        assert doc["paths"][path][method]["security"] == [{"authgate": []}]
        params = doc["paths"][path][method].get("parameters", [])
        assert params == []  # the dependency takes no query or header parameter
    assert "security" not in doc["paths"]["/public"]["get"]


def test_fastapi_lifespan_starts_and_stops_the_guard(
    auth: AuthServer, creds: tuple[str, str]
) -> None:
    guard = make_guard(auth, creds)
    with AppServer(fastapi_app(guard, middleware=True)):
        assert guard.ready  # started by the middleware's lifespan hook, before any request
    assert not guard.ready  # and closed at shutdown


def test_a_refused_guard_fails_the_app_startup(auth: AuthServer) -> None:
    guard = make_guard(auth, ("cli_unknown", "wrong secret"))
    server = AppServer(fastapi_app(guard, middleware=True))
    with pytest.raises(RuntimeError, match="did not start"):
        server.__enter__()
    guard.close_sync()


# --- revocation end to end, through FastAPI ------------------------------------------------


@pytest.fixture(scope="module")
def api(auth: AuthServer, creds: tuple[str, str]) -> Iterator[httpx.Client]:
    guard = make_guard(auth, creds)
    with AppServer(fastapi_app(guard)) as http:
        yield http
    guard.close_sync()


def status(api: httpx.Client, token: str) -> int:
    return api.get("/me", headers=bearer(token)).status_code


def dies(api: httpx.Client, token: str) -> None:
    eventually(lambda: status(api, token) == 401)
    assert_challenge(api.get("/me", headers=bearer(token)), 401, INVALID)


def test_revocation_logout(api: httpx.Client, people: People) -> None:
    a = people.user("logout@example.com", ["viewer"])
    b = people.login("logout@example.com")
    assert status(api, a["access_token"]) == status(api, b["access_token"]) == 200
    people.auth.http.post("/auth/logout", headers=bearer(a["access_token"]))
    dies(api, a["access_token"])
    assert status(api, b["access_token"]) == 200  # the other session goes on


def test_revocation_logout_all(api: httpx.Client, people: People) -> None:
    a = people.user("logout-all@example.com", ["viewer"])
    b = people.login("logout-all@example.com")
    assert status(api, a["access_token"]) == 200
    people.auth.clock.advance(1)  # the logout comes after the tokens were issued
    r = people.auth.http.post("/auth/logout-all", headers=bearer(b["access_token"]))
    assert r.status_code == 204
    dies(api, a["access_token"])
    dies(api, b["access_token"])
    fresh = people.login("logout-all@example.com")
    assert status(api, fresh["access_token"]) == 200


def test_revocation_password_change(api: httpx.Client, people: People) -> None:
    a = people.user("password@example.com", ["viewer"])
    b = people.login("password@example.com")
    r = people.auth.http.post(
        "/auth/password",
        headers=bearer(b["access_token"]),
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert r.status_code == 204, r.text
    dies(api, a["access_token"])
    assert status(api, b["access_token"]) == 200  # the session that changed it goes on


def test_revocation_role_removal(api: httpx.Client, people: People) -> None:
    a = people.user("demoted@example.com", ["editor"])
    token = a["access_token"]
    assert api.post("/posts", headers=bearer(token)).status_code == 200
    people.auth.clock.advance(1)
    user_id = people.auth.http.get("/auth/me", headers=bearer(token)).json()["id"]
    r = people.auth.http.patch(
        f"/admin/users/{user_id}", headers=people.admin(), json={"roles": ["viewer"]}
    )
    assert r.status_code == 200, r.text
    dies(api, token)
    # A new token carries the new roles: reading yes, writing no.
    refreshed = people.auth.http.post(
        "/auth/refresh", json={"refresh_token": a["refresh_token"]}
    ).json()["access_token"]
    assert status(api, refreshed) == 200
    r = api.post("/posts", headers=bearer(refreshed))
    assert_challenge(r, 403, 'Bearer error="insufficient_scope", scope="posts:write"')


def test_revocation_admin_revokes_a_session(api: httpx.Client, people: People) -> None:
    a = people.user("revoked@example.com", ["viewer"])
    sid = api.get("/me", headers=bearer(a["access_token"])).json()["sid"]
    r = people.auth.http.delete(f"/admin/sessions/{sid}", headers=people.admin())
    assert r.status_code == 204, r.text
    dies(api, a["access_token"])


def test_revocation_of_one_access_token_rfc_7009(api: httpx.Client, people: People) -> None:
    a = people.user("rfc7009@example.com", ["viewer"])
    b = people.login("rfc7009@example.com")
    r = people.auth.http.post(
        "/oauth2/revoke",
        data={"token": a["access_token"], "client_id": "authgate"},
    )
    assert r.status_code == 200, r.text
    dies(api, a["access_token"])
    assert status(api, b["access_token"]) == 200


def test_revocation_of_a_client(api: httpx.Client, auth: AuthServer, people: People) -> None:
    client_id, secret = auth.new_client(["posts:read"])
    token = auth.http.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    ).json()["access_token"]
    assert status(api, token) == 200
    auth.clock.advance(1)
    r = auth.http.delete(f"/admin/clients/{client_id}", headers=people.admin())
    assert r.status_code == 204, r.text
    dies(api, token)


def test_the_guard_follows_without_being_asked(
    auth: AuthServer, creds: tuple[str, str], people: People
) -> None:
    # No request reaches the guard between the logout and the check: the follower alone
    # brought the event in.
    guard = make_guard(auth, creds)
    guard.start_sync()
    try:
        a = people.user("follower@example.com", ["viewer"])
        principal = guard.verify_sync(a["access_token"])
        before = guard.revoked
        assert before is not None
        auth.http.post("/auth/logout", headers=bearer(a["access_token"]))
        eventually(lambda: principal.sid in before.sid)
        with pytest.raises(TokenRevoked) as info:
            guard.verify_sync(a["access_token"])
        assert info.value.code == "token_revoked"
        assert asyncio.run(guard.sync()) == 0
    finally:
        guard.close_sync()


def test_the_decorator_on_fastapi_endpoints(
    auth: AuthServer, creds: tuple[str, str], viewer: dict[str, Any], nobody: dict[str, Any]
) -> None:
    guard = make_guard(auth, creds)
    for middleware in (False, True):
        with AppServer(fastapi_app(guard, middleware=middleware)) as http:
            r = http.get("/decorated", headers=bearer(viewer["access_token"]))
            assert r.status_code == 200, r.text
            assert r.json()["roles"] == ["viewer"]
            assert_challenge(http.get("/decorated"), 401, "Bearer")
            r = http.get("/decorated", headers=bearer(nobody["access_token"]))
            assert_challenge(r, 403, 'Bearer error="insufficient_scope", scope="posts:read"')
            r = http.get("/decorated", headers={"Authorization": "Bearer a.b.c"})
            assert_challenge(r, 401, INVALID)
    guard.close_sync()
