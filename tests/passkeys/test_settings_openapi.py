"""AUTHGATE_WEBAUTHN_RP_ID and AUTHGATE_WEBAUTHN_ORIGINS: defaults from the public URL,
validation; and the passkey routes in OpenAPI with their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from authgate.errors import ConfigurationError
from authgate.settings import Settings
from lifecycle.conftest import Server


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env(
        {"AUTHGATE_ISSUER": "https://auth.example.com", **env}, config_dir=tmp_path
    )


def test_defaults_come_from_the_public_url(tmp_path: Path) -> None:
    plain = settings(tmp_path)
    assert plain.passkey_rp_id == "auth.example.com"
    assert plain.passkey_origins == ("https://auth.example.com",)
    public = settings(tmp_path, AUTHGATE_PUBLIC_URL="https://App.Example.com:8443")
    assert public.passkey_rp_id == "app.example.com"
    assert public.passkey_origins == ("https://app.example.com:8443",)


def test_explicit_values(tmp_path: Path) -> None:
    explicit = settings(
        tmp_path,
        AUTHGATE_WEBAUTHN_RP_ID="example.com",
        AUTHGATE_WEBAUTHN_ORIGINS="https://auth.example.com, https://example.com",
    )
    assert explicit.passkey_rp_id == "example.com"
    assert explicit.passkey_origins == ("https://auth.example.com", "https://example.com")
    # The RP ID alone: the public origin must be on it.
    assert settings(tmp_path, AUTHGATE_WEBAUTHN_RP_ID="example.com").passkey_origins == (
        "https://auth.example.com",
    )
    loopback = settings(
        tmp_path,
        AUTHGATE_WEBAUTHN_RP_ID="localhost",
        AUTHGATE_WEBAUTHN_ORIGINS="http://localhost:5173",
    )
    assert loopback.passkey_origins == ("http://localhost:5173",)


@pytest.mark.parametrize(
    "env",
    [
        {"AUTHGATE_WEBAUTHN_RP_ID": "https://example.com"},
        {"AUTHGATE_WEBAUTHN_RP_ID": "example.com:443"},
        {"AUTHGATE_WEBAUTHN_RP_ID": "Example.com"},
        {"AUTHGATE_WEBAUTHN_RP_ID": "10.0.0.1"},
        {"AUTHGATE_WEBAUTHN_RP_ID": "other.org"},  # the public origin is not on it
        {"AUTHGATE_WEBAUTHN_ORIGINS": "https://evil.example.org"},
        {"AUTHGATE_WEBAUTHN_ORIGINS": "https://auth.example.com/"},
        {"AUTHGATE_WEBAUTHN_ORIGINS": "https://auth.example.com/login"},
        {"AUTHGATE_WEBAUTHN_ORIGINS": "*"},
        {"AUTHGATE_WEBAUTHN_ORIGINS": "http://auth.example.com"},
        {"AUTHGATE_WEBAUTHN_ORIGINS": "https://auth.example.com:99999"},
        {"AUTHGATE_WEBAUTHN_ORIGINS": "https://user@auth.example.com"},
        {
            "AUTHGATE_WEBAUTHN_ORIGINS": "https://notexample.com",
            "AUTHGATE_WEBAUTHN_RP_ID": "example.com",
        },
    ],
)
def test_bad_values_are_refused(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        settings(tmp_path, **env)


def test_production_needs_https_origins(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        settings(
            tmp_path,
            AUTHGATE_ENV="production",
            AUTHGATE_MASTER_KEY_FILE=str(tmp_path / "k"),
            AUTHGATE_WEBAUTHN_RP_ID="localhost",
            AUTHGATE_WEBAUTHN_ORIGINS="http://localhost:5173",
        )


def test_the_routes_are_in_openapi_with_their_errors(server: Server) -> None:
    spec = server.http.get("/openapi.json").json()
    paths = spec["paths"]
    expected = {
        ("/auth/passkeys/register/options", "post"): {"401", "403"},
        ("/auth/passkeys/register/verify", "post"): {"400", "401", "409"},
        ("/auth/passkeys/login/options", "post"): {"400", "401"},
        ("/auth/passkeys/login/verify", "post"): {"401", "403"},
        ("/auth/passkeys", "get"): {"401"},
        ("/auth/passkeys/{passkey_id}", "patch"): {"401", "404"},
        ("/auth/passkeys/{passkey_id}", "delete"): {"401", "404"},
    }
    for (path, method), statuses in expected.items():
        operation = paths[path][method]
        assert statuses <= set(operation["responses"]), (path, method)
        assert operation.get("description"), (path, method)
    login_mfa = paths["/auth/login/mfa"]["post"]["requestBody"]["content"]["application/json"]
    schema = login_mfa["schema"]
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert "webauthn" in schema["properties"]
