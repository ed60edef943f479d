"""The mail settings: defaults, the _FILE forms, what each sender needs, and what
production refuses (plain SMTP to another host, a weak webhook secret)."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest

from authgate.errors import ConfigurationError
from authgate.settings import Settings

WHSEC = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _load(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env(env, config_dir=tmp_path)


def _production(tmp_path: Path, **env: str) -> Settings:
    return _load(
        tmp_path,
        AUTHGATE_ENV="production",
        AUTHGATE_ISSUER="https://id.example.com",
        AUTHGATE_MASTER_KEY_FILE=str(tmp_path / "master.key"),
        **env,
    )


def test_defaults_console_and_the_issuer_as_public_url(tmp_path: Path) -> None:
    settings = _load(tmp_path, AUTHGATE_ISSUER="https://id.example.com")
    assert settings.email == "console"
    assert settings.public_base_url == "https://id.example.com"
    assert settings.mail_sender == "no-reply@id.example.com"
    other = _load(tmp_path, AUTHGATE_PUBLIC_URL="https://login.example.com")
    assert other.public_base_url == "https://login.example.com"
    assert "login.example.com" in other.host_names


def test_smtp_url_file_form_and_masked_in_describe(tmp_path: Path) -> None:
    (tmp_path / "smtp-url").write_text("smtps://user:s3cret-pass@mail.example.com:465\n")
    settings = _load(tmp_path, AUTHGATE_EMAIL="smtp", AUTHGATE_SMTP_URL_FILE="smtp-url")
    assert settings.smtp_url is not None
    assert settings.smtp_url.reveal() == "smtps://user:s3cret-pass@mail.example.com:465"
    assert "s3cret-pass" not in repr(settings)
    assert "s3cret-pass" not in str(settings.describe())


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AUTHGATE_EMAIL": "smtp"}, "needs AUTHGATE_SMTP_URL"),
        ({"AUTHGATE_EMAIL": "webhook"}, "needs AUTHGATE_EMAIL_WEBHOOK_URL"),
        (
            {"AUTHGATE_EMAIL": "webhook", "AUTHGATE_EMAIL_WEBHOOK_URL": "https://h.example/m"},
            "AUTHGATE_EMAIL_WEBHOOK_SECRET",
        ),
        ({"AUTHGATE_EMAIL": "pigeon"}, "AUTHGATE_EMAIL must be"),
        ({"AUTHGATE_SMTP_URL": "http://mail.example.com"}, "must start with smtp://"),
        ({"AUTHGATE_SMTP_URL": "smtp://"}, "has no host"),
        ({"AUTHGATE_PUBLIC_URL": "https://id.example.com/"}, "AUTHGATE_PUBLIC_URL"),
        ({"AUTHGATE_EMAIL_TEMPLATES": "missing-folder"}, "does not exist"),
        ({"AUTHGATE_SMTP_CA_FILE": "missing-ca.pem"}, "does not exist"),
        ({"AUTHGATE_EMAIL_FROM": "a@b\r\nBcc: eve@example.com"}, "AUTHGATE_EMAIL_FROM"),
        ({"AUTHGATE_EMAIL_WEBHOOK_SECRET": "whsec_***"}, "not followed by base64"),
    ],
)
def test_incomplete_or_malformed_mail_settings_are_refused(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        _load(tmp_path, **env)


def test_production_refuses_plain_smtp_to_another_host(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="plain smtp://"):
        _production(
            tmp_path, AUTHGATE_EMAIL="smtp", AUTHGATE_SMTP_URL="smtp://u:p@mail.example.com:25"
        )
    for url in (
        "smtp+starttls://u:p@mail.example.com:587",
        "smtps://u:p@mail.example.com",
        "smtp://127.0.0.1:25",  # a local relay
    ):
        assert _production(tmp_path, AUTHGATE_EMAIL="smtp", AUTHGATE_SMTP_URL=url).smtp_url
    # Development accepts plain SMTP anywhere (a test relay).
    assert _load(tmp_path, AUTHGATE_SMTP_URL="smtp://mail.example.com").smtp_url


@pytest.mark.parametrize(
    "secret",
    [
        "password",
        "short-secret",
        "whsec_" + base64.b64encode(b"sixteen byte key").decode(),
        "whsec_" + base64.b64encode(b"\x00" * 32).decode(),
    ],
)
def test_production_refuses_a_weak_webhook_secret(tmp_path: Path, secret: str) -> None:
    env = {
        "AUTHGATE_EMAIL": "webhook",
        "AUTHGATE_EMAIL_WEBHOOK_URL": "https://hooks.example.com/mail",
        "AUTHGATE_EMAIL_WEBHOOK_SECRET": secret,
    }
    with pytest.raises(ConfigurationError, match="AUTHGATE_EMAIL_WEBHOOK_SECRET is weak"):
        _production(tmp_path, **env)
    assert _load(tmp_path, **env).email == "webhook"  # development allows it


def test_production_accepts_a_strong_webhook_secret_from_its_file(tmp_path: Path) -> None:
    (tmp_path / "whsec").write_text(WHSEC + "\n")
    settings = _production(
        tmp_path,
        AUTHGATE_EMAIL="webhook",
        AUTHGATE_EMAIL_WEBHOOK_URL="https://hooks.example.com/mail",
        AUTHGATE_EMAIL_WEBHOOK_SECRET_FILE="whsec",
    )
    assert settings.email_webhook_secret is not None
    assert settings.email_webhook_secret.reveal() == WHSEC
