"""/admin: users, roles, sessions, keys and audit, and who may call them."""

from __future__ import annotations

from typing import Any

import pytest

from _support.http import PASSWORD, assert_problem, bearer, new_email
from _support.tokens import claims_of

from .server import LiveServer

ADMIN_ROUTES = [
    ("GET", "/admin/users"),
    ("POST", "/admin/users"),
    ("GET", "/admin/users/usr_x"),
    ("PATCH", "/admin/users/usr_x"),
    ("DELETE", "/admin/users/usr_x"),
    ("GET", "/admin/roles"),
    ("POST", "/admin/roles"),
    ("GET", "/admin/roles/x"),
    ("PUT", "/admin/roles/x"),
    ("DELETE", "/admin/roles/x"),
    ("GET", "/admin/sessions?user=usr_x"),
    ("DELETE", "/admin/sessions/sid_x"),
    ("GET", "/admin/keys"),
    ("POST", "/admin/keys/rotate"),
    ("GET", "/admin/audit"),
]


@pytest.fixture
def admin(server: LiveServer) -> str:
    return server.make_admin()


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json() if r.content else None


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_admin_routes_need_a_token(shared: LiveServer, method: str, path: str) -> None:
    r = shared.http.request(method, path, json={})
    assert_problem(r, 401, "authentication_required")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "error=" not in r.headers["www-authenticate"]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_admin_routes_refuse_non_admins(shared: LiveServer, method: str, path: str) -> None:
    user = shared.register(new_email())
    r = shared.http.request(method, path, headers=bearer(user["access_token"]), json={})
    body = assert_problem(r, 403, "insufficient_scope")
    assert body["scope"] == "authgate:admin"
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="authgate:admin"' in challenge


def test_admin_routes_refuse_bad_tokens(shared: LiveServer) -> None:
    r = shared.http.get("/admin/users", headers=bearer("x.y.z"))
    assert_problem(r, 401, "invalid_token")
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_a_role_with_another_permission_is_not_admin(server: LiveServer) -> None:
    server.call(server.services.directory.put_role("writer", ["posts:write"]))
    server.call(server.services.accounts.create_user("w@example.com", PASSWORD, roles=["writer"]))
    token = server.login("w@example.com")["access_token"]
    assert claims_of(token)["scope"] == "posts:write"
    assert_problem(
        server.http.get("/admin/users", headers=bearer(token)), 403, "insufficient_scope"
    )


# --- users ---------------------------------------------------------------------------------


def test_bootstrapped_admin_token(server: LiveServer, admin: str) -> None:
    claims = claims_of(admin)
    assert claims["roles"] == ["admin"]
    assert claims["scope"] == "authgate:admin"
    me = ok(server.http.get("/auth/me", headers=bearer(admin)))
    assert me["permissions"] == ["authgate:admin"]


def test_user_crud(server: LiveServer, admin: str) -> None:
    ok(
        server.http.post(
            "/admin/roles",
            json={"name": "editor", "permissions": ["posts:write"]},
            headers=bearer(admin),
        ),
        201,
    )
    created = ok(
        server.http.post(
            "/admin/users",
            json={
                "email": "Ed@Example.com",
                "password": PASSWORD,
                "name": "Ed",
                "roles": ["editor"],
            },
            headers=bearer(admin),
        ),
        201,
    )
    assert created["email"] == "ed@example.com"
    assert created["roles"] == ["editor"]
    assert created["permissions"] == ["posts:write"]
    assert created["disabled"] is False
    uid = created["id"]

    got = ok(server.http.get(f"/admin/users/{uid}", headers=bearer(admin)))
    assert got == created
    ed = server.login("ed@example.com")
    assert claims_of(ed["access_token"])["scope"] == "posts:write"

    # Role change: the user's access tokens die; a refresh carries the new roles.
    server.clock.advance(1)
    patched = ok(
        server.http.patch(f"/admin/users/{uid}", json={"roles": []}, headers=bearer(admin))
    )
    assert patched["roles"] == []
    assert patched["permissions"] == []
    assert_problem(
        server.http.get("/auth/me", headers=bearer(ed["access_token"])), 401, "invalid_token"
    )
    fresh = ok(server.http.post("/auth/refresh", json={"refresh_token": ed["refresh_token"]}))
    assert claims_of(fresh["access_token"])["roles"] == []
    assert fresh["scope"] == ""
    ok(server.http.get("/auth/me", headers=bearer(fresh["access_token"])))

    # Disable: every session ends and the user cannot log in.
    patched = ok(
        server.http.patch(f"/admin/users/{uid}", json={"disabled": True}, headers=bearer(admin))
    )
    assert patched["disabled"] is True
    assert_problem(
        server.http.get("/auth/me", headers=bearer(fresh["access_token"])), 401, "invalid_token"
    )
    assert_problem(
        server.http.post("/auth/refresh", json={"refresh_token": fresh["refresh_token"]}),
        401,
        "invalid_grant",
    )
    assert_problem(
        server.http.post("/auth/login", json={"email": "ed@example.com", "password": PASSWORD}),
        401,
        "invalid_credentials",
    )
    # Enable again.
    ok(server.http.patch(f"/admin/users/{uid}", json={"disabled": False}, headers=bearer(admin)))
    again = server.login("ed@example.com")

    # Delete: the user is gone.
    r = server.http.delete(f"/admin/users/{uid}", headers=bearer(admin))
    assert r.status_code == 204
    assert_problem(server.http.get(f"/admin/users/{uid}", headers=bearer(admin)), 404, "not_found")
    assert_problem(
        server.http.delete(f"/admin/users/{uid}", headers=bearer(admin)), 404, "not_found"
    )
    assert_problem(
        server.http.patch(f"/admin/users/{uid}", json={"disabled": True}, headers=bearer(admin)),
        404,
        "not_found",
    )
    assert_problem(
        server.http.post("/auth/login", json={"email": "ed@example.com", "password": PASSWORD}),
        401,
        "invalid_credentials",
    )
    assert_problem(
        server.http.post("/auth/refresh", json={"refresh_token": again["refresh_token"]}),
        401,
        "invalid_grant",
    )


