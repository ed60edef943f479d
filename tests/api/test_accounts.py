"""Registration, login, the token response, /auth/me and enumeration resistance."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from _support.http import PASSWORD, TOKEN_FIELDS, assert_problem, bearer, new_email
from _support.tokens import header_of
from authgate.jose import ClaimsPolicy, KeySet, decode
from authgate.wiring import new_master_key

from .conftest import ServerFactory
from .server import LiveServer


def assert_token_response(r: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["cache-control"] == "no-store"
    body: dict[str, Any] = r.json()
    assert set(body) >= TOKEN_FIELDS
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    assert isinstance(body["refresh_expires_in"], int)
    assert body["refresh_expires_in"] > 0
    return body


# --- register ------------------------------------------------------------------------------


def test_register_returns_tokens_and_user(shared: LiveServer) -> None:
    email = new_email()
    r = shared.http.post(
        "/auth/register", json={"email": email, "password": PASSWORD, "name": "Ada"}
    )
    body = assert_token_response(r, 201)
    assert set(body) == TOKEN_FIELDS | {"user"}
    user = body["user"]
    assert isinstance(user, dict)
    assert set(user) == {
        "id",
        "email",
        "name",
        "roles",
        "permissions",
        "created_at",
        "email_verified",
        "mfa",
    }
    assert user["email_verified"] is False
    assert user["mfa"] == {"totp": False, "passkeys": 0, "recovery_codes_left": 0}
    assert user["email"] == email
    assert user["name"] == "Ada"
    assert user["roles"] == []
    assert user["permissions"] == []
    assert user["created_at"] == shared.clock.now()
    assert body["scope"] == ""
    me = shared.http.get("/auth/me", headers=bearer(str(body["access_token"])))
    assert me.status_code == 200
    assert me.json() == user


def test_access_token_is_rfc9068_and_verifies_against_jwks(shared: LiveServer) -> None:
    body = shared.register(new_email())
    token = body["access_token"]
    header = header_of(token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"
    jwks = shared.http.get("/.well-known/jwks.json").json()
    assert header["kid"] in {k["kid"] for k in jwks["keys"]}
    claims = decode(
        token,
        KeySet.from_jwks(jwks),
        algorithms=["ES256"],
        policy=ClaimsPolicy.access_token(issuer=shared.settings.issuer, audience="authgate"),
        now=shared.clock.now(),
    )
    assert claims["sub"] == body["user"]["id"]
    assert claims["sub"].startswith("usr_")
    assert body["user"]["email"] not in claims["sub"]
    assert claims["aud"] == "authgate"
    assert claims["client_id"] == "authgate"
    assert claims["exp"] == int(shared.clock.now()) + 600
    assert claims["sid"].startswith("sid_")
    assert claims["roles"] == []
    assert claims["scope"] == ""
    assert isinstance(claims["jti"], str)
    assert claims["jti"]


def test_refresh_token_is_opaque_and_stored_as_a_digest(shared: LiveServer) -> None:
    body = shared.register(new_email())
    refresh = body["refresh_token"]
    assert refresh.startswith("rt_")
    assert refresh.count(".") == 0
    with shared.db() as db:
        stored = [row[0] for row in db.execute("SELECT digest FROM refresh_tokens")]
    assert refresh not in stored
    assert hashlib.sha256(refresh.encode()).hexdigest() in stored


@pytest.mark.parametrize(
    "extra",
    [{"roles": ["admin"]}, {"is_admin": True}, {"roles": ["admin"], "is_admin": True}],
)
def test_register_refuses_extra_fields_and_never_applies_them(
    shared: LiveServer, shared_admin: str, extra: dict[str, object]
) -> None:
    email = new_email()
    r = shared.http.post("/auth/register", json={"email": email, "password": PASSWORD, **extra})
    body = assert_problem(r, 422, "validation_error")
    assert body["fields"] == sorted(extra)
    assert "access_token" not in body
    # Nothing was created: the same email registers cleanly afterwards, with no role.
    created = shared.register(email)
    assert created["user"]["roles"] == []
    assert created["user"]["permissions"] == []
    r = shared.http.get("/admin/users", headers=bearer(created["access_token"]))
    assert_problem(r, 403, "insufficient_scope")


def test_email_is_normalised(shared: LiveServer) -> None:
    local = new_email("Mixed").split("@")[0]
    first = shared.register(f"{local}@X.Example.COM")
    assert first["user"]["email"] == f"{local.lower()}@x.example.com"
    for variant in (f"  {local.lower()}@x.example.com ", f"{local.upper()}@X.EXAMPLE.COM"):
        r = shared.http.post("/auth/register", json={"email": variant, "password": PASSWORD})
        assert_problem(r, 409, "email_taken")
        login = shared.login(variant)
        me = shared.http.get("/auth/me", headers=bearer(login["access_token"])).json()
        assert me["id"] == first["user"]["id"]


def test_admin_at_x_variants_are_one_account(make_server: ServerFactory) -> None:
    live = make_server()
    live.register("Admin@X.com")
    r = live.http.post("/auth/register", json={"email": " admin@x.com ", "password": PASSWORD})
    assert_problem(r, 409, "email_taken")
    with live.db() as db:
        rows = db.execute("SELECT email FROM users").fetchall()
    assert rows == [("admin@x.com",)]


def test_register_twice_is_409(shared: LiveServer) -> None:
    email = new_email()
    shared.register(email)
    r = shared.http.post("/auth/register", json={"email": email, "password": PASSWORD + "x"})
    assert_problem(r, 409, "email_taken")
    # The first password still logs in, the second does not.
    shared.login(email)
    r = shared.http.post("/auth/login", json={"email": email, "password": PASSWORD + "x"})
    assert_problem(r, 401, "invalid_credentials")


@pytest.mark.parametrize(
    ("password", "status", "code", "login_status", "login_code"),
    [
        ("short1!", 400, "weak_password", 401, "invalid_credentials"),  # 7 characters
        ("", 400, "weak_password", 401, "invalid_credentials"),
        ("password123", 400, "weak_password", 401, "invalid_credentials"),  # a common one
        ("PASSWORD123", 400, "weak_password", 401, "invalid_credentials"),  # any case
        ("qwertyuiop", 400, "weak_password", 401, "invalid_credentials"),
        ("p" * 1025, 400, "password_too_long", 401, "invalid_credentials"),  # > 1024 bytes
        ("é" * 600, 400, "password_too_long", 401, "invalid_credentials"),  # 1200 bytes
        ("p" * 5000, 422, "validation_error", 400, "invalid_request"),  # over the schema cap
    ],
)
def test_weak_or_oversized_passwords_are_refused(
    shared: LiveServer, password: str, status: int, code: str, login_status: int, login_code: str
) -> None:
    email = new_email()
    r = shared.http.post("/auth/register", json={"email": email, "password": password})
    assert_problem(r, status, code)
    r = shared.http.post("/auth/login", json={"email": email, "password": password})
    assert_problem(r, login_status, login_code)
    # Nothing was created: a good password registers the same email afterwards.
    shared.register(email)


def test_password_of_exactly_1024_bytes_is_accepted(shared: LiveServer) -> None:
    email = new_email()
    password = "Zq9!" * 256
    shared.register(email, password)
    shared.login(email, password)


@pytest.mark.parametrize("email", ["not-an-email", "a@", "@b.com", "a b@c.com", "x" * 321])
def test_invalid_email_is_refused(shared: LiveServer, email: str) -> None:
    r = shared.http.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert r.status_code in (400, 422), r.text
    assert r.json()["code"] in ("invalid_request", "validation_error")
    assert r.headers["content-type"] == "application/problem+json"


def test_registration_closed(make_server: ServerFactory) -> None:
    live = make_server({"AUTHGATE_REGISTRATION": "closed"})
    r = live.http.post("/auth/register", json={"email": new_email(), "password": PASSWORD})
    assert_problem(r, 403, "registration_closed")
    # An admin can still create accounts.
    admin = live.make_admin()
    r = live.http.post(
        "/admin/users",
        json={"email": "made@example.com", "password": PASSWORD},
        headers=bearer(admin),
    )
    assert r.status_code == 201, r.text
    live.login("made@example.com")


# --- login ---------------------------------------------------------------------------------


def test_login_json(shared: LiveServer) -> None:
    email = new_email()
    reg = shared.register(email)
    r = shared.http.post("/auth/login", json={"email": email, "password": PASSWORD})
    body = assert_token_response(r)
    assert set(body) == TOKEN_FIELDS
    assert body["access_token"] != reg["access_token"]
    assert body["refresh_token"] != reg["refresh_token"]
    me = shared.http.get("/auth/me", headers=bearer(str(body["access_token"])))
    assert me.json()["email"] == email


def test_login_oauth2_form(shared: LiveServer) -> None:
    email = new_email()
    shared.register(email)
    r = shared.http.post(
        "/auth/login",
        data={"username": email.upper(), "password": PASSWORD, "grant_type": "password"},
    )
    body = assert_token_response(r)
    me = shared.http.get("/auth/me", headers=bearer(str(body["access_token"])))
    assert me.json()["email"] == email


def test_login_form_with_wrong_password(shared: LiveServer) -> None:
    email = new_email()
    shared.register(email)
    r = shared.http.post("/auth/login", data={"username": email, "password": "wrong " + PASSWORD})
    assert_problem(r, 401, "invalid_credentials")


@pytest.mark.parametrize(
    ("content", "ctype", "code"),
    [
        (b"email=a&password=b", "text/plain", "invalid_request"),
        (b'{"email": "a@example.com"}', "application/json", "invalid_request"),
        (
            b'{"email": "a@example.com", "password": "x", "roles": []}',
            "application/json",
            "invalid_request",
        ),
        # Not one JSON object: the JSON body gate answers, as on every route.
        (b"[]", "application/json", "invalid_json"),
        (b"{not json", "application/json", "invalid_json"),
    ],
)
def test_login_bad_bodies_are_400(
    shared: LiveServer, content: bytes, ctype: str, code: str
) -> None:
    r = shared.http.post("/auth/login", content=content, headers={"Content-Type": ctype})
    assert_problem(r, 400, code)


def test_unknown_user_and_wrong_password_answer_identically(shared: LiveServer) -> None:
    email = new_email()
    shared.register(email)
    wrong = shared.http.post("/auth/login", json={"email": email, "password": "Wrong " + PASSWORD})
    unknown = shared.http.post(
        "/auth/login", json={"email": new_email(), "password": "Wrong " + PASSWORD}
    )
    invalid = shared.http.post("/auth/login", json={"email": "nobody", "password": PASSWORD})
    for r in (wrong, unknown, invalid):
        assert_problem(r, 401, "invalid_credentials")
    assert wrong.content == unknown.content == invalid.content
    skip = {"date", "content-length"}
    assert {k: v for k, v in wrong.headers.items() if k not in skip} == {
        k: v for k, v in unknown.headers.items() if k not in skip
    }


def test_unknown_user_still_costs_a_password_verify(shared: LiveServer) -> None:
    hasher = shared.services.hasher
    calls: list[object] = []
    original = hasher._verify_sync

    def counting(stored: str, password: bytes) -> bool:
        calls.append(stored)
        return original(stored, password)

    hasher._verify_sync = counting  # type: ignore[method-assign]
    try:
        r = shared.http.post("/auth/login", json={"email": new_email(), "password": PASSWORD})
    finally:
        del hasher._verify_sync
    assert_problem(r, 401, "invalid_credentials")
    assert len(calls) == 1


def test_disabled_user_cannot_log_in(shared: LiveServer, shared_admin: str) -> None:
    email = new_email()
    user_id = shared.register(email)["user"]["id"]
    r = shared.http.patch(
        f"/admin/users/{user_id}", json={"disabled": True}, headers=bearer(shared_admin)
    )
    assert r.status_code == 200
    r = shared.http.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert_problem(r, 401, "invalid_credentials")


# --- argon2 parameters ---------------------------------------------------------------------


def argon2_params(db_path: Path, email: str) -> str:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        (stored,) = db.execute(
            "SELECT password_hash FROM users WHERE email = ?", (email,)
        ).fetchone()
    assert stored.startswith("$argon2id$v=19$")
    return str(stored.split("$")[3])


def test_default_argon2_parameters_are_owasp(make_server: ServerFactory, tmp_path: Path) -> None:
    env = {
        "AUTHGATE_MASTER_KEY": new_master_key(),
        "AUTHGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'owasp.db'}",
    }
    live = make_server(env, replace_env=True)
    assert live.settings.argon2_memory_kib == 19 * 1024
    assert live.settings.argon2_time_cost == 2
    live.register("owasp@example.com")
    assert argon2_params(live.db_path, "owasp@example.com") == "m=19456,t=2,p=1"


def test_hash_is_upgraded_on_login_when_parameters_change(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    folder = tmp_path / "rehash"
    key = new_master_key()
    first = make_server(db_dir=folder, master_key=key)
    first.register("rehash@example.com")
    assert argon2_params(first.db_path, "rehash@example.com") == "m=1024,t=1,p=1"
    first.stop()
    second = make_server(
        {"AUTHGATE_ARGON2_MEMORY_KIB": "2048", "AUTHGATE_ARGON2_TIME_COST": "2"},
        db_dir=folder,
        master_key=key,
    )
    second.login("rehash@example.com")
    assert argon2_params(second.db_path, "rehash@example.com") == "m=2048,t=2,p=1"
