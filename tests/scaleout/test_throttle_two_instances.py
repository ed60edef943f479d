"""Throttles across two real ``authgate serve`` instances sharing one PostgreSQL database,
with and without Redis: parallel attempts split over both instances still reach the check
no more than the configured number of times, because each is counted atomically in the
shared store before its secret is checked."""

from __future__ import annotations

import asyncio
import collections
import secrets
from collections.abc import Iterator
from typing import Any, Final

import httpx
import pytest
import redis

from _support.http import PASSWORD, assert_problem, new_email, register

from ._cluster import REDIS_URL, Cluster, cluster

PARALLEL: Final = 40
LOCK_AFTER: Final = 10  # the default: failures 1..9 are checked, the 10th attempt is locked
CLIENT_LIMIT: Final = 10  # the default: 429 after 10 failed client authentications


@pytest.fixture(scope="module", params=["postgresql", "postgresql+redis"])
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Instances a and b on a fresh database, with or without the shared Redis."""
    with_redis = request.param == "postgresql+redis"
    folder = tmp_path_factory.mktemp("throttle")
    with cluster(folder, redis=REDIS_URL if with_redis else None) as group:
        yield group


def counted(group: Cluster, key: str) -> int:
    """A throttle counter, read from where this cluster keeps it."""
    if group.redis is not None:
        client = redis.Redis.from_url(group.redis)
        try:
            return int(client.hget(f"authgate:counter:{key}", "count") or 0)
        finally:
            client.close()
    rows = group.fetch("SELECT count FROM counters WHERE key = $1", key)
    return int(rows[0]["count"]) if rows else 0


def burst(group: Cluster, calls: list[dict[str, Any]]) -> list[httpx.Response]:
    """Send every call at once, alternating instances a and b; the answers in order."""

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(calls), max_keepalive_connections=0)
        clients = [
            httpx.AsyncClient(base_url=group[name].url, timeout=60.0, limits=limits)
            for name in ("a", "b")
        ]
        try:
            return list(
                await asyncio.gather(*(clients[n % 2].post(**call) for n, call in enumerate(calls)))
            )
        finally:
            for client in clients:
                await client.aclose()

    return asyncio.run(run())


def tally(responses: list[httpx.Response]) -> dict[int, int]:
    return dict(collections.Counter(r.status_code for r in responses))


def test_throttle_race_two_instances_check_at_most_the_limit_of_passwords(pair: Cluster) -> None:
    email = new_email("race")
    with pair["a"].client() as a:
        register(a, email)
    responses = burst(
        pair,
        [
            {"url": "/auth/login", "json": {"email": email, "password": f"wrong guess {n}"}}
            for n in range(PARALLEL)
        ],
    )
    kind = "postgresql+redis" if pair.redis else "postgresql"
    print(f"\ntwo instances, {kind}: {PARALLEL} parallel wrong passwords -> {tally(responses)}")
    assert tally(responses) == {401: LOCK_AFTER - 1, 429: PARALLEL - LOCK_AFTER + 1}
    codes = {401: "invalid_credentials", 429: "too_many_attempts"}
    for r in responses:
        assert_problem(r, r.status_code, codes[r.status_code])
    assert counted(pair, f"login:acct:{email}") == LOCK_AFTER - 1
    for name in ("a", "b"):
        with pair[name].client() as c:
            right = c.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert_problem(right, 429, "too_many_attempts")


def test_throttle_race_two_instances_check_at_most_the_limit_of_client_secrets(
    pair: Cluster,
) -> None:
    client_id = "cli_" + secrets.token_urlsafe(12)  # no such client: it is counted all the same
    responses = burst(
        pair,
        [
            {
                "url": "/oauth2/token",
                "data": {"grant_type": "client_credentials"},
                "auth": (client_id, f"wrong secret {n}"),
            }
            for n in range(PARALLEL)
        ],
    )
    kind = "postgresql+redis" if pair.redis else "postgresql"
    print(f"\ntwo instances, {kind}: {PARALLEL} parallel bad client secrets -> {tally(responses)}")
    assert tally(responses) == {401: CLIENT_LIMIT, 429: PARALLEL - CLIENT_LIMIT}
    for r in responses:
        assert r.json()["error"] == ("invalid_client" if r.status_code == 401 else "slow_down")
    assert counted(pair, f"client:id:{client_id}") == CLIENT_LIMIT
