"""The concurrency suite drives the same real server as the API suite."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """anyio's pytest plugin runs async tests on asyncio only."""
    return "asyncio"