def test_a_deleted_users_access_token_is_401(server: LiveServer, admin: str) -> None:
    """Sessions.authenticate must answer invalid_token, not leak not_found (404)."""
    body = server.register(new_email())
    r = server.http.delete(f"/admin/users/{body['user']['id']}", headers=bearer(admin))
    assert r.status_code == 204
    for method, path in (("GET", "/auth/me"), ("GET", "/auth/sessions"), ("POST", "/auth/logout")):
        r = server.http.request(method, path, headers=bearer(body["access_token"]))
        assert_problem(r, 401, "invalid_token")
        assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_a_deleted_admins_token_is_401_on_admin_routes(server: LiveServer, admin: str) -> None:
    admin_id = claims_of(admin)["sub"]
    r = server.http.delete(f"/admin/users/{admin_id}", headers=bearer(admin))
    assert r.status_code == 204
    r = server.http.get("/admin/users", headers=bearer(admin))
    assert_problem(r, 401, "invalid_token")


def test_create_user_errors(server: LiveServer, admin: str) -> None:
    r = server.http.post(
        "/admin/users",
        json={"email": "admin@EXAMPLE.com", "password": PASSWORD},
        headers=bearer(admin),
    )
    assert_problem(r, 409, "email_taken")
    r = server.http.post(
        "/admin/users",
        json={"email": "n@example.com", "password": PASSWORD, "roles": ["nope"]},
        headers=bearer(admin),
    )
    assert_problem(r, 404, "not_found")
    r = server.http.post(
        "/admin/users", json={"email": "n@example.com", "password": "short"}, headers=bearer(admin)
    )
    assert_problem(r, 400, "weak_password")
    r = server.http.post(
        "/admin/users",
        json={"email": "n@example.com", "password": PASSWORD, "is_admin": True},
        headers=bearer(admin),
    )
    body = assert_problem(r, 422, "validation_error")
    assert body["fields"] == ["is_admin"]
    # None of these created the user.
    r = server.http.post("/auth/login", json={"email": "n@example.com", "password": PASSWORD})
    assert_problem(r, 401, "invalid_credentials")


def test_patch_user_errors(server: LiveServer, admin: str) -> None:
    uid = server.register(new_email())["user"]["id"]
    r = server.http.patch(f"/admin/users/{uid}", json={"roles": ["ghost"]}, headers=bearer(admin))
    assert_problem(r, 404, "not_found")
    r = server.http.patch(
        f"/admin/users/{uid}", json={"email": "x@example.com"}, headers=bearer(admin)
    )
    assert_problem(r, 422, "validation_error")
    r = server.http.patch(f"/admin/users/{uid}", json={"disabled": "maybe"}, headers=bearer(admin))
    assert_problem(r, 422, "validation_error")
    got = ok(server.http.get(f"/admin/users/{uid}", headers=bearer(admin)))
    assert got["roles"] == []
    assert got["disabled"] is False


