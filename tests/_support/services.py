"""The services some suites need beyond SQLite: PostgreSQL and Redis, found through
test-only variables that authgate itself never reads.

- ``AUTHGATE_TEST_POSTGRES_URL``: the PostgreSQL server (default
  ``postgresql://postgres@127.0.0.1:5432/test``); suites work in databases or schemas of
  their own on it (``ag_<random>``).
- ``AUTHGATE_TEST_REDIS_URL``: the Redis server (default ``redis://127.0.0.1:6379/<db>``,
  the db chosen by each suite).
- ``AUTHGATE_REQUIRE_SERVICES=1``: a missing service fails the test instead of skipping it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, NoReturn, TypeVar

import pytest
from sqlalchemy.engine import make_url

T = TypeVar("T")

REQUIRE_SERVICES_ENV: Final = "AUTHGATE_REQUIRE_SERVICES"
POSTGRES_URL_ENV: Final = "AUTHGATE_TEST_POSTGRES_URL"
REDIS_URL_ENV: Final = "AUTHGATE_TEST_REDIS_URL"
TEST_VARIABLES: Final = frozenset({REQUIRE_SERVICES_ENV, POSTGRES_URL_ENV, REDIS_URL_ENV})
DEFAULT_POSTGRES_URL: Final = "postgresql://postgres@127.0.0.1:5432/test"


def services_required() -> bool:
    """Whether a missing service fails the test (``AUTHGATE_REQUIRE_SERVICES=1``)."""
    return os.environ.get(REQUIRE_SERVICES_ENV) == "1"


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail when AUTHGATE_REQUIRE_SERVICES=1."""
    if services_required():
        pytest.fail(f"{reason}; {REQUIRE_SERVICES_ENV}=1 requires it", pytrace=False)
    pytest.skip(reason)


def postgres_url() -> str:
    """The PostgreSQL server the tests use."""
    return os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL


def postgres_dsn(url: str) -> str:
    """``url`` as a plain libpq DSN for asyncpg.connect (no driver, no authgate options)."""
    target = make_url(url).set(drivername="postgresql").difference_update_query(["search_path"])
    return target.render_as_string(hide_password=False)


def redis_url(db: int) -> str:
    """The Redis server the tests use; ``db`` when AUTHGATE_TEST_REDIS_URL is not set."""
    return os.environ.get(REDIS_URL_ENV) or f"redis://127.0.0.1:6379/{db}"


def require_redis(url: str) -> str:
    """``url``; skip the test, or fail it, if that Redis is unreachable."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except Exception as exc:
        unavailable(f"Redis at {url} is unreachable ({type(exc).__name__}: {exc})")
    finally:
        client.close()
    return url


def clean_environ() -> dict[str, str]:
    """This process's environment less every ``AUTHGATE_`` variable (the test-only ones
    too): what a subprocess under test starts from, whatever the developer's shell holds."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AUTHGATE_")}


def run_in_thread(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on an event loop of its own, in another thread: safe from a sync fixture
    while a test's loop runs in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
