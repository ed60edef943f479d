"""The composition root opens the mail queue with the configured sender and drains it
when the services close."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.server import base_env
from authgate.settings import Settings
from authgate.wiring import open_services

from .conftest import SmtpServer

pytestmark = pytest.mark.anyio


async def test_open_services_sends_through_smtp_and_drains_on_exit(
    tmp_path: Path, smtp_plain: SmtpServer
) -> None:
    env = {
        **base_env(tmp_path),
        "AUTHGATE_EMAIL": "smtp",
        "AUTHGATE_SMTP_URL": f"smtp://127.0.0.1:{smtp_plain.port}",
        "AUTHGATE_PUBLIC_URL": "https://id.example.com",
    }
    settings = Settings.from_env(env, config_dir=tmp_path)
    async with open_services(settings) as services:
        message = services.mail_templates.render(
            "reset_password", to="ada@example.com", token="tok-1"
        )
        assert services.mail.enqueue(message)
    [mail] = smtp_plain.recorder.messages()
    assert mail["From"] == "no-reply@id.example.com"
    body = mail.get_body(("plain",))
    assert body is not None
    assert "https://id.example.com/reset-password?token=tok-1" in body.get_content()


async def test_console_sender_is_the_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings.from_env(base_env(tmp_path), config_dir=tmp_path)
    async with open_services(settings) as services:
        services.mail.enqueue(
            services.mail_templates.render("verify_email", to="ada@example.com", token="tok-2")
        )
    err = capsys.readouterr().err
    assert "To: ada@example.com" in err
    assert "http://127.0.0.1:8000/verify-email?token=tok-2" in err
