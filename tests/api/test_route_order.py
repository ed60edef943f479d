"""The order of the included routers decides only the cost of matching: no request is
matched by the routes of two different routers (inside one router, whose own order is kept,
a literal path may come before a pattern), so putting the token paths first changes no
answer."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.routing import BaseRoute, Match, Route

from authgate.server.app import create_app
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
