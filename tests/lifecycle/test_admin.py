"""The admin side of the lifecycle over HTTP: /admin/users shows email_verified, PATCH marks
an address verified, and an admin can resend the verification mail or send a reset link,
never seeing the link; all of it audited, and none of it open to a non-admin."""

from __future__ import annotations

import json

from _support.http import assert_problem, bearer

from .conftest import Server, Smtp

ADDRESS = "lovelace@example.com"


def user_id(server: Server, address: str) -> str:
    return server.call(server.services.accounts.by_email(address)).id


def listed(server: Server, admin: str) -> dict[str, bool]:
    r = server.http.get("/admin/users", headers=bearer(admin))
    assert r.status_code == 200, r.text
    return {u["email"]: u["email_verified"] for u in r.json()["users"]}


def test_admin_lists_and_marks_an_address_verified(server: Server, smtp: Smtp) -> None:
    admin = server.make_admin()
    tokens = server.register(ADDRESS)
    uid = tokens["user"]["id"]
    assert listed(server, admin)[ADDRESS] is False

    r = server.http.patch(
        f"/admin/users/{uid}", json={"email_verified": True}, headers=bearer(admin)
    )
    assert r.status_code == 200, r.text
    assert r.json()["email_verified"] is True
    assert listed(server, admin)[ADDRESS] is True
    assert server.http.get(f"/admin/users/{uid}", headers=bearer(admin)).json()["email_verified"]
    assert server.me(tokens["access_token"]).json()["email_verified"] is True
    [row] = server.audit("email_verified")
    assert (row["user_id"], row["detail"]) == (uid, {"by": "admin"})

    # Un-verifying is not a thing: refused, and nothing changes.
    r = server.http.patch(
        f"/admin/users/{uid}", json={"email_verified": False}, headers=bearer(admin)
    )
    body = assert_problem(r, 422, "validation_error")
    assert body["fields"] == ["email_verified"]
    assert listed(server, admin)[ADDRESS] is True


def test_admin_resends_the_verification_mail_unless_verified(server: Server, smtp: Smtp) -> None:
    admin = server.make_admin()
    uid = server.register(ADDRESS)["user"]["id"]
    first = smtp.mailbox.token(ADDRESS, "verify_email", count=1)

    r = server.http.post(f"/admin/users/{uid}/verification-email", headers=bearer(admin))
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "accepted"
    second = smtp.mailbox.token(ADDRESS, "verify_email", count=2)
    assert second not in r.text
    assert_problem(
        server.http.post("/auth/verify-email", json={"token": first}), 400, "link_token_superseded"
    )
    assert server.http.post("/auth/verify-email", json={"token": second}).status_code == 204
    assert listed(server, admin)[ADDRESS] is True

    # Verified: a resend answers 202 and mails nothing.
    r = server.http.post(f"/admin/users/{uid}/verification-email", headers=bearer(admin))
    assert r.status_code == 202, r.text
    server.flush_mail(smtp.mailbox)
    assert len(smtp.mailbox.to(ADDRESS, "verify_email")) == 2


def test_admin_sends_a_reset_link_it_never_sees(server: Server, smtp: Smtp) -> None:
    admin = server.make_admin()
    tokens = server.register(ADDRESS)
    uid = tokens["user"]["id"]

    r = server.http.post(f"/admin/users/{uid}/reset-link", headers=bearer(admin))
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "accepted"
    link = smtp.mailbox.token(ADDRESS, "reset_password")
    assert link not in r.text
    [row] = server.audit("password_reset_sent")
    assert (row["user_id"], row["detail"]["by"]) == (uid, "admin")
    assert link not in json.dumps(server.http.get("/admin/audit", headers=bearer(admin)).json())

    new_password = "reset by the user 2024"
    r = server.http.post("/auth/password/reset", json={"token": link, "new_password": new_password})
    assert r.status_code == 204, r.text
    assert_problem(server.me(tokens["access_token"]), 401, "invalid_token")
    assert server.login(ADDRESS, new_password)


def test_the_lifecycle_admin_routes_need_an_admin(server: Server, smtp: Smtp) -> None:
    server.make_admin()
    tokens = server.register(ADDRESS)
    uid = tokens["user"]["id"]
    user = bearer(tokens["access_token"])
    routes = [
        ("PATCH", f"/admin/users/{uid}", {"email_verified": True}),
        ("POST", f"/admin/users/{uid}/verification-email", None),
        ("POST", f"/admin/users/{uid}/reset-link", None),
    ]
    for method, path, body in routes:
        assert_problem(
            server.http.request(method, path, json=body, headers=user), 403, "insufficient_scope"
        )
        assert server.http.request(method, path, json=body).status_code == 401
    server.flush_mail(smtp.mailbox)
    assert len(smtp.mailbox.to(ADDRESS)) == 1  # the registration's mail only
    assert server.me(tokens["access_token"]).json()["email_verified"] is False


def test_the_lifecycle_admin_routes_404_for_an_unknown_user(server: Server, smtp: Smtp) -> None:
    admin = bearer(server.make_admin())
    for method, path, body in [
        ("PATCH", "/admin/users/usr_nobody", {"email_verified": True}),
        ("POST", "/admin/users/usr_nobody/verification-email", None),
        ("POST", "/admin/users/usr_nobody/reset-link", None),
    ]:
        assert_problem(
            server.http.request(method, path, json=body, headers=admin), 404, "not_found"
        )
