"""Deeply nested JSON bodies, sent over HTTP to every route of a running server.

Every JSON request body is parsed once, by the strict parser of authgate.jsonbody, before
any route runs: a body nested past the cap, or one that is not a strict JSON object, gets
400 ``invalid_json`` (the RFC 6749 ``invalid_request`` body under /oauth2) and never a 5xx
or a dropped connection, whichever route, method and JSON media type it is sent to.
"""

from __future__ import annotations

import ast
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authgate.jsonbody import MAX_BODY_DEPTH

from ._live import LiveServer, openapi_document

SRC = Path(__file__).resolve().parents[2] / "src" / "authgate"
JSON_TYPES = ["application/json", "application/json; charset=utf-8", "application/merge-patch+json"]


def _deep_mix(depth: int) -> bytes:
    """Valid JSON: arrays and objects alternating, ``depth`` levels deep."""
    opening = "".join("[" if i % 2 == 0 else '{"k":' for i in range(depth))
    closing = "".join("]" if i % 2 == 0 else "}" for i in reversed(range(depth)))
    return (opening + "1" + closing).encode()


PAYLOADS = {
    "open-arrays-5000": b"[" * 5000,
    "open-objects-5000": b"{" * 5000,
    "open-members-5000": b'{"a":' * 5000,
    "closed-arrays-5000": b"[" * 5000 + b"]" * 5000,
    "closed-objects-5000": b'{"a":' * 5000 + b"1" + b"}" * 5000,
    "closed-mix-5000": _deep_mix(5000),
    # Legal in size (under the 64 KiB body cap), 30,000 levels deep.
    "closed-arrays-30000": b"[" * 30000 + b"]" * 30000,
    "object-holding-deep-array": b'{"email":' + b"[" * 5000 + b"]" * 5000 + b"}",
    "one-past-the-cap": b'{"a":' + b"[" * MAX_BODY_DEPTH + b"]" * MAX_BODY_DEPTH + b"}",
}


def _walk(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:  # a router included into the app
            context = getattr(route, "include_context", None)
            yield from _walk(included.routes, prefix + str(getattr(context, "prefix", "")))
            continue
        path = getattr(route, "path", None)
        for method in sorted(getattr(route, "methods", None) or ()):
            if path is not None and method != "HEAD":
                yield method, prefix + path


def endpoints() -> list[tuple[str, str]]:
    """Every (method, path) the app routes, documented or not; path parameters filled."""
    from authgate.server.app import create_app

    from ._live import settings_for

    with tempfile.TemporaryDirectory() as folder:
        app = create_app(settings_for(Path(folder)))
        found = sorted({(m, re.sub(r"\{[^}]+\}", "x", p)) for m, p in _walk(app.routes)})
    return found


ENDPOINTS = endpoints()


def test_the_route_walk_finds_every_documented_operation() -> None:
    documented = {
        (method.upper(), re.sub(r"\{[^}]+\}", "x", path))
        for path, item in openapi_document()["paths"].items()
        for method in item
    }
    assert documented <= set(ENDPOINTS)
    assert ("GET", "/docs") in ENDPOINTS  # and the routes left out of the document


def _assert_refused(response: httpx.Response, path: str) -> None:
    assert response.status_code == 400, (path, response.status_code, response.text[:200])
    if path.startswith("/oauth2/"):
        assert response.json() == {"error": "invalid_request"}
    else:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "invalid_json"


@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=[f"{m} {p}" for m, p in ENDPOINTS])
def test_parser_crash_deep_json_is_400_on_every_route(
    live: LiveServer, admin_token: str, method: str, path: str
) -> None:
    with httpx.Client(base_url=live.url, timeout=30.0) as client:
        for name, body in PAYLOADS.items():
            for ctype in JSON_TYPES:
                for auth in ({}, {"Authorization": f"Bearer {admin_token}"}):
                    r = client.request(
                        method, path, content=body, headers={"Content-Type": ctype, **auth}
                    )
                    _assert_refused(r, f"{path} {name} {ctype}")