def test_users_are_paged(server: LiveServer, admin: str) -> None:
    for _ in range(4):
        server.register(new_email())
    page1 = ok(server.http.get("/admin/users", params={"limit": 2}, headers=bearer(admin)))
    assert len(page1["users"]) == 2
    assert page1["next"] == page1["users"][-1]["id"]
    page2 = ok(
        server.http.get(
            "/admin/users", params={"limit": 2, "after": page1["next"]}, headers=bearer(admin)
        )
    )
    page3 = ok(
        server.http.get(
            "/admin/users", params={"limit": 2, "after": page2["next"]}, headers=bearer(admin)
        )
    )
    assert page3["next"] is None
    ids = [u["id"] for p in (page1, page2, page3) for u in p["users"]]
    assert len(ids) == 5  # four users and the admin
    assert ids == sorted(ids)
    assert len(set(ids)) == 5
    everyone = ok(server.http.get("/admin/users", headers=bearer(admin)))
    assert [u["id"] for u in everyone["users"]] == ids
    assert everyone["next"] is None
    for bad in ({"limit": 0}, {"limit": 201}, {"limit": "x"}):
        assert_problem(
            server.http.get("/admin/users", params=bad, headers=bearer(admin)),
            422,
            "validation_error",
        )


# --- roles ---------------------------------------------------------------------------------


def test_role_crud(server: LiveServer, admin: str) -> None:
    role = ok(
        server.http.post(
            "/admin/roles",
            json={"name": "reader", "permissions": ["posts:read", "posts:read", "a:b"]},
            headers=bearer(admin),
        ),
        201,
    )
    assert role["name"] == "reader"
    assert role["permissions"] == ["a:b", "posts:read"]
    assert role["created_at"] == server.clock.now()
    assert_problem(
        server.http.post(
            "/admin/roles", json={"name": "reader", "permissions": []}, headers=bearer(admin)
        ),
        409,
        "conflict",
    )
    names = [r["name"] for r in ok(server.http.get("/admin/roles", headers=bearer(admin)))]
    assert sorted(names) == ["admin", "reader"]
    assert ok(server.http.get("/admin/roles/reader", headers=bearer(admin))) == role

    # A holder's token carries the permissions; replacing them kills the holder's tokens.
    uid = ok(
        server.http.post(
            "/admin/users",
            json={"email": "r@example.com", "password": PASSWORD, "roles": ["reader"]},
            headers=bearer(admin),
        ),
        201,
    )["id"]
    reader = server.login("r@example.com")
    assert claims_of(reader["access_token"])["scope"] == "a:b posts:read"
    server.clock.advance(1)
    replaced = ok(
        server.http.put(
            "/admin/roles/reader", json={"permissions": ["posts:list"]}, headers=bearer(admin)
        )
    )
    assert replaced["permissions"] == ["posts:list"]
    assert replaced["created_at"] == role["created_at"]
    assert_problem(
        server.http.get("/auth/me", headers=bearer(reader["access_token"])), 401, "invalid_token"
    )
    server.clock.advance(1)
    fresh = ok(server.http.post("/auth/refresh", json={"refresh_token": reader["refresh_token"]}))
    assert fresh["scope"] == "posts:list"

    # Delete: holders lose it and their tokens die.
    server.clock.advance(1)
    assert server.http.delete("/admin/roles/reader", headers=bearer(admin)).status_code == 204
    assert_problem(server.http.get("/admin/roles/reader", headers=bearer(admin)), 404, "not_found")
    assert_problem(
        server.http.delete("/admin/roles/reader", headers=bearer(admin)), 404, "not_found"
    )
    assert_problem(
        server.http.get("/auth/me", headers=bearer(fresh["access_token"])), 401, "invalid_token"
    )
    assert ok(server.http.get(f"/admin/users/{uid}", headers=bearer(admin)))["roles"] == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "Bad Name", "permissions": []}, 400, "invalid_request"),
        ({"name": "ok", "permissions": ["has space"]}, 400, "invalid_request"),
        ({"name": "ok", "permissions": ['quo"te']}, 400, "invalid_request"),
        ({"name": "ok", "permissions": [], "extra": 1}, 422, "validation_error"),
        ({"permissions": []}, 422, "validation_error"),
    ],
)
def test_role_validation(
    server: LiveServer, admin: str, body: dict[str, Any], status: int, code: str
) -> None:
    assert_problem(server.http.post("/admin/roles", json=body, headers=bearer(admin)), status, code)
    assert [r["name"] for r in ok(server.http.get("/admin/roles", headers=bearer(admin)))] == [
        "admin"
    ]


def test_put_unknown_role(server: LiveServer, admin: str) -> None:
    r = server.http.put("/admin/roles/ghost", json={"permissions": []}, headers=bearer(admin))
    assert_problem(r, 404, "not_found")


# --- sessions ------------------------------------------------------------------------------


