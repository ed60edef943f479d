"""SmtpSender against a real aiosmtpd server on loopback: plain, STARTTLS trusted through
AUTHGATE_SMTP_CA_FILE, implicit TLS, AUTH with a percent-encoded password."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from _support.live import free_port
from authgate.errors import MailError
from authgate.service.mail import MailTemplates, SmtpSender
from authgate.settings import Settings
from authgate.wiring import build_sender

from .conftest import SMTP_PASSWORD, SMTP_USER, Pki, SmtpServer

pytestmark = pytest.mark.anyio

TOKEN = "tok-3Kf9_xYz"  # what a lifecycle token looks like: base64url
PUBLIC_URL = "https://id.example.com"


def _settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env(
        {"AUTHGATE_EMAIL_FROM": "authgate <no-reply@example.com>", **env}, config_dir=tmp_path
    )


async def test_smtp_plain_delivers_from_to_subject_text_html_and_link(
    smtp_plain: SmtpServer, tmp_path: Path
) -> None:
    settings = _settings(
        tmp_path, AUTHGATE_EMAIL="smtp", AUTHGATE_SMTP_URL=f"smtp://127.0.0.1:{smtp_plain.port}"
    )
    sender = build_sender(settings)
    assert isinstance(sender, SmtpSender)
    message = MailTemplates(public_url=PUBLIC_URL).render(
        "verify_email", to="ada@example.com", token=TOKEN, name="Ada"
    )
    await sender.send(message)

    [mail] = smtp_plain.recorder.messages()
    assert mail["From"] == "authgate <no-reply@example.com>"
    assert mail["To"] == "ada@example.com"
    assert mail["Subject"] == "Confirm your email address"
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None
    assert html is not None
    link = f"{PUBLIC_URL}/verify-email?token={TOKEN}"
    assert link in text.get_content()
    assert f'href="{link}"' in html.get_content()
    assert smtp_plain.recorder.envelopes[0].rcpt_tos == ["ada@example.com"]


async def test_smtp_starttls_with_auth_trusts_the_ca_file_setting(
    smtp_starttls: SmtpServer, pki: Pki, tmp_path: Path
) -> None:
    userinfo = f"{quote(SMTP_USER, safe='')}:{quote(SMTP_PASSWORD, safe='')}"
    settings = _settings(
        tmp_path,
        AUTHGATE_EMAIL="smtp",
        AUTHGATE_SMTP_URL=f"smtp+starttls://{userinfo}@127.0.0.1:{smtp_starttls.port}",
        AUTHGATE_SMTP_CA_FILE=str(pki.ca_file),
    )
    sender = build_sender(settings)
    assert isinstance(sender, SmtpSender)
    assert sender.target.password == SMTP_PASSWORD  # percent-decoded
    await sender.send(
        MailTemplates(public_url=PUBLIC_URL).render(
            "reset_password", to="bob@example.com", token=TOKEN
        )
    )
    [mail] = smtp_starttls.recorder.messages()
    assert mail["To"] == "bob@example.com"
    body = mail.get_body(("plain",))
    assert body is not None
    assert f"{PUBLIC_URL}/reset-password?token={TOKEN}" in body.get_content()


async def test_smtp_tls_refuses_a_server_certificate_from_an_untrusted_ca(
    smtp_starttls: SmtpServer,
) -> None:
    # Without the CA file, the test CA is not trusted: no mail, and no fallback to plain.
    userinfo = f"{quote(SMTP_USER, safe='')}:{quote(SMTP_PASSWORD, safe='')}"
    sender = SmtpSender(
        url=f"smtp+starttls://{userinfo}@127.0.0.1:{smtp_starttls.port}",
        sender="no-reply@example.com",
        timeout=10,
    )
    with pytest.raises(MailError) as caught:
        await sender.send(
            MailTemplates(public_url=PUBLIC_URL).render(
                "verify_email", to="ada@example.com", token=TOKEN
            )
        )
    assert caught.value.code == "mail_failed"
    assert smtp_starttls.recorder.envelopes == []


async def test_smtp_wrong_password_is_refused_and_never_shown(
    smtp_starttls: SmtpServer, pki: Pki
) -> None:
    wrong = "wrong-Password-7391"
    sender = SmtpSender(
        url=f"smtp+starttls://{quote(SMTP_USER, safe='')}:{wrong}@127.0.0.1:{smtp_starttls.port}",
        sender="no-reply@example.com",
        ca_file=pki.ca_file,
        timeout=10,
    )
    with pytest.raises(MailError) as caught:
        await sender.send(
            MailTemplates(public_url=PUBLIC_URL).render(
                "verify_email", to="ada@example.com", token=TOKEN
            )
        )
    error = caught.value
    assert error.context["smtp_code"] == 535
    shown = f"{error} {error!r} {error.context} {sender.target!r}"
    assert wrong not in shown
    assert smtp_starttls.recorder.envelopes == []


async def test_smtps_implicit_tls_delivers(smtps: SmtpServer, pki: Pki) -> None:
    sender = SmtpSender(
        url=f"smtps://127.0.0.1:{smtps.port}",
        sender="no-reply@example.com",
        ca_file=pki.ca_file,
        timeout=10,
    )
    await sender.send(
        MailTemplates(public_url=PUBLIC_URL).render(
            "email_change_confirm", to="new@example.com", token=TOKEN
        )
    )
    [mail] = smtps.recorder.messages()
    assert mail["Subject"] == "Confirm your new email address"


async def test_smtp_header_injection_is_refused(smtp_plain: SmtpServer) -> None:
    sender = SmtpSender(url=f"smtp://127.0.0.1:{smtp_plain.port}", sender="a@example.com")
    message = MailTemplates(public_url=PUBLIC_URL).render(
        "verify_email", to="ada@example.com\r\nBcc: eve@example.com", token=TOKEN
    )
    with pytest.raises(MailError):
        await sender.send(message)
    assert smtp_plain.recorder.envelopes == []


async def test_smtp_down_raises_mail_error() -> None:
    sender = SmtpSender(url=f"smtp://127.0.0.1:{free_port()}", sender="a@example.com")
    with pytest.raises(MailError):
        await sender.send(
            MailTemplates(public_url=PUBLIC_URL).render(
                "verify_email", to="ada@example.com", token=TOKEN
            )
        )