@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=[f"{m} {p}" for m, p in ENDPOINTS])
def test_parser_crash_deep_body_of_another_type_is_never_5xx(
    live: LiveServer, method: str, path: str
) -> None:
    """A body that does not say it is JSON is never parsed as JSON: a 4xx (or the route's
    own success for a bodyless route), never a 5xx."""
    with httpx.Client(base_url=live.url, timeout=30.0) as client:
        for body in (PAYLOADS["open-arrays-5000"], PAYLOADS["closed-mix-5000"]):
            for headers in ({"Content-Type": "text/plain"}, {}):
                r = client.request(method, path, content=body, headers=headers)
                assert r.status_code < 500, (path, r.status_code, r.text[:200])


STRICT_REFUSALS = {
    "duplicate member": b'{"email": "a@example.com", "email": "b@example.com", "password": "p"}',
    "NaN": b'{"email": "a@example.com", "password": NaN}',
    "UTF-8 BOM": b'\xef\xbb\xbf{"email": "a@example.com", "password": "p"}',
    "invalid UTF-8": b'{"email": "\xff@example.com", "password": "p"}',
    "lone surrogate": b'{"email": "\\ud800@example.com", "password": "p"}',
    "trailing data": b'{"email": "a@example.com", "password": "p"} {}',
    "not an object": b'["a@example.com", "p"]',
}


@pytest.mark.parametrize("body", STRICT_REFUSALS.values(), ids=list(STRICT_REFUSALS))
@pytest.mark.parametrize("path", ["/auth/login", "/auth/register", "/auth/refresh"])
def test_parser_differential_bodies_the_strict_parser_refuses(
    live: LiveServer, path: str, body: bytes
) -> None:
    """What a lenient parser reads one way and another parser another way is refused."""
    r = httpx.post(
        live.url + path, content=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    _assert_refused(r, path)


NESTING = st.lists(
    st.sampled_from(["[", "{", '{"a":', "]", "}", ",", "1", '"s"', ":"]), min_size=1, max_size=60
).map(lambda parts: "".join(parts))


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    pattern=NESTING,
    repeat=st.integers(min_value=MAX_BODY_DEPTH + 1, max_value=3000),
    ctype=st.sampled_from(JSON_TYPES),
)
def test_parser_crash_random_nesting_never_5xx(
    live: LiveServer, endpoint: tuple[str, str], pattern: str, repeat: int, ctype: str
) -> None:
    """Random bracket soups, repeated past the depth cap. A text repeated twice or more is
    never one JSON object, so each one is refused by the JSON gate."""
    method, path = endpoint
    body = (pattern * repeat).encode()[:60000]
    r = httpx.request(
        method, live.url + path, content=body, headers={"Content-Type": ctype}, timeout=30.0
    )
    _assert_refused(r, path)


def _json_parses(tree: ast.AST) -> list[str]:
    """Calls that parse JSON: json.loads/json.load/orjson.loads and x.json()."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        attr, owner = node.func.attr, node.func.value
        name = owner.id if isinstance(owner, ast.Name) else None
        if (name in ("json", "orjson") and attr in ("loads", "load")) or (
            attr == "json" and not node.args
        ):
            found.append(f"line {node.lineno}: {ast.unparse(node.func)}")
    return found


def test_parser_bypass_no_http_module_parses_json_itself() -> None:
    """The HTTP layer reads request JSON only through authgate.jsonbody (and FastAPI's own
    parse, which only ever sees bodies the JSON gate has already accepted)."""
    offenders = {}
    for folder in ("server", "web"):
        for source in sorted((SRC / folder).rglob("*.py")):
            calls = _json_parses(ast.parse(source.read_text()))
            if calls:
                offenders[str(source.relative_to(SRC))] = calls
    assert offenders == {}
