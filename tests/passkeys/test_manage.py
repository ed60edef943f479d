"""The user's passkeys: list, rename, delete (with the password), every change audited;
/auth/me counts them; an admin's MFA reset removes them."""

from __future__ import annotations

from _support.http import PASSWORD, assert_problem
from lifecycle.conftest import Server

from ._authenticator import SoftAuthenticator
from .conftest import RP_ID, Account


def test_list_rename_and_delete(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    first = account.add_passkey(authenticator, name="Laptop")["passkey"]
    server.clock.advance(1)  # oldest first: passkeys added at one instant have no order
    account.login_with(authenticator)
    second = account.add_passkey(
        SoftAuthenticator(origin=authenticator.origin, rp_id=RP_ID), name="Phone"
    )["passkey"]
    listed = server.http.get("/auth/passkeys", headers=account.auth)
    assert listed.status_code == 200
    assert listed.headers["content-type"].startswith("application/json")
    assert [(p["id"], p["name"]) for p in listed.json()] == [
        (first["id"], "Laptop"),
        (second["id"], "Phone"),
    ]
    assert set(listed.json()[0]) == {
        "id",
        "name",
        "created_at",
        "last_used_at",
        "transports",
        "aaguid",
        "backed_up",
    }
    # Public key and counter stay on the server.
    assert "public_key" not in listed.text

    renamed = server.http.patch(
        f"/auth/passkeys/{first['id']}", headers=account.auth, json={"name": "  Work laptop "}
    )
    assert renamed.status_code == 204, renamed.text
    names = [p["name"] for p in server.http.get("/auth/passkeys", headers=account.auth).json()]
    assert names == ["Work laptop", "Phone"]
    # The schema refuses an empty or long name (422); the service a blank or unprintable one.
    for bad, status, code in (
        ("", 422, "validation_error"),
        ("x" * 65, 422, "validation_error"),
        ("   ", 400, "invalid_request"),
        ("tab\there", 400, "invalid_request"),
    ):
        assert_problem(
            server.http.patch(
                f"/auth/passkeys/{first['id']}", headers=account.auth, json={"name": bad}
            ),
            status,
            code,
        )

    wrong = server.http.request(
        "DELETE", f"/auth/passkeys/{first['id']}", headers=account.auth, json={"password": "no"}
    )
    assert_problem(wrong, 401, "invalid_credentials")
    deleted = server.http.request(
        "DELETE", f"/auth/passkeys/{first['id']}", headers=account.auth, json={"password": PASSWORD}
    )
    assert deleted.status_code == 204, deleted.text
    again = server.http.request(
        "DELETE", f"/auth/passkeys/{first['id']}", headers=account.auth, json={"password": PASSWORD}
    )
    assert_problem(again, 404, "not_found")
    me = server.http.get("/auth/me", headers=account.auth).json()
    assert me["mfa"] == {"totp": False, "passkeys": 1, "recovery_codes_left": 10}

    events = {e for e in ("passkey_renamed", "passkey_deleted") if server.audit(e)}
    assert events == {"passkey_renamed", "passkey_deleted"}
    assert server.audit("password_check_failed")


def test_deleting_the_last_second_factor_ends_mfa_and_the_codes(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    pid = account.add_passkey(authenticator)["passkey"]["id"]
    account.first_step()  # a second factor is asked
    # A password-only session (opened before the passkey) cannot remove it.
    refused = server.http.request(
        "DELETE", f"/auth/passkeys/{pid}", headers=account.auth, json={"password": PASSWORD}
    )
    assert_problem(refused, 401, "insufficient_user_authentication")
    account.login_with(authenticator)
    deleted = server.http.request(
        "DELETE", f"/auth/passkeys/{pid}", headers=account.auth, json={"password": PASSWORD}
    )
    assert deleted.status_code == 204
    me = server.http.get("/auth/me", headers=account.auth).json()
    assert me["mfa"] == {"totp": False, "passkeys": 0, "recovery_codes_left": 0}
    login = server.http.post("/auth/login", json={"email": account.email, "password": PASSWORD})
    assert "access_token" in login.json()


def test_another_users_passkey_cannot_be_renamed_or_deleted(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    pid = account.add_passkey(authenticator)["passkey"]["id"]
    other = Account(server)
    assert_problem(
        server.http.patch(f"/auth/passkeys/{pid}", headers=other.auth, json={"name": "mine"}),
        404,
        "not_found",
    )
    assert_problem(
        server.http.request(
            "DELETE", f"/auth/passkeys/{pid}", headers=other.auth, json={"password": PASSWORD}
        ),
        404,
        "not_found",
    )
    assert server.http.get("/auth/passkeys", headers=other.auth).json() == []
    assert len(server.http.get("/auth/passkeys", headers=account.auth).json()) == 1


def test_management_needs_a_bearer(server: Server) -> None:
    assert_problem(server.http.get("/auth/passkeys"), 401, "authentication_required")
    assert_problem(
        server.http.patch("/auth/passkeys/pk_x", json={"name": "n"}), 401, "authentication_required"
    )


def test_an_admin_mfa_reset_removes_the_passkeys(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    account.add_passkey(authenticator)
    user_id = server.http.get("/auth/me", headers=account.auth).json()["id"]
    server.call(server.services.mfa.reset(user_id, by="test"))
    assert server.http.get("/auth/passkeys", headers=account.auth).json() == []
    [event] = server.audit("mfa_reset")
    assert event["detail"]["passkeys"] == 1
