"""The storage contract suite runs against every backend in BACKENDS.

Each test gets a fresh, migrated database. To add a backend, add its name to BACKENDS
and a branch to ``_fresh_database`` (PostgreSQL: a fresh schema per test under
AUTHGATE_TEST_POSTGRES_URL; skip when it is unset, fail when AUTHGATE_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from authgate.storage.base import Storage
from authgate.storage.sql import SqlStorage, migrate, open_storage

BACKENDS = ["sqlite"]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Async tests (``pytest.mark.anyio``) run on asyncio only."""
    return "asyncio"


async def _fresh_database(backend: str, tmp_path: Path) -> str:
    """A URL of an empty database of ``backend``, for one test."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'authgate.db'}"
    raise AssertionError(f"unknown backend {backend!r}")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test."""
    return str(request.param)


@pytest.fixture
async def empty_database_url(backend: str, tmp_path: Path, anyio_backend: str) -> str:
    """A fresh database with no schema."""
    return await _fresh_database(backend, tmp_path)


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    """A fresh, migrated database."""
    await migrate(empty_database_url)
    return empty_database_url


@pytest.fixture
async def sql_storage(database_url: str) -> AsyncIterator[SqlStorage]:
    """A SqlStorage on the fresh database, closed after the test."""
    store = await open_storage(database_url)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def storage(sql_storage: SqlStorage) -> Storage:
    """The store under test, seen only through the Protocol."""
    return sql_storage