def test_admin_sessions(server: LiveServer, admin: str) -> None:
    email = new_email()
    a = server.register(email)
    server.clock.advance(1)
    b = server.login(email)
    uid = a["user"]["id"]
    sessions = ok(server.http.get("/admin/sessions", params={"user": uid}, headers=bearer(admin)))
    sid_a, sid_b = (claims_of(t["access_token"])["sid"] for t in (a, b))
    assert [s["sid"] for s in sessions] == [sid_b, sid_a]
    assert all(s["user_id"] == uid and s["client_id"] == "authgate" for s in sessions)
    assert sessions[1]["expires_at"] == sessions[1]["created_at"] + server.settings.refresh_max_ttl

    assert server.http.delete(f"/admin/sessions/{sid_a}", headers=bearer(admin)).status_code == 204
    assert_problem(
        server.http.get("/auth/me", headers=bearer(a["access_token"])), 401, "invalid_token"
    )
    ok(server.http.get("/auth/me", headers=bearer(b["access_token"])))
    sessions = ok(server.http.get("/admin/sessions", params={"user": uid}, headers=bearer(admin)))
    assert [s["sid"] for s in sessions] == [sid_b]

    assert_problem(
        server.http.delete("/admin/sessions/sid_ghost", headers=bearer(admin)), 404, "not_found"
    )
    assert_problem(
        server.http.get("/admin/sessions", params={"user": "usr_ghost"}, headers=bearer(admin)),
        404,
        "not_found",
    )
    assert_problem(
        server.http.get("/admin/sessions", headers=bearer(admin)), 422, "validation_error"
    )
    audit = ok(
        server.http.get("/admin/audit", params={"event": "session_revoked"}, headers=bearer(admin))
    )
    assert [(e["sid"], e["detail"]["reason"]) for e in audit] == [(sid_a, "admin_revoked")]


# --- keys and audit ------------------------------------------------------------------------


def test_keys_list_and_rotate(server: LiveServer, admin: str) -> None:
    listed = ok(server.http.get("/admin/keys", headers=bearer(admin)))
    # The access tokens' ES256 keys, and the ID tokens' RS256 keys beside them.
    assert sorted(k["alg"] for k in listed) == ["ES256", "ES256", "RS256", "RS256"]
    keys = [k for k in listed if k["alg"] == "ES256"]
    states = {k["state"]: k for k in keys}
    assert sorted(states) == ["current", "next"]
    assert set(states["current"]) == {
        "kid",
        "alg",
        "state",
        "created_at",
        "activated_at",
        "retired_at",
        "expires_at",
    }
    assert claims_of(admin)
    assert states["current"]["kid"]

    rotated = ok(server.http.post("/admin/keys/rotate", headers=bearer(admin)))
    assert {k["alg"] for k in rotated if k["state"] == "retiring"} == {"ES256", "RS256"}
    after = {k["state"]: k for k in rotated if k["alg"] == "ES256"}
    assert sorted(after) == ["current", "next", "retiring"]
    assert after["current"]["kid"] == states["next"]["kid"]
    assert after["retiring"]["kid"] == states["current"]["kid"]
    assert after["retiring"]["expires_at"] == server.clock.now() + server.settings.access_ttl
    assert after["next"]["kid"] not in (states["current"]["kid"], states["next"]["kid"])
    assert ok(server.http.get("/admin/keys", headers=bearer(admin))) == rotated
    events = ok(
        server.http.get("/admin/audit", params={"event": "key_rotated"}, headers=bearer(admin))
    )
    assert len(events) == 1


def test_audit_filters_and_cursor(server: LiveServer, admin: str) -> None:
    email = new_email()
    uid = server.register(email)["user"]["id"]
    server.http.post("/auth/login", json={"email": email, "password": "wrong " + PASSWORD})
    server.login(email)

    mine = ok(server.http.get("/admin/audit", params={"user": uid}, headers=bearer(admin)))
    assert [e["event"] for e in mine] == [
        "user_created",
        "verification_sent",
        "login_failed",
        "login_ok",
    ]
    assert all(e["user_id"] == uid for e in mine)
    assert mine[2]["ip"] == "127.0.0.1"
    ids = [e["id"] for e in mine]
    assert ids == sorted(ids)
    # No secret ever reaches the log.
    text = server.http.get("/admin/audit", headers=bearer(admin)).text
    assert PASSWORD not in text
    assert "argon2" not in text

    failed = ok(
        server.http.get("/admin/audit", params={"event": "login_failed"}, headers=bearer(admin))
    )
    assert [e["id"] for e in failed] == [mine[2]["id"]]
    later = ok(
        server.http.get(
            "/admin/audit", params={"user": uid, "after": ids[0]}, headers=bearer(admin)
        )
    )
    assert [e["id"] for e in later] == ids[1:]
    limited = ok(server.http.get("/admin/audit", params={"limit": 1}, headers=bearer(admin)))
    assert len(limited) == 1
    assert_problem(
        server.http.get("/admin/audit", params={"limit": 0}, headers=bearer(admin)),
        422,
        "validation_error",
    )
