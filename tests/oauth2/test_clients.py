"""Service clients through /admin/clients: scopes are a subset of the defined permissions,
the secret is shown once and stored as a keyed digest, and a revoked client can neither
get tokens nor keep the ones it has."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from _support.http import assert_problem, basic, bearer, new_email
from authgate.jose import Key

from .conftest import PERMISSIONS, make_client
from .harness import LiveServer, assert_oauth_error

CC = {"grant_type": "client_credentials"}


def _grant(live: LiveServer, client: dict[str, Any]) -> Any:
    return live.http.post(
        "/oauth2/token", data=CC, headers=basic(client["client_id"], client["client_secret"])
    )


def test_created_client_shape(live: LiveServer) -> None:
    created = make_client(live, ["posts:read"], name="reporting", access_ttl=120)
    assert created["client_id"].startswith("cli_")
    assert created["name"] == "reporting"
    assert created["scopes"] == ["posts:read"]
    assert created["auth_method"] == "client_secret_basic"
    assert created["access_ttl"] == 120
    assert created["revoked_at"] is None
    assert isinstance(created["client_secret"], str)
    assert len(created["client_secret"]) >= 43
    r = _grant(live, created)
    assert r.status_code == 200, r.text
    assert r.json()["expires_in"] == 120


def test_create_answer_is_no_store(live: LiveServer) -> None:
    r = live.http.post(
        "/admin/clients",
        json={"name": "x", "scopes": ["posts:read"]},
        headers=bearer(live.admin_token),
    )
    assert r.status_code == 201, r.text
    assert "no-store" in r.headers["cache-control"]


def test_scope_must_be_a_defined_permission(live: LiveServer) -> None:
    for scopes in (["posts:delete"], ["posts:read", "nobody:defines-this"]):
        r = live.http.post(
            "/admin/clients",
            json={"name": "bad", "scopes": scopes},
            headers=bearer(live.admin_token),
        )
        assert_problem(r, 400, "invalid_scope")
    # Every defined permission, and the built-in revocation-feed scope, is allowed.
    created = make_client(live, [*PERMISSIONS, "authgate:revocations"])
    assert sorted(created["scopes"]) == sorted([*PERMISSIONS, "authgate:revocations"])


def test_admin_only(live: LiveServer) -> None:
    user = live.register(new_email())
    r = live.http.post(
        "/admin/clients", json={"name": "x", "scopes": []}, headers=bearer(user["access_token"])
    )
    assert_problem(r, 403, "insufficient_scope")
    assert live.http.get("/admin/clients").status_code == 401


def test_private_jwk_is_refused(live: LiveServer, rsa_key: Key) -> None:
    r = live.http.post(
        "/admin/clients",
        json={"name": "leaky", "scopes": ["posts:read"], "jwk": rsa_key.to_jwk(private=True)},
        headers=bearer(live.admin_token),
    )
    assert_problem(r, 400, "invalid_request")


def test_secret_is_shown_once_and_stored_as_a_keyed_digest(live: LiveServer) -> None:
    created = make_client(live, ["posts:read"])
    secret = created["client_secret"]
    listed = live.http.get("/admin/clients", headers=bearer(live.admin_token))
    assert listed.status_code == 200
    assert secret not in listed.text
    (mine,) = [c for c in listed.json() if c["client_id"] == created["client_id"]]
    assert "client_secret" not in mine
    assert "secret_hash" not in mine
    with live.db() as db:
        (row,) = db.execute(
            "SELECT secret_hash FROM clients WHERE client_id = ?", (created["client_id"],)
        ).fetchall()
        dump = "\n".join(db.iterdump())
    # HMAC-SHA256 under a key derived from the master key: never the bare SHA-256.
    assert row[0].startswith("hmac-sha256$"), row
    assert len(row[0]) == len("hmac-sha256$") + 43
    unkeyed = base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()).rstrip(b"=")
    assert unkeyed.decode() not in dump
    assert secret not in dump  # nowhere in the database, in any form


def test_revoked_client(live: LiveServer) -> None:
    """DELETE /admin/clients/{id}: no more tokens, and its live tokens become inactive."""
    victim = make_client(live, ["posts:read"])
    witness = make_client(live, ["authgate:introspect"])
    r = _grant(live, victim)
    assert r.status_code == 200, r.text
    access = r.json()["access_token"]
    introspect = {"token": access}
    wh = basic(witness["client_id"], witness["client_secret"])
    assert live.http.post("/oauth2/introspect", data=introspect, headers=wh).json()["active"]

    d = live.http.delete(f"/admin/clients/{victim['client_id']}", headers=bearer(live.admin_token))
    assert d.status_code == 204, d.text
    assert_oauth_error(_grant(live, victim), 401, "invalid_client", basic_challenge=True)
    after = live.http.post("/oauth2/introspect", data=introspect, headers=wh)
    assert after.status_code == 200
    assert after.json() == {"active": False}
    listed = live.http.get("/admin/clients", headers=bearer(live.admin_token)).json()
    (gone,) = [c for c in listed if c["client_id"] == victim["client_id"]]
    assert gone["revoked_at"] is not None
    # A second delete: nothing to revoke.
    again = live.http.delete(
        f"/admin/clients/{victim['client_id']}", headers=bearer(live.admin_token)
    )
    assert_problem(again, 404, "not_found")


def test_revoked_private_key_jwt_client(live: LiveServer, rsa_key: Key) -> None:
    from .test_errors import assertion, with_assertion

    client = make_client(live, ["posts:read"], jwk=rsa_key.public().to_jwk())
    value = assertion(rsa_key, client["client_id"], live.token_endpoint)
    assert live.http.post("/oauth2/token", data=with_assertion(value, **CC)).status_code == 200
    d = live.http.delete(f"/admin/clients/{client['client_id']}", headers=bearer(live.admin_token))
    assert d.status_code == 204
    value = assertion(rsa_key, client["client_id"], live.token_endpoint)
    r = live.http.post("/oauth2/token", data=with_assertion(value, **CC))
    assert_oauth_error(r, 401, "invalid_client")
