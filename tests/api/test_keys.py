"""Signing-key rotation seen from outside: JWKS, old tokens, and the end of a retired key."""

from __future__ import annotations

from typing import Any

import pytest

from _support.http import assert_problem, bearer, new_email
from _support.tokens import claims_of, header_of
from authgate.errors import TokenExpired, UnknownKey
from authgate.jose import Key, encode

from .conftest import ServerFactory
from .server import LiveServer


def jwks_kids(live: LiveServer, alg: str = "ES256") -> set[str]:
    """The published kids of one algorithm (the access tokens' by default)."""
    r = live.http.get("/.well-known/jwks.json")
    assert r.status_code == 200
    return {k["kid"] for k in r.json()["keys"] if k["alg"] == alg}


def keys_by_state(live: LiveServer, admin: str, alg: str = "ES256") -> dict[str, dict[str, Any]]:
    r = live.http.get("/admin/keys", headers=bearer(admin))
    assert r.status_code == 200, r.text
    return {k["state"]: k for k in r.json() if k["state"] != "retired" and k["alg"] == alg}


def test_jwks_publishes_current_and_next_without_private_parts(server: LiveServer) -> None:
    r = server.http.get("/.well-known/jwks.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/jwk-set+json")
    assert "max-age=" in r.headers["cache-control"]
    published = r.json()["keys"]
    # The access tokens' current and next, and the ID tokens' (RS256) current and next.
    assert sorted(k["alg"] for k in published) == ["ES256", "ES256", "RS256", "RS256"]
    keys = [k for k in published if k["alg"] == "ES256"]
    for jwk in published:
        assert not {"d", "p", "q", "dp", "dq", "qi"} & jwk.keys()
    for jwk in keys:
        assert jwk["kty"] == "EC"
        assert jwk["crv"] == "P-256"
        assert jwk["alg"] == "ES256"
        assert "d" not in jwk
    token = server.register(new_email())["access_token"]
    assert header_of(token)["kid"] in {k["kid"] for k in keys}


def test_rotation_keeps_old_tokens_valid_until_they_expire(server: LiveServer) -> None:
    admin = server.make_admin()
    user = server.register(new_email())
    old_token = user["access_token"]
    before = keys_by_state(server, admin)
    old_kid = before["current"]["kid"]
    assert header_of(old_token)["kid"] == old_kid
    assert jwks_kids(server) == {old_kid, before["next"]["kid"]}

    server.clock.advance(60)
    r = server.http.post("/admin/keys/rotate", headers=bearer(admin))
    assert r.status_code == 200, r.text
    after = keys_by_state(server, admin)
    new_kid = after["current"]["kid"]
    # The key that now signs was published before it signed.
    assert new_kid == before["next"]["kid"]
    assert after["retiring"]["kid"] == old_kid
    assert jwks_kids(server) == {old_kid, new_kid, after["next"]["kid"]}

    # The old token still verifies; new tokens carry the new kid.
    assert server.http.get("/auth/me", headers=bearer(old_token)).status_code == 200
    fresh = server.login(user["user"]["email"])["access_token"]
    assert header_of(fresh)["kid"] == new_kid
    assert server.http.get("/auth/me", headers=bearer(fresh)).status_code == 200

    # Just before the old token's exp it still works...
    server.clock.advance(server.settings.access_ttl - 61)
    assert server.http.get("/auth/me", headers=bearer(old_token)).status_code == 200
    # ...then it expires, and the retiring key's time is over.
    server.clock.advance(2)
    assert_problem(server.http.get("/auth/me", headers=bearer(old_token)), 401, "invalid_token")
    with pytest.raises(TokenExpired) as exc:
        server.call(server.services.sessions.authenticate(old_token))
    assert exc.value.code == "token_expired"

    # The key stays published until a token it signed at the rotation (t = 60) expires.
    assert server.call(server.services.keyring.maintain()) is False
    assert old_kid in jwks_kids(server)
    server.clock.advance(59)  # t = 660 = rotation + access TTL
    assert server.call(server.services.keyring.maintain()) is True
    assert old_kid not in jwks_kids(server)
    assert jwks_kids(server) == {new_kid, after["next"]["kid"]}
    states = {
        k["kid"]: k["state"]
        for k in server.http.get(
            "/admin/keys", headers=bearer(server.login("admin@example.com")["access_token"])
        ).json()
    }
    assert states[old_kid] == "retired"

    # A token signed with the retired key is now refused because its key is unknown.
    r = server.http.get("/auth/me", headers=bearer(old_token))
    assert_problem(r, 401, "invalid_token")
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    with pytest.raises(UnknownKey) as unknown:
        server.call(server.services.sessions.authenticate(old_token))
    assert unknown.value.code == "unknown_key"
    with server.db() as db:
        (private,) = db.execute(
            "SELECT encrypted_private FROM keys WHERE kid = ?", (old_kid,)
        ).fetchone()
    assert private is None  # a retired key's private part is dropped


def test_second_rotation_then_maintenance(server: LiveServer) -> None:
    admin = server.make_admin()
    old_token = server.register(new_email())["access_token"]
    first_kid = header_of(old_token)["kid"]
    assert server.http.post("/admin/keys/rotate", headers=bearer(admin)).status_code == 200
    server.clock.advance(server.settings.access_ttl + 1)
    admin = server.login("admin@example.com")["access_token"]
    assert server.http.post("/admin/keys/rotate", headers=bearer(admin)).status_code == 200
    server.call(server.services.keyring.maintain())
    kids = jwks_kids(server)
    assert first_kid not in kids
    assert len(kids) == 3  # the second key retiring, the third current, a fresh next
    assert_problem(server.http.get("/auth/me", headers=bearer(old_token)), 401, "invalid_token")
    assert server.http.get("/auth/me", headers=bearer(admin)).status_code == 200


def test_automatic_rotation_after_the_rotation_period(make_server: ServerFactory) -> None:
    live = make_server({"AUTHGATE_KEY_ROTATION": "1h", "AUTHGATE_ACCESS_TTL": "10m"})
    first = live.register(new_email())
    first_kid = header_of(first["access_token"])["kid"]
    initial = jwks_kids(live)
    (next_kid,) = initial - {first_kid}

    live.clock.advance(1800)
    assert live.call(live.services.keyring.maintain()) is False  # not due yet
    assert jwks_kids(live) == initial

    live.clock.advance(1800)  # one hour after activation
    assert live.call(live.services.keyring.maintain()) is True
    token = live.login(first["user"]["email"])["access_token"]
    assert header_of(token)["kid"] == next_kid
    assert first_kid in jwks_kids(live)  # retiring, still published

    live.clock.advance(601)
    live.call(live.services.keyring.maintain())
    assert first_kid not in jwks_kids(live)
    assert live.http.get("/auth/me", headers=bearer(token)).status_code == 401  # expired too


def test_token_signed_by_a_foreign_key_with_a_known_kid_is_refused(server: LiveServer) -> None:
    token = server.register(new_email())["access_token"]
    kid = header_of(token)["kid"]
    forged = encode(claims_of(token), Key.generate("ES256", kid=kid), typ="at+jwt")
    r = server.http.get("/auth/me", headers=bearer(forged))
    assert_problem(r, 401, "invalid_token")
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
