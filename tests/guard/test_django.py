"""The Django adapter (middleware and decorator) through Django's test client, against a real
authgate server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.test import Client, override_settings
from django.urls import path

from authgate.guard import Guard, Principal
from authgate.guard.django import configured_guard

from ._support import AuthServer, bearer, eventually, make_guard

PASSWORD = "correct horse battery staple 42"
GUARD: Guard | None = None  # AUTHGATE_GUARD names this by its dotted path in one test


def who(p: Principal) -> dict[str, Any]:
    return {"sub": p.sub, "sid": p.sid, "permissions": sorted(p.permissions)}


def public(request: HttpRequest) -> JsonResponse:
    principal = request.principal  # type: ignore[attr-defined]
    return JsonResponse({"ok": True, "authenticated": principal is not None})


def _views(guard_of: Any) -> list[Any]:
    def me(request: HttpRequest) -> JsonResponse:
        return guard_of().django_required()(lambda r: JsonResponse(who(r.principal)))(request)

    def posts(request: HttpRequest) -> JsonResponse:
        need = "posts:write" if request.method == "POST" else "posts:read"
        view = guard_of().django_required(need)(lambda r: JsonResponse(who(r.principal)))
        return view(request)  # type: ignore[no-any-return]

    async def async_me(request: HttpRequest) -> JsonResponse:
        async def inner(r: HttpRequest) -> JsonResponse:
            return JsonResponse(who(r.principal))  # type: ignore[attr-defined]

        return await guard_of().django_required("posts:read")(inner)(request)  # type: ignore[no-any-return]

    return [
        path("public", public),
        path("me", me),
        path("posts", posts),
        path("async-me", async_me),
    ]


def current_guard() -> Guard:
    return configured_guard()


urlpatterns = _views(current_guard)


@pytest.fixture(scope="module")
def django_settings() -> None:
    if not settings.configured:
        settings.configure(
            DEBUG=False,
            ALLOWED_HOSTS=["testserver"],
            ROOT_URLCONF=__name__,
            SECRET_KEY="guard-tests-" + "x" * 40,
            INSTALLED_APPS=[],
            MIDDLEWARE=["authgate.guard.django.GuardMiddleware"],
            USE_TZ=True,
            AUTHGATE_GUARD=None,
        )
        django.setup()


@pytest.fixture(scope="module")
def guard(django_settings: None, auth: AuthServer, creds: tuple[str, str]) -> Iterator[Guard]:
    g = make_guard(auth, creds)
    with override_settings(AUTHGATE_GUARD=g):
        yield g
    g.close_sync()


@pytest.fixture(scope="module")
def tokens(auth: AuthServer) -> dict[str, str]:
    async def setup() -> None:
        await auth.services.directory.put_role("viewer", ["posts:read"])
        await auth.services.directory.put_role("editor", ["posts:read", "posts:write"])
        await auth.services.accounts.create_user(
            "dj-viewer@example.com", PASSWORD, roles=["viewer"]
        )
        await auth.services.accounts.create_user(
            "dj-editor@example.com", PASSWORD, roles=["editor"]
        )

    auth.call(setup())
    return {
        who: auth.login(f"dj-{who}@example.com", PASSWORD)["access_token"]
        for who in ("viewer", "editor")
    }


def get(client: Client, url: str, token: str | None = None, **extra: Any) -> Any:
    headers = bearer(token) if token else {}
    return client.get(url, headers=headers, **extra)


def test_public_and_anonymous(guard: Guard) -> None:
    r = Client().get("/public")
    assert r.status_code == 200
    assert r.json() == {"ok": True, "authenticated": False}


def test_no_token_is_401(guard: Guard) -> None:
    r = Client().get("/me")
    assert r.status_code == 401
    assert r["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("url", ["/me", "/public"])
def test_an_invalid_token_is_401_even_on_a_public_route(guard: Guard, url: str) -> None:
    r = get(Client(), url, "a.b.c")
    assert r.status_code == 401
    assert r["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert r["Cache-Control"] == "no-store"
    assert r.json() == {"error": "invalid_token"}


def test_a_valid_token_is_200(guard: Guard, tokens: dict[str, str], auth: AuthServer) -> None:
    me = auth.http.get("/auth/me", headers=bearer(tokens["viewer"])).json()
    r = get(Client(), "/me", tokens["viewer"])
    assert r.status_code == 200, r.content
    assert r.json()["sub"] == me["id"]
    assert get(Client(), "/public", tokens["viewer"]).json()["authenticated"] is True


def test_a_missing_permission_is_403(guard: Guard, tokens: dict[str, str]) -> None:
    r = Client().post("/posts", headers=bearer(tokens["viewer"]))
    assert r.status_code == 403
    assert r["WWW-Authenticate"] == 'Bearer error="insufficient_scope", scope="posts:write"'
    r = Client().post("/posts", headers=bearer(tokens["editor"]))
    assert r.status_code == 200
    assert r.json()["permissions"] == ["posts:read", "posts:write"]


def test_a_token_in_the_query_string_is_ignored(guard: Guard, tokens: dict[str, str]) -> None:
    r = Client().get("/me", {"access_token": tokens["viewer"]})
    assert r.status_code == 401
    assert r["WWW-Authenticate"] == "Bearer"


def test_an_async_view(guard: Guard, tokens: dict[str, str]) -> None:
    assert get(Client(), "/async-me", tokens["viewer"]).status_code == 200
    r = get(Client(), "/async-me")
    assert (r.status_code, r["WWW-Authenticate"]) == (401, "Bearer")


def test_the_decorator_without_the_middleware(guard: Guard, tokens: dict[str, str]) -> None:
    with override_settings(MIDDLEWARE=[]):
        client = Client()
        assert get(client, "/me", tokens["viewer"]).status_code == 200
        r = get(client, "/me", "a.b.c")
        assert (r.status_code, r["WWW-Authenticate"]) == (401, 'Bearer error="invalid_token"')
        r = client.post("/posts", headers=bearer(tokens["viewer"]))
        assert r.status_code == 403


def test_the_guard_may_be_named_by_its_dotted_path(guard: Guard, tokens: dict[str, str]) -> None:
    global GUARD
    GUARD = guard
    try:
        with override_settings(AUTHGATE_GUARD=f"{__name__}.GUARD"):
            assert configured_guard() is guard
            assert get(Client(), "/me", tokens["viewer"]).status_code == 200
    finally:
        GUARD = None


def test_a_logged_out_token_is_refused(guard: Guard, auth: AuthServer) -> None:
    token = auth.login("dj-viewer@example.com", PASSWORD)["access_token"]
    assert get(Client(), "/me", token).status_code == 200
    assert auth.http.post("/auth/logout", headers=bearer(token)).status_code == 204
    eventually(lambda: get(Client(), "/me", token).status_code == 401)
    assert asyncio.run(guard.sync()) == 0
