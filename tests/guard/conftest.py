"""Fixtures of the guard suite: one real authgate server per module, sharing a FixedClock
with the guards under test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from api.server import START
from authgate.clock import FixedClock

from ._support import AuthServer, auth_server


@pytest.fixture
def anyio_backend() -> str:
    """anyio's pytest plugin runs async tests on asyncio only."""
    return "asyncio"


@pytest.fixture(scope="module")
def clock() -> FixedClock:
    """The module's clock, shared by the server and its guards."""
    return FixedClock(START)


@pytest.fixture(scope="module")
def auth(tmp_path_factory: pytest.TempPathFactory, clock: FixedClock) -> Iterator[AuthServer]:
    """A real authgate server for the module; its issuer is its own URL."""
    with auth_server(tmp_path_factory.mktemp("auth"), clock=clock) as live:
        yield live


@pytest.fixture(scope="module")
def creds(auth: AuthServer) -> tuple[str, str]:
    """A service client with the authgate:revocations scope."""
    return auth.new_client()


@pytest.fixture(scope="module")
def admin(auth: AuthServer) -> str:
    """An admin access token (re-login after moving the clock far)."""
    return auth.make_admin()
