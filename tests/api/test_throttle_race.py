"""Throttles under real concurrency: parallel attempts over HTTP, on SQLite, PostgreSQL and
Redis counters. Each attempt is counted (reserved) atomically before its password is
checked, so no more than the configured number of checks ever run, however many arrive at
once; the rest get 429.

Every test speaks from an address of its own (``X-Forwarded-For`` from a trusted proxy), so
that counters in the shared Redis never meet those of another run.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import redis

from _support.http import PASSWORD, assert_problem, bearer, new_email
from _support.services import require_redis
from scaleout._cluster import REDIS_URL, fresh_database

from .server import LiveServer, running_server

BACKENDS: Final = ["sqlite", "postgresql", "redis"]
PARALLEL: Final = 40


def new_address() -> str:
    """An address of the IPv6 documentation range that no other test uses."""
    return str(ipaddress.IPv6Address("2001:db8::") + secrets.randbits(64))


class Backend:
    """Starts servers whose counters live in one backend."""

    def __init__(self, name: str, tmp_path: Path, stack: contextlib.ExitStack) -> None:
        self.name = name
        self._tmp = tmp_path
        self._stack = stack
        self._count = 0

    def server(self, **env: str) -> LiveServer:
        self._count += 1
        # Registrations mail, and count against the IP's mail limit; Redis keeps that
        # counter across every server of the run.
        full = {
            "AUTHGATE_TRUSTED_PROXIES": "127.0.0.1",
            "AUTHGATE_MAIL_IP_LIMIT": "1000000",
            **env,
        }
        if self.name == "postgresql":
            full["AUTHGATE_DATABASE_URL"] = self._stack.enter_context(fresh_database())
        elif self.name == "redis":
            full["AUTHGATE_REDIS_URL"] = require_redis(REDIS_URL)
        folder = self._tmp / f"server{self._count}"
        folder.mkdir()
        return self._stack.enter_context(running_server(folder, full))

    def failures(self, live: LiveServer, key: str) -> int:
        """The count of a throttle counter, read from where it lives."""
        if self.name == "redis":
            client = redis.Redis.from_url(REDIS_URL)
            try:
                raw = client.hget(f"authgate:counter:{key}", "count")
            finally:
                client.close()
            return int(raw or 0)
        window = live.settings.throttle_window
        state = live.call(live.services.storage.peek(key, now=live.clock.now(), window=window))
        return state.count


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with contextlib.ExitStack() as stack:
        yield Backend(str(request.param), tmp_path, stack)


def burst(live: LiveServer, calls: list[dict[str, Any]]) -> list[httpx.Response]:
    """Send every call at once, each on a connection of its own; the answers in order."""

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(calls), max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=live.url, timeout=60.0, limits=limits) as client:
            return list(await asyncio.gather(*(client.post(**call) for call in calls)))

    return asyncio.run(run())


def tally(responses: list[httpx.Response]) -> dict[int, int]:
    return dict(collections.Counter(r.status_code for r in responses))


def test_throttle_race_parallel_wrong_passwords_reach_the_check_at_most_the_limit(
    backend: Backend,
) -> None:
    live = backend.server()
    email, address = new_email(), new_address()
    live.register(email)
    limit = live.settings.throttle_lock_after - 1  # failures 1..9 are checked; the 10th is not
    checks_before = live.services.hasher.started
    responses = burst(
        live,
        [
            {
                "url": "/auth/login",
                "json": {"email": email, "password": f"wrong guess {n}"},
                "headers": {"X-Forwarded-For": address},
            }
            for n in range(PARALLEL)
        ],
    )
    print(f"\n{backend.name}: {PARALLEL} parallel wrong passwords -> {tally(responses)}")
    assert tally(responses) == {401: limit, 429: PARALLEL - limit}
    assert live.services.hasher.started - checks_before == limit
    for r in responses:
        if r.status_code == 429:
            assert_problem(r, 429, "too_many_attempts")
            assert 1 <= int(r.headers["retry-after"]) <= 901
        else:
            assert_problem(r, 401, "invalid_credentials")
    # Refused attempts gave their reservation back: the count is the failures.
    assert backend.failures(live, f"login:acct:{email}") == limit
    right = live.http.post(
        "/auth/login",
        json={"email": email, "password": PASSWORD},
        headers={"X-Forwarded-For": new_address()},
    )
    assert_problem(right, 429, "too_many_attempts")


def test_throttle_race_parallel_failures_from_one_address_stop_at_its_limit(
    backend: Backend,
) -> None:
    live = backend.server(AUTHGATE_THROTTLE_IP_LIMIT="10")
    # The first unknown account makes the hasher's dummy hash: not part of the count.
    warm = {"email": new_email(), "password": "not the password 1"}
    other = {"X-Forwarded-For": new_address()}
    assert live.http.post("/auth/login", json=warm, headers=other).status_code == 401
    address = new_address()
    checks_before = live.services.hasher.started
    responses = burst(
        live,
        [
            {
                "url": "/auth/login",
                "json": {"email": new_email(), "password": "not the password 2"},
                "headers": {"X-Forwarded-For": address},
            }
            for _ in range(PARALLEL)
        ],
    )
    print(f"\n{backend.name}: {PARALLEL} parallel failures, one address -> {tally(responses)}")
    assert tally(responses) == {401: 10, 429: PARALLEL - 10}
    assert live.services.hasher.started - checks_before == 10
    assert backend.failures(live, f"login:ip:{address}") == 10


def test_throttle_race_parallel_wrong_current_passwords_reach_the_check_at_most_the_limit(
    backend: Backend,
) -> None:
    """POST /auth/password goes through the same throttle as the login."""
    live = backend.server()
    email = new_email()
    token = live.register(email)["access_token"]
    limit = live.settings.throttle_lock_after - 1
    checks_before = live.services.hasher.started
    responses = burst(
        live,
        [
            {
                "url": "/auth/password",
                "json": {"current_password": f"guess {n}", "new_password": PASSWORD + "!"},
                "headers": {**bearer(token), "X-Forwarded-For": new_address()},
            }
            for n in range(PARALLEL)
        ],
    )
    print(f"\n{backend.name}: {PARALLEL} parallel wrong current passwords -> {tally(responses)}")
    assert tally(responses) == {401: limit, 429: PARALLEL - limit}
    assert live.services.hasher.started - checks_before == limit
    right = live.http.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": PASSWORD + "!"},
        headers=bearer(token),
    )
    assert_problem(right, 429, "too_many_attempts")


def test_throttle_race_successes_do_not_count_against_the_address(backend: Backend) -> None:
    """A success gives its reservation back: only failures (and checks in flight, which may
    turn out to be failures) fill an address's window."""
    live = backend.server(AUTHGATE_THROTTLE_IP_LIMIT="3")
    email, address = new_email(), new_address()
    live.register(email)
    at = {"X-Forwarded-For": address}
    for _ in range(8):
        r = live.http.post("/auth/login", json={"email": email, "password": PASSWORD}, headers=at)
        assert r.status_code == 200, r.text
    assert backend.failures(live, f"login:ip:{address}") == 0
    for n in range(3):
        r = live.http.post(
            "/auth/login", json={"email": new_email(), "password": f"wrong {n}"}, headers=at
        )
        assert_problem(r, 401, "invalid_credentials")
    r = live.http.post("/auth/login", json={"email": email, "password": PASSWORD}, headers=at)
    assert_problem(r, 429, "too_many_attempts")
