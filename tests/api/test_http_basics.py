"""HTTP hygiene: security headers, problem+json, RFC 6750 challenges, size caps."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from _support.http import PASSWORD, assert_problem, bearer, new_email

from .conftest import ServerFactory
from .server import LiveServer

SECURITY_HEADERS = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


@pytest.fixture(scope="module")
def user_token(shared: LiveServer) -> str:
    return str(shared.register(new_email())["access_token"])


def assert_security_headers(headers: httpx.Headers) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers[name] == value


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/.well-known/jwks.json"),
        ("GET", "/.well-known/oauth-authorization-server"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/auth/me"),  # 401
        ("GET", "/admin/users"),  # 401
        ("GET", "/no/such/route"),  # 404
        ("DELETE", "/auth/login"),  # 405
        ("POST", "/auth/login"),  # 400
    ],
)
def test_security_headers_on_every_response(shared: LiveServer, method: str, path: str) -> None:
    r = shared.http.request(method, path)
    assert_security_headers(r.headers)
    assert r.headers["x-frame-options"] == "DENY"
    assert "strict-transport-security" not in r.headers  # plain http: no HSTS


def test_security_headers_on_token_and_error_responses(shared: LiveServer) -> None:
    r = shared.http.post("/auth/register", json={"email": new_email(), "password": PASSWORD})
    assert r.status_code == 201
    assert_security_headers(r.headers)
    r = shared.http.post("/auth/register", content=b"x" * (1 << 20))
    assert r.status_code == 413
    assert_security_headers(r.headers)


def test_unknown_route_is_a_problem(shared: LiveServer) -> None:
    assert_problem(shared.http.get("/auth/nope"), 404, "not_found")


def test_wrong_method_is_a_problem(shared: LiveServer) -> None:
    assert_problem(shared.http.delete("/auth/me"), 405, "method_not_allowed")


# --- RFC 6750 challenges -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/auth/me", "/auth/sessions", "/admin/users", "/admin/keys"])
def test_no_token_is_401_with_bare_bearer_challenge(shared: LiveServer, path: str) -> None:
    r = shared.http.get(path)
    assert_problem(r, 401, "authentication_required")
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    assert "error=" not in challenge


@pytest.mark.parametrize("path", ["/auth/logout", "/auth/logout-all"])
def test_no_token_on_post_routes(shared: LiveServer, path: str) -> None:
    r = shared.http.post(path)
    assert_problem(r, 401, "authentication_required")
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_other_scheme_is_treated_as_no_token(shared: LiveServer) -> None:
    r = shared.http.get("/auth/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_problem(r, 401, "authentication_required")
    assert "error=" not in r.headers["www-authenticate"]


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        "Bearer",  # "Bearer Bearer"
    ],
)
def test_bad_token_is_401_invalid_token(shared: LiveServer, token: str) -> None:
    r = shared.http.get("/auth/me", headers=bearer(token))
    assert_problem(r, 401, "invalid_token")
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="invalid_token"' in challenge


def test_empty_bearer_is_invalid_token(shared: LiveServer) -> None:
    r = shared.http.get("/auth/me", headers={"Authorization": "Bearer"})
    assert_problem(r, 401, "invalid_token")
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_tampered_token_is_refused(shared: LiveServer, user_token: str) -> None:
    head, payload, sig = user_token.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    r = shared.http.get("/auth/me", headers=bearer(f"{head}.{payload}.{flipped}"))
    assert_problem(r, 401, "invalid_token")
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    # The reason stays in the log: the body says nothing beyond the code.
    assert set(r.json()) == {"type", "title", "status", "code"}


def test_scheme_is_case_insensitive(shared: LiveServer, user_token: str) -> None:
    r = shared.http.get("/auth/me", headers={"Authorization": f"bearer {user_token}"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("name", ["access_token", "token", "jwt"])
def test_token_in_query_string_is_never_accepted(
    shared: LiveServer, user_token: str, name: str
) -> None:
    r = shared.http.get("/auth/me", params={name: user_token})
    assert_problem(r, 401, "authentication_required")
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_token_in_cookie_or_form_is_never_accepted(shared: LiveServer, user_token: str) -> None:
    r = shared.http.get("/auth/me", headers={"Cookie": f"access_token={user_token}"})
    assert_problem(r, 401, "authentication_required")
    r = shared.http.post("/auth/logout", data={"access_token": user_token})
    assert_problem(r, 401, "authentication_required")


@pytest.mark.parametrize("size", [8 * 1024 + 1, 20_000, 60_000])
def test_oversized_authorization_is_refused(shared: LiveServer, size: int) -> None:
    header = "Bearer " + "a" * (size - len("Bearer "))
    assert len(header) == size
    r = shared.http.get("/auth/me", headers={"Authorization": header})
    assert r.status_code in (401, 431), r.text
    if r.status_code == 401:
        assert_problem(r, 401, "invalid_token")
        assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_authorization_just_under_the_cap_is_parsed(shared: LiveServer) -> None:
    header = "Bearer " + "a" * (8 * 1024 - len("Bearer "))
    r = shared.http.get("/auth/me", headers={"Authorization": header})
    assert_problem(r, 401, "invalid_token")


# --- bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/auth/register", "/auth/login", "/auth/refresh"])
def test_one_mib_body_is_413_fast(shared: LiveServer, path: str) -> None:
    started = time.perf_counter()
    r = shared.http.post(
        path, content=b"{" + b" " * (1 << 20) + b"}", headers={"Content-Type": "application/json"}
    )
    elapsed = time.perf_counter() - started
    assert_problem(r, 413, "body_too_large")
    assert elapsed < 5.0  # no parsing, no hashing: refused on the header


def test_one_mib_password_is_413_fast(shared: LiveServer) -> None:
    started = time.perf_counter()
    r = shared.http.post("/auth/register", json={"email": new_email(), "password": "p" * (1 << 20)})
    assert_problem(r, 413, "body_too_large")
    r = shared.http.post("/auth/login", json={"email": new_email(), "password": "p" * (1 << 20)})
    assert_problem(r, 413, "body_too_large")
    assert time.perf_counter() - started < 5.0


def test_chunked_body_over_the_cap_is_413(shared: LiveServer) -> None:
    """No Content-Length: the cap must still hold while the body streams in."""

    def chunks() -> Iterator[bytes]:
        yield b'{"email": "a@example.com", "password": "'
        for _ in range(32):
            yield b"p" * 32768
        yield b'"}'

    r = shared.http.post(
        "/auth/register", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in r.request.headers
    assert_problem(r, 413, "body_too_large")


def test_invalid_json_is_400_problem(shared: LiveServer) -> None:
    r = shared.http.post(
        "/auth/register", content=b'{"email": ', headers={"Content-Type": "application/json"}
    )
    assert_problem(r, 400, "invalid_json")


def test_validation_error_is_422_problem_with_fields(shared: LiveServer) -> None:
    r = shared.http.post("/auth/register", json={"email": new_email()})
    body = assert_problem(r, 422, "validation_error")
    assert body["fields"] == ["password"]


def test_refresh_validation_error(shared: LiveServer) -> None:
    body = assert_problem(shared.http.post("/auth/refresh", json={}), 422, "validation_error")
    assert body["fields"] == ["refresh_token"]
    body = assert_problem(
        shared.http.post("/auth/refresh", json={"refresh_token": "x" * 300}),
        422,
        "validation_error",
    )
    assert body["fields"] == ["refresh_token"]


# --- CORS ----------------------------------------------------------------------------------


def test_cors_only_for_configured_origins(make_server: ServerFactory) -> None:
    live = make_server({"AUTHGATE_CORS_ORIGINS": "https://app.example.com"})
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    r = live.http.options("/auth/login", headers={"Origin": "https://app.example.com", **preflight})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "access-control-allow-credentials" not in r.headers
    r = live.http.options("/auth/login", headers={"Origin": "https://evil.example", **preflight})
    assert r.headers.get("access-control-allow-origin") is None
    r = live.http.get("/healthz", headers={"Origin": "https://evil.example"})
    assert r.status_code == 200
    assert r.headers.get("access-control-allow-origin") is None


def test_no_cors_by_default(shared: LiveServer) -> None:
    r = shared.http.get("/healthz", headers={"Origin": "https://app.example.com"})
    assert r.headers.get("access-control-allow-origin") is None


def test_parser_differential_repeated_authorization_header_is_refused(server: LiveServer) -> None:
    """The server used to read the first of two Authorization headers while the guard
    refused them: one strict parser now serves both, and the request is refused."""
    token = server.register(new_email())["access_token"]
    headers = httpx.Headers([("authorization", f"Bearer {token}"), ("authorization", "Bearer x")])
    r = server.http.get("/auth/me", headers=headers)
    assert_problem(r, 400, "invalid_request")
    assert server.http.get("/auth/me", headers=bearer(token)).status_code == 200
