"""PrefixRouter: an APIRouter that turns away, in one string test, a path none of its routes
can match.

FastAPI matches a request against each included router's routes in turn, at about a
microsecond per route, so a path served by a router near the end (``/healthz``, the hosted
pages, the console) paid for every route before it: 75 us for ``/healthz``. A route's path
regex is anchored at the start, and begins with the route's literal text up to its first
parameter, so a path that starts with none of those texts cannot match any route of the
router, not even partially (no 405): answering Match.NONE for it changes no answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Scope


def route_path(scope: Scope) -> str:
    """The path the routes are matched against: ``path`` less ``root_path`` (as Starlette
    matches a route)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    return path[len(root_path) :] if path[len(root_path)] == "/" else path


class PrefixRouter(APIRouter):
    """An APIRouter that answers Match.NONE at once for a path that starts with none of its
    routes' literal prefixes. Include it without a ``prefix`` (give the prefix here): the
    prefixes are read from its own routes' paths. A route that is not an APIRoute, or a
    nested router, turns the test off for the whole router."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._prefixes_of: tuple[tuple[int, int], tuple[str, ...] | None] = ((-1, -1), None)

    def literal_prefixes(self) -> tuple[str, ...] | None:
        """Each route's path up to its first parameter; None when a route is of another
        kind (the router then matches as an APIRouter does)."""
        # FastAPI counts the changes of a router's routes in ``_routes_version``.
        key = (len(self.routes), int(getattr(self, "_routes_version", 0)))
        seen, prefixes = self._prefixes_of
        if seen == key:
            return prefixes
        found: list[str] | None = []
        for route in self.routes:
            if type(route) is not APIRoute or found is None:
                found = None
                continue
            found.append(route.path.split("{", 1)[0])
        prefixes = tuple(sorted(set(found))) if found is not None else None
        self._prefixes_of = (key, prefixes)
        return prefixes

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Match.NONE for a path no route of this router can match; else as APIRouter."""
        prefixes = self.literal_prefixes()
        if (
            prefixes is not None
            and scope.get("type") == "http"
            and not route_path(scope).startswith(prefixes)
        ):
            return Match.NONE, {}
        return super().matches(scope)


def check_unprefixed(router: APIRouter, *, outer: str = "") -> None:
    """Refuse (RuntimeError) a PrefixRouter included under a prefix, at any depth: its
    prefixes come from its own routes' paths, so it would turn away every path it serves."""
    for entry in router.routes:
        inner = getattr(entry, "original_router", None)
        if not isinstance(inner, APIRouter):
            continue
        context = getattr(entry, "include_context", None)
        prefix = outer + str(getattr(context, "prefix", "") or "")
        if prefix and isinstance(inner, PrefixRouter):
            raise RuntimeError(
                f"a PrefixRouter is included under the prefix {prefix!r}: give the prefix to"
                " the router itself"
            )
        check_unprefixed(inner, outer=prefix)


__all__ = ["PrefixRouter", "check_unprefixed", "route_path"]
