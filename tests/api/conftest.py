"""Fixtures of the API suite: a real uvicorn server on a temporary SQLite file."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from authgate.clock import FixedClock

from .server import LiveServer, running_server

ServerFactory = Callable[..., LiveServer]


@pytest.fixture
def anyio_backend() -> str:
    """anyio's pytest plugin runs async tests on asyncio only."""
    return "asyncio"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    """A fresh server and database for one test."""
    with running_server(tmp_path) as live:
        yield live


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers with extra settings (each on its own database unless ``db_dir`` is
    given); they stop at the end of the test."""
    with contextlib.ExitStack() as stack:
        count = 0

        def factory(
            env: Mapping[str, str] | None = None,
            *,
            db_dir: Path | None = None,
            clock: FixedClock | None = None,
            master_key: str | None = None,
            replace_env: bool = False,
        ) -> LiveServer:
            nonlocal count
            count += 1
            folder = db_dir or tmp_path / f"server{count}"
            folder.mkdir(parents=True, exist_ok=True)
            return stack.enter_context(
                running_server(
                    folder, env, clock=clock, master_key=master_key, replace_env=replace_env
                )
            )

        yield factory


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for a whole module, for tests that neither move its clock nor depend on
    a fresh database (they use their own unique emails)."""
    with running_server(tmp_path_factory.mktemp("shared")) as live:
        yield live


@pytest.fixture(scope="module")
def shared_admin(shared: LiveServer) -> str:
    """An admin access token on the shared server."""
    return shared.make_admin()
