"""The mail templates: every kind renders, its link under the public URL carries the token
as the ``token`` query parameter in both parts, HTML is escaped, and a folder of the
operator's own replaces a template (AUTHGATE_EMAIL_TEMPLATES)."""

from __future__ import annotations

from pathlib import Path

import pytest

from authgate.errors import MailError
from authgate.service.mail import KINDS, MailTemplates
from authgate.settings import Settings
from authgate.wiring import build_templates

PUBLIC = "https://id.example.com"
TOKEN = "Tok_en-0123456789abcdef"
LINKS = {
    "verify_email": "/verify-email",
    "reset_password": "/reset-password",
    "email_change_confirm": "/email/confirm",
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_with_its_link(kind: str) -> None:
    message = MailTemplates(public_url=PUBLIC).render(
        kind,
        to="ada@example.com",
        token=TOKEN,
        new_email="new@example.com",
        change="Two-step sign-in was turned on",
    )
    assert message.kind == kind
    assert message.to == "ada@example.com"
    assert message.subject
    assert "\n" not in message.subject
    if kind in LINKS:
        link = f"{PUBLIC}{LINKS[kind]}?token={TOKEN}"
        assert link in message.text
        assert f'href="{link}"' in message.html
    else:
        assert TOKEN not in message.text + message.html  # no token where none is needed
        assert PUBLIC in message.text


def test_token_is_percent_encoded_in_the_link() -> None:
    message = MailTemplates(public_url=PUBLIC).render(
        "reset_password", to="ada@example.com", token="a&b=c d"
    )
    assert f"{PUBLIC}/reset-password?token=a%26b%3Dc%20d" in message.text


def test_html_escaping_of_a_user_supplied_name() -> None:
    name = '<script>alert("x")</script><a href="https://evil.example">'
    message = MailTemplates(public_url=PUBLIC).render(
        "verify_email", to="ada@example.com", token=TOKEN, name=name
    )
    assert "<script>" not in message.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in message.html
    assert "evil.example" not in message.html.replace("&#34;https://evil.example&#34;", "")
    assert name in message.text  # the text part is not HTML: shown as typed


def test_template_override_folder_replaces_only_what_it_holds(tmp_path: Path) -> None:
    folder = tmp_path / "mail-templates"
    folder.mkdir()
    (folder / "verify_email.subject.txt").write_text("Welcome to Example, {{ name }}\n")
    (folder / "verify_email.html").write_text(
        '<p>Hi {{ name }}</p><a href="{{ link("/verify-email", token) }}">go</a>\n'
    )
    settings = Settings.from_env(
        {"AUTHGATE_EMAIL_TEMPLATES": "mail-templates", "AUTHGATE_PUBLIC_URL": PUBLIC},
        config_dir=tmp_path,
    )
    assert settings.email_templates == folder
    templates = build_templates(settings)
    message = templates.render("verify_email", to="ada@example.com", token=TOKEN, name="<Ada>")
    assert message.subject == "Welcome to Example, <Ada>"
    assert (
        message.html
        == f'<p>Hi &lt;Ada&gt;</p><a href="{PUBLIC}/verify-email?token={TOKEN}">go</a>\n'
    )
    # The text part was not overridden: the packaged one.
    assert "Please confirm" in message.text
    assert (
        templates.render("reset_password", to="ada@example.com", token=TOKEN).subject
        == "Reset your password"
    )


@pytest.mark.parametrize("kind", ["no_such_kind", "../settings", "Verify"])
def test_unknown_or_unsafe_kind_is_refused(kind: str) -> None:
    with pytest.raises(MailError):
        MailTemplates(public_url=PUBLIC).render(kind, to="ada@example.com", token=TOKEN)


def test_missing_variable_is_refused_not_rendered_empty() -> None:
    with pytest.raises(MailError):
        MailTemplates(public_url=PUBLIC).render("verify_email", to="ada@example.com")
