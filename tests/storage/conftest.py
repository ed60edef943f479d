"""The storage contract suite runs against every backend in BACKENDS.

Each test gets a fresh, migrated database. SQLite: a file in the test's tmp_path.
PostgreSQL: in the database at ``AUTHGATE_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``), a schema of its own (``ag_<random>``)
reached through the ``search_path`` URL option: one migrated schema per module, emptied
before each test, and a new one per test for an unmigrated database; all are dropped
afterwards, so that concurrent runs never collide. When that server cannot be reached (or
asyncpg is not installed), the PostgreSQL tests are skipped with the reason, or fail if
``AUTHGATE_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Final

import pytest

from authgate.storage.base import Storage
from authgate.storage.sql import SqlStorage, migrate

from ._postgres import migrated_schema, postgres_schema, require_postgres, reset_schema
from ._stores import opened

BACKENDS: Final = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Async tests (``pytest.mark.anyio``) run on asyncio only."""
    return "asyncio"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test (skips PostgreSQL early when it cannot run)."""
    name = str(request.param)
    if name == "postgresql":
        require_postgres()
    return name


@pytest.fixture
async def empty_database_url(
    backend: str, tmp_path: Path, anyio_backend: str
) -> AsyncIterator[str]:
    """A fresh database of ``backend`` with no schema, for one test."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'authgate.db'}"
    elif backend == "postgresql":
        async with postgres_schema() as url:
            yield url
    else:
        raise AssertionError(f"unknown backend {backend!r}")


@pytest.fixture(scope="module")
def postgres_module_url() -> Iterator[str]:
    """A migrated PostgreSQL schema shared by one module's tests (emptied before each)."""
    with migrated_schema() as url:
        yield url


@pytest.fixture
async def database_url(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, anyio_backend: str
) -> str:
    """A fresh, migrated database."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'authgate.db'}"
        await migrate(url)
        return url
    if backend == "postgresql":
        url = str(request.getfixturevalue("postgres_module_url"))
        await reset_schema(url)
        return url
    raise AssertionError(f"unknown backend {backend!r}")


@pytest.fixture
async def sql_storage(database_url: str) -> AsyncIterator[SqlStorage]:
    """A SqlStorage on the fresh database, closed after the test."""
    async with opened(database_url) as store:
        yield store


@pytest.fixture
def storage(sql_storage: SqlStorage) -> Storage:
    """The store under test, seen only through the Protocol."""
    return sql_storage
