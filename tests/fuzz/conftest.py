"""Fixtures of the fuzzing suite: one running server for every API fuzzing test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from ._live import LiveServer, running_server


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server on a temporary SQLite file."""
    with running_server(tmp_path_factory.mktemp("fuzz")) as server:
        yield server


@pytest.fixture(scope="session")
def admin_token(live: LiveServer) -> str:
    """An admin exists and can log in over HTTP (this is its first token)."""
    return live.bootstrap_admin()


@pytest.fixture(scope="session")
def http() -> Iterator[requests.Session]:
    """One connection pool for every request."""
    with requests.Session() as session:
        yield session
