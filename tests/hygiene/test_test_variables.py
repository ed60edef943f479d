"""The suite's own variables (``AUTHGATE_TEST_*``, ``AUTHGATE_REQUIRE_SERVICES``) belong to
the tests (``_support.services``): authgate never names them, and they change no setting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from _support.services import (
    POSTGRES_URL_ENV,
    REDIS_URL_ENV,
    REQUIRE_SERVICES_ENV,
    TEST_VARIABLES,
    clean_environ,
)
from api.server import base_env
from authgate.settings import Settings

SRC = Path(__file__).resolve().parents[2] / "src"


def test_src_never_names_a_test_only_variable() -> None:
    names = sorted({*TEST_VARIABLES, "AUTHGATE_TEST_"})
    sources = sorted(SRC.rglob("*.py"))
    assert sources, f"no sources under {SRC}"
    found = [
        f"{path.relative_to(SRC)}: {name}"
        for path in sources
        for name in names
        if name in path.read_text("utf-8")
    ]
    assert found == []


def test_test_only_variables_change_no_setting(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    plain = Settings.from_env(env, config_dir=tmp_path)
    with_test_variables = Settings.from_env(
        {
            **env,
            POSTGRES_URL_ENV: "postgresql://other@db.example.com:5432/other",
            REDIS_URL_ENV: "redis://cache.example.com:6379/3",
            REQUIRE_SERVICES_ENV: "1",
        },
        config_dir=tmp_path,
    )
    assert with_test_variables == plain
    assert with_test_variables.describe() == plain.describe()


def test_subprocesses_start_without_any_authgate_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*TEST_VARIABLES, "AUTHGATE_DATABASE_URL"):
        monkeypatch.setenv(name, "set in the developer's shell")
    env = clean_environ()
    assert [name for name in env if name.startswith("AUTHGATE_")] == []
    assert env["PATH"] == os.environ["PATH"]
