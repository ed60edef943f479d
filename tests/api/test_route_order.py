"""The order of the included routers decides only the cost of matching: no request is
matched by the routes of two different routers (inside one router, whose own order is kept,
a literal path may come before a pattern), so putting the token paths first changes no
answer."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match, Route

from authgate.server.app import create_app
from authgate.server.routing import PrefixRouter, check_unprefixed, route_path
from authgate.settings import Settings

from .server import base_env


def _owned_leaves(routes: list[BaseRoute]) -> list[tuple[int, Route]]:
    """Every route with the index of the top-level entry (an included router) holding it."""
    out: list[tuple[int, Route]] = []

    def walk(owner: int, route: BaseRoute) -> None:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            for child in inner.routes:
                walk(owner, child)
        elif isinstance(route, Route):
            out.append((owner, route))

    for owner, route in enumerate(routes):
        walk(owner, route)
    return out


def test_no_request_is_matched_by_two_routers(tmp_path: Path) -> None:
    app = create_app(Settings.from_env(base_env(tmp_path), config_dir=tmp_path))
    leaves = _owned_leaves(list(app.router.routes))
    assert len(leaves) > 100  # the API, the hosted pages and the console
    checked = 0
    for owner, route in leaves:
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        for method in sorted(route.methods or {"GET"}):
            scope = {"type": "http", "method": method, "path": path, "root_path": ""}
            owners = {o for o, other in leaves if other.matches(scope)[0] == Match.FULL}
            assert owners == {owner}, (method, path, owners)
            checked += 1
    assert checked >= len(leaves)


def test_the_token_paths_are_matched_before_the_admin_api(tmp_path: Path) -> None:
    app = create_app(Settings.from_env(base_env(tmp_path), config_dir=tmp_path))
    prefixes = [
        getattr(getattr(r, "original_router", None), "prefix", None) for r in app.router.routes
    ]
    assert prefixes.index("/oauth2") < prefixes.index("/admin")
    assert prefixes.index("/auth") < prefixes.index("/oauth2")


def test_each_router_takes_every_path_of_its_own_and_no_other(tmp_path: Path) -> None:
    """Through the routers' own ``matches`` (PrefixRouter's prefix test included): each
    route's path, with every method, is a full match of its router and of no other, so the
    prefix test turns away no path a router serves."""
    app = create_app(Settings.from_env(base_env(tmp_path), config_dir=tmp_path))
    tops = list(app.router.routes)
    leaves = _owned_leaves(tops)
    for root in ("", "/base"):
        for owner, route in leaves:
            path = root + re.sub(r"\{[^}]+\}", "x", route.path)
            for method in sorted(route.methods or {"GET"}):
                scope = {"type": "http", "method": method, "path": path, "root_path": root}
                full = [
                    i for i, top in enumerate(tops) if top.matches(dict(scope))[0] == Match.FULL
                ]
                assert full == [owner], (root, method, path, full)


def test_a_path_is_tried_only_against_the_routes_that_could_match_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET /healthz comes after every API router: it is tried against the routes of the
    ops router alone (and the top-level /openapi.json), not the 60 routes before it."""
    app = create_app(Settings.from_env(base_env(tmp_path), config_dir=tmp_path))
    tried: list[str] = []
    original = APIRoute.matches

    def counting(self: APIRoute, scope: dict[str, object]) -> tuple[Match, dict[str, object]]:
        tried.append(self.path)
        return original(self, scope)

    monkeypatch.setattr(APIRoute, "matches", counting)
    scope = {"type": "http", "method": "GET", "path": "/healthz", "root_path": ""}
    full = [top for top in app.router.routes if top.matches(dict(scope))[0] == Match.FULL]
    assert len(full) == 1
    assert tried
    assert set(tried) <= {"/healthz", "/readyz", "/metrics"}, tried


@pytest.mark.parametrize(
    ("path", "root_path"),
    [
        ("/healthz", ""),
        ("/base/healthz", "/base"),
        ("/base", "/base"),
        ("/basement/x", "/base"),
        ("/other/healthz", "/base"),
        ("/", ""),
        ("", ""),
    ],
)
def test_route_path_is_starlettes(path: str, root_path: str) -> None:
    from starlette._utils import get_route_path

    scope = {"type": "http", "path": path, "root_path": root_path}
    assert route_path(scope) == get_route_path(scope)


def _router_with(*paths: str) -> PrefixRouter:
    router = PrefixRouter()
    for path in paths:

        async def endpoint() -> dict[str, str]:
            return {}

        router.add_api_route(path, endpoint, methods=["GET"])
    return router


def test_the_prefixes_follow_the_routes_as_they_change() -> None:
    router = _router_with("/a/one", "/a/{item}")
    assert router.literal_prefixes() == ("/a/", "/a/one")
    router.routes.pop()  # the same count after the next line, other routes
    router.add_api_route("/b/two", _router_with("/x").routes[0].endpoint, methods=["GET"])
    assert router.literal_prefixes() == ("/a/one", "/b/two")


def test_a_prefix_router_included_under_a_prefix_is_refused() -> None:
    from fastapi import FastAPI

    app = FastAPI()
    app.include_router(_router_with("/ok"))
    check_unprefixed(app.router)  # included as it is: accepted

    for build in (
        lambda a: a.include_router(_router_with("/b"), prefix="/v1"),
        lambda a: a.include_router(_nested(_router_with("/c")), prefix="/p"),
    ):
        app = FastAPI()
        build(app)
        with pytest.raises(RuntimeError, match="included under the prefix"):
            check_unprefixed(app.router)


def _nested(child: PrefixRouter) -> Any:
    from fastapi import APIRouter

    parent = APIRouter()
    parent.include_router(child)
    return parent
