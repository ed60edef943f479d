"""The console sender: the whole mail in development, the headers only in production."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from authgate.service.mail import ConsoleSender, Message
from authgate.settings import Settings
from authgate.wiring import build_sender, new_master_key

LINK = "https://id.example.com/reset-password?token=SECRET-TOKEN"
MAIL = Message(to="ada@example.com", subject="Reset", text=f"open {LINK}", html="", kind="x")


@pytest.mark.anyio
async def test_console_prints_the_whole_mail_in_development() -> None:
    out = io.StringIO()
    await ConsoleSender(sender="no-reply@example.com", stream=out).send(MAIL)
    assert "To: ada@example.com" in out.getvalue()
    assert LINK in out.getvalue()


@pytest.mark.anyio
async def test_console_redacted_prints_no_body_and_so_no_link() -> None:
    out = io.StringIO()
    await ConsoleSender(sender="no-reply@example.com", stream=out, redact=True).send(MAIL)
    assert "To: ada@example.com" in out.getvalue()
    assert "Subject: Reset" in out.getvalue()
    assert "SECRET-TOKEN" not in out.getvalue()
    assert "body withheld" in out.getvalue()


def test_production_builds_a_redacting_console_sender(tmp_path: Path) -> None:
    env = {
        "AUTHGATE_ENV": "production",
        "AUTHGATE_ISSUER": "https://id.example.com",
        "AUTHGATE_MASTER_KEY": new_master_key(),
    }
    sender = build_sender(Settings.from_env(env, config_dir=tmp_path))
    assert isinstance(sender, ConsoleSender)
    assert sender._redact is True
    development = build_sender(
        Settings.from_env({"AUTHGATE_MASTER_KEY": new_master_key()}, config_dir=tmp_path)
    )
    assert isinstance(development, ConsoleSender)
    assert development._redact is False
