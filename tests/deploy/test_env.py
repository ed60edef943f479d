"""docs/deploy/authgate.env is a valid production configuration, every name in it is a real
setting, and it holds no secret; docs/deploy.md documents the files and settings it uses."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from _support.services import TEST_VARIABLES
from authgate.errors import ConfigurationError
from authgate.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ENV_FILE = ROOT / "docs" / "deploy" / "authgate.env"
GUIDE = ROOT / "docs" / "deploy.md"
VALUES = {"public_host": "auth.example.com", "db_host": "10.0.0.5", "redis_host": "10.0.0.6"}


def read_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in ENV_FILE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep == "=", f"not NAME=VALUE: {line!r}"
        assert name not in env, f"{name} twice"
        for placeholder, filled in VALUES.items():
            value = value.replace("{" + placeholder + "}", filled)
        assert "{" not in value, f"unknown placeholder in {line!r}"
        env[name] = value
    return env


def known_names() -> set[str]:
    names = {f.name for f in fields(Settings)} - {"config_dir", "master_key_file_explicit"}
    return {f"AUTHGATE_{n.upper()}" for n in names} | {f"AUTHGATE_{n.upper()}_FILE" for n in names}


def test_every_name_is_a_setting_and_no_secret_is_inline() -> None:
    env = read_env()
    unknown = set(env) - known_names()
    assert unknown == set(), unknown  # from_env would ignore a misspelt name silently
    for secret in ("AUTHGATE_MASTER_KEY", "AUTHGATE_HS256_SECRET"):
        assert secret not in env, f"{secret} belongs in a _FILE, not in the env file"
    assert "AUTHGATE_MASTER_KEY_FILE" in env


def test_it_is_a_valid_production_configuration(tmp_path: Path) -> None:
    env = read_env()
    settings = Settings.from_env(env, config_dir=tmp_path)
    assert settings.is_production
    assert settings.issuer == "https://auth.example.com"
    assert settings.database_url.startswith("postgresql://")
    assert settings.redis_url == "redis://10.0.0.6:6379/0"
    assert settings.master_key_file == Path(env["AUTHGATE_MASTER_KEY_FILE"])
    assert settings.trusted_proxies
    assert settings.db_pool_size == int(env["AUTHGATE_DB_POOL_SIZE"])


def test_production_refuses_it_with_a_plain_http_issuer(tmp_path: Path) -> None:
    env = read_env() | {"AUTHGATE_ISSUER": "http://auth.example.com"}
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(env, config_dir=tmp_path)
    assert info.value.code == "invalid_configuration"
    assert "http" in info.value.reason


def test_the_guide_covers_the_tested_files_and_settings() -> None:
    guide = GUIDE.read_text()
    for needle in (
        "docs/deploy/nginx.conf",
        "docs/deploy/authgate.env",
        "tests/deploy/test_nginx.py",
        "AUTHGATE_TRUSTED_PROXIES",
        "AUTHGATE_DB_POOL_SIZE",
        "search_path",
        "AUTHGATE_REDIS_URL",
        "AUTHGATE_MASTER_KEY_FILE",
        "authgate_redis_fallbacks_total",
        "bench/server.py",
        "bench/oauth2.py",
        "bench/refresh_scale.py",
    ):
        assert needle in guide, f"docs/deploy.md does not mention {needle}"
    # Every AUTHGATE_ name the guide uses is a real setting (or a test-only variable).
    used = set(re.findall(r"AUTHGATE_[A-Z0-9_]+", guide))
    assert used - known_names() - TEST_VARIABLES == set()


def test_the_database_url_can_come_from_a_file(tmp_path: Path) -> None:
    """The guide keeps a database password out of the env file with
    AUTHGATE_DATABASE_URL_FILE ("every secret setting also has a _FILE form")."""
    secret = tmp_path / "database_url"
    secret.write_text("postgresql://authgate:s3cret@10.0.0.5:5432/authgate\n")
    env = read_env()
    del env["AUTHGATE_DATABASE_URL"]
    env["AUTHGATE_DATABASE_URL_FILE"] = str(secret)
    settings = Settings.from_env(env, config_dir=tmp_path)
    assert settings.database_url == "postgresql://authgate:s3cret@10.0.0.5:5432/authgate"
