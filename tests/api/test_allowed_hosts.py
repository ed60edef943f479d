"""The Host header: only the allowed names (AUTHGATE_ALLOWED_HOSTS; by default the issuer's
host and loopback) are answered, with 400 ``invalid_host`` otherwise, and no response is a
redirect built from it. Over HTTP, against a real server."""

from __future__ import annotations

import socket

import pytest

from _support.http import assert_problem
from authgate.errors import ConfigurationError
from authgate.settings import Settings

from .conftest import ServerFactory
from .server import LiveServer


def _raw(url: str, request: bytes) -> tuple[int, bytes]:
    """Send ``request`` as it is; return the status and the whole answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


def test_host_header_reflection_no_redirect_is_built_from_host(shared: LiveServer) -> None:
    evil = {"Host": "evil.example"}
    for path in ("/auth/login/", "/auth/me/", "/docs/", "/.well-known/jwks.json/"):
        r = shared.http.get(path, headers=evil)
        assert_problem(r, 400, "invalid_host")
        assert "location" not in r.headers
    # With an allowed Host, a trailing slash is simply another path: never a redirect.
    doc = shared.http.get("/openapi.json").json()
    for path, item in doc["paths"].items():
        for method in item:
            r = shared.http.request(method.upper(), path + "/")
            assert r.status_code < 300 or r.status_code >= 400, (method, path)
            assert "location" not in r.headers, (method, path)
            assert "evil" not in r.text


def test_host_header_reflection_oauth2_gets_the_rfc6749_body(shared: LiveServer) -> None:
    r = shared.http.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, headers={"Host": "x.example"}
    )
    assert r.status_code == 400
    assert r.json() == {"error": "invalid_request"}


def test_host_header_reflection_default_hosts(make_server: ServerFactory) -> None:
    live = make_server({"AUTHGATE_ISSUER": "https://auth.example.com"})
    meta = "/.well-known/oauth-authorization-server"
    for host in ("auth.example.com", "AUTH.example.com:8443", "localhost:9", "[::1]:80"):
        assert live.http.get(meta, headers={"Host": host}).status_code == 200, host
    for host in (
        "evil.example",
        "auth.example.com.evil.example",
        "auth.example.com@evil.example",
        "auth.example.com:80@evil.example",
        "auth.example.com:x",
        "auth.example.com.",
        "[::1",
        "",
    ):
        assert_problem(live.http.get(meta, headers={"Host": host}), 400, "invalid_host")


def test_host_header_reflection_configured_hosts(make_server: ServerFactory) -> None:
    live = make_server({"AUTHGATE_ALLOWED_HOSTS": "api.example.com, Other.Example.org"})
    assert live.http.get("/auth/me", headers={"Host": "api.example.com"}).status_code == 401
    assert live.http.get("/auth/me", headers={"Host": "other.example.org"}).status_code == 401
    assert_problem(live.http.get("/auth/me"), 400, "invalid_host")  # loopback not listed
    # Liveness and readiness answer probes sent to the address, whatever the Host.
    for probe in ("/healthz", "/readyz"):
        assert live.http.get(probe, headers={"Host": "10.1.2.3:8000"}).status_code == 200


def test_host_header_reflection_missing_or_repeated_host(shared: LiveServer) -> None:
    status, answer = _raw(shared.url, b"GET /auth/me HTTP/1.0\r\n\r\n")
    assert status == 400
    assert b'"code":"invalid_host"' in answer
    status, answer = _raw(
        shared.url,
        b"GET /auth/me HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert status == 400
    assert b"evil" not in answer


@pytest.mark.parametrize("host", ["http://a.example", "a.example:80", "*", "[::1]", "a b", "-a"])
def test_host_header_reflection_bad_allowed_hosts_are_refused(host: str) -> None:
    with pytest.raises(ConfigurationError):
        Settings.from_env({"AUTHGATE_ALLOWED_HOSTS": host})


def test_host_header_reflection_default_names() -> None:
    settings = Settings.from_env({"AUTHGATE_ISSUER": "https://Auth.Example.com:8443"})
    assert settings.host_names == {"auth.example.com", "localhost", "127.0.0.1", "::1"}
    settings = Settings.from_env({"AUTHGATE_ALLOWED_HOSTS": "a.example,::1"})
    assert settings.host_names == {"a.example", "::1"}
