"""Liveness, readiness, metrics, the OpenAPI document and docs, RFC 8414 metadata."""

from __future__ import annotations

import re
from pathlib import Path

from _support.http import PASSWORD, assert_problem, bearer, new_email
from _support.tokens import claims_of

from .conftest import ServerFactory
from .server import LiveServer


def test_healthz(shared: LiveServer) -> None:
    r = shared.http.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_readyz(shared: LiveServer) -> None:
    r = shared.http.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_readyz_reports_an_unreachable_database(make_server: ServerFactory) -> None:
    live = make_server()
    assert live.http.get("/readyz").status_code == 200
    # Make the database unreadable: its folder is replaced by a file of the same name.
    db = Path(live.db_path)
    live.call(live.services.storage.close())
    folder = db.parent
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    folder.write_text("not a folder")
    try:
        r = live.http.get("/readyz")
        assert r.status_code == 503
        assert r.json() == {"status": "unavailable"}
        assert r.headers["retry-after"] == "1"
    finally:
        folder.unlink()
        folder.mkdir()


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, f"{name} not in the metrics"
    return float(match.group(1))


def test_metrics(shared: LiveServer) -> None:
    email = new_email()
    shared.register(email)
    before = shared.http.get("/metrics")
    assert before.status_code == 200
    assert before.headers["content-type"].startswith("text/plain; version=0.0.4")
    ok0 = (
        metric(before.text, 'authgate_logins_total{result="ok"}')
        if 'result="ok"' in before.text
        else 0.0
    )
    regs0 = metric(before.text, "authgate_registrations_total")
    shared.login(email)
    shared.http.post("/auth/login", json={"email": email, "password": "wrong " + PASSWORD})
    shared.register(new_email())
    after = shared.http.get("/metrics").text
    assert metric(after, 'authgate_logins_total{result="ok"}') == ok0 + 1
    assert metric(after, 'authgate_logins_total{result="failed"}') >= 1
    assert metric(after, "authgate_registrations_total") == regs0 + 1
    assert 'route="/auth/login"' in after
    assert "authgate_http_request_duration_seconds_bucket" in after
    assert "authgate_password_hashes_in_flight 0.0" in after
    # Never a secret or an email in the exposition.
    assert email not in after
    assert PASSWORD not in after


def test_openapi_document(shared: LiveServer) -> None:
    r = shared.http.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["info"]["title"] == "authgate"
    paths = doc["paths"]
    for path in (
        "/auth/register",
        "/auth/login",
        "/auth/refresh",
        "/auth/logout",
        "/auth/logout-all",
        "/auth/me",
        "/auth/password",
        "/auth/sessions",
        "/auth/sessions/{sid}",
        "/auth/revocations",
        "/admin/users",
        "/admin/users/{user_id}",
        "/admin/roles",
        "/admin/roles/{name}",
        "/admin/sessions",
        "/admin/sessions/{sid}",
        "/admin/keys",
        "/admin/keys/rotate",
        "/admin/audit",
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths, path
    login = paths["/auth/login"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/x-www-form-urlencoded"} <= set(login)
    assert "HTTPBearer" in doc["components"]["securitySchemes"]


def test_docs(shared: LiveServer) -> None:
    r = shared.http.get("/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "swagger" in r.text.lower()
    assert "/openapi.json" in r.text


def test_authorization_server_metadata(shared: LiveServer) -> None:
    r = shared.http.get("/.well-known/oauth-authorization-server")
    assert r.status_code == 200
    assert "max-age=" in r.headers["cache-control"]
    doc = r.json()
    issuer = shared.settings.issuer
    assert doc["issuer"] == issuer
    assert doc["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
    assert doc["authgate_revocation_feed_endpoint"] == f"{issuer}/auth/revocations"
    assert doc["authgate_access_token_signing_alg_values_supported"] == ["ES256"]
    assert "refresh_token" in doc["grant_types_supported"]


def test_metadata_follows_the_configured_issuer(make_server: ServerFactory) -> None:
    live = make_server({"AUTHGATE_ISSUER": "https://auth.example.com"})
    doc = live.http.get("/.well-known/oauth-authorization-server").json()
    assert doc["issuer"] == "https://auth.example.com"
    assert doc["jwks_uri"] == "https://auth.example.com/.well-known/jwks.json"
    assert (
        claims_of(live.register(new_email())["access_token"])["iss"] == "https://auth.example.com"
    )


def test_ops_routes_need_no_token_and_ignore_a_bad_one(shared: LiveServer) -> None:
    for path in ("/healthz", "/readyz", "/.well-known/jwks.json"):
        assert shared.http.get(path, headers=bearer("garbage")).status_code == 200
    assert_problem(shared.http.post("/healthz"), 405, "method_not_allowed")
