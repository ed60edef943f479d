"""AUTHGATE_EMAIL_TEMPLATES over a real server and real SMTP: a template in the folder
replaces the packaged one of its name (the others stay), and a broken one never leaves a
request half done."""

from __future__ import annotations

import contextlib
from pathlib import Path

from _support.http import PASSWORD

from .conftest import PUBLIC_URL, Smtp, eventually, link_token, running, text_of

ADDRESS = "templated@example.com"


def test_an_override_replaces_its_template_and_the_link_still_works(
    tmp_path: Path, smtp: Smtp
) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "verify_email.subject.txt").write_text("Welcome to Example, {{ to }}\n")
    (folder / "verify_email.txt").write_text(
        "Hi {{ name or 'there' }}! Confirm here: {{ link('/verify-email', token) }}\n"
    )
    with running(tmp_path, **smtp.env(), AUTHGATE_EMAIL_TEMPLATES=str(folder)) as server:
        tokens = server.register(ADDRESS)
        [mail] = eventually(lambda: smtp.mailbox.to(ADDRESS))
        assert mail["Subject"] == f"Welcome to Example, {ADDRESS}"
        assert text_of(mail).startswith("Hi there! Confirm here: " + PUBLIC_URL)
        html = mail.get_body(("html",))
        assert html is not None
        assert "Please confirm that" in html.get_content()  # the packaged HTML part
        token = link_token(mail, "verify_email")
        assert server.http.post("/auth/verify-email", json={"token": token}).status_code == 204
        assert server.me(tokens["access_token"]).json()["email_verified"] is True


def test_a_broken_template_never_fails_a_registration_after_creating_the_account(
    tmp_path: Path, smtp: Smtp
) -> None:
    """A template that cannot render (an undefined name) may stop the server at start;
    if it starts, a registration either answers 201 (the account exists, the mail failure
    is audited) or creates nothing. Never an error for an account that was created, which
    the client's retry then finds taken (409)."""
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "verify_email.txt").write_text(
        "Hi {{ nickname }}: {{ link('/verify-email', token) }}\n"
    )
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(
                running(tmp_path, **smtp.env(), AUTHGATE_EMAIL_TEMPLATES=str(folder))
            )
        except RuntimeError:
            return  # refusing to start on a broken template is a right answer too
        r = server.http.post("/auth/register", json={"email": ADDRESS, "password": PASSWORD})
        login = server.http.post("/auth/login", json={"email": ADDRESS, "password": PASSWORD})
        created = login.status_code == 200
        assert (r.status_code == 201) == created, (r.status_code, r.text, login.status_code)
        if created:
            assert eventually(lambda: server.audit("mail_failed"))
