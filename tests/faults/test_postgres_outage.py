"""A PostgreSQL outage gives 503 with Retry-After (never a hang, never a 500), and the
server recovers by itself when the database comes back, with no restart.

The outage is simulated without touching the shared server: the instance reaches
PostgreSQL through a TCP proxy of the test's own (``_proxy.py``), which is cut (connections
refused and dropped), stalled (a partition: nothing answers) and restored. Backends are
also terminated from the server side (``pg_terminate_backend``) under load.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from _support.http import assert_problem, bearer, login, new_email, register
from _support.live import free_port
from _support.services import postgres_dsn, postgres_url
from scaleout._cluster import Cluster, cluster, fresh_database
from scaleout._proxy import TcpProxy

OUTAGE_ANSWER_WITHIN = 10.0  # seconds: a request in an outage is refused, not held
RECOVER_WITHIN = 20.0


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, TcpProxy]]:
    """One instance (no Redis: counters live in the database too) whose database is
    reached through a proxy."""
    with fresh_database() as database:
        target = make_url(database)
        proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432, port=free_port())
        proxy.start()
        try:
            url = target.set(port=proxy.port).render_as_string(hide_password=False)
            with cluster(tmp_path_factory.mktemp("pg"), ("a",), redis=None, database=url) as group:
                yield group, proxy
        finally:
            proxy.close()


def _requests(
    client: httpx.Client, tokens: dict[str, Any], email: str
) -> dict[str, httpx.Response]:
    """One request of each kind that needs the database."""
    return {
        "login": client.post("/auth/login", json={"email": email, "password": "wrong one"}),
        "refresh": client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
        "me": client.get("/auth/me", headers=bearer(tokens["access_token"])),
        "register": client.post(
            "/auth/register", json={"email": new_email(), "password": "a fine passphrase 1"}
        ),
        "oauth2": client.post(
            "/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": "authgate",
            },
        ),
    }


def _wait_ready(client: httpx.Client) -> float:
    started = time.monotonic()
    while time.monotonic() - started < RECOVER_WITHIN:
        if client.get("/readyz").status_code == 200:
            return time.monotonic() - started
        time.sleep(0.1)  # polling for recovery
    raise AssertionError(f"/readyz did not recover within {RECOVER_WITHIN} s")


def _assert_recovered(group: Cluster, client: httpx.Client, pid: int) -> None:
    took = _wait_ready(client)
    print(f"\nrecovered in {took * 1000:.0f} ms")
    email = new_email("after")
    tokens = register(client, email)
    assert login(client, email)["token_type"] == "Bearer"
    assert client.get("/auth/me", headers=bearer(tokens["access_token"])).status_code == 200
    r = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200, r.text
    assert group["a"].pid == pid
    assert group["a"].process is not None
    assert group["a"].process.poll() is None  # the same process: no restart


def test_a_cut_database_gives_503_then_recovers(proxied: tuple[Cluster, TcpProxy]) -> None:
    group, proxy = proxied
    pid = group["a"].pid
    with group["a"].client(timeout=OUTAGE_ANSWER_WITHIN + 20) as client:
        email = new_email()
        tokens = register(client, email)
        proxy.cut()
        try:
            assert client.get("/healthz").status_code == 200  # alive, not ready
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.headers["Retry-After"] == "1"
            started = time.monotonic()
            answers = _requests(client, tokens, email)
            took = time.monotonic() - started
        finally:
            proxy.restore()
        for name, r in answers.items():
            assert r.status_code == 503, (name, r.status_code, r.text)
            assert int(r.headers["Retry-After"]) >= 1, name
            if name == "oauth2":
                assert r.json() == {"error": "temporarily_unavailable"}
            else:
                assert_problem(r, 503, "storage_unavailable")
        assert took < OUTAGE_ANSWER_WITHIN, took
        _assert_recovered(group, client, pid)
        # The refresh refused during the outage did not rotate: the token still works.
        r = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert r.status_code == 200, r.text


def test_a_stalled_database_gives_503_not_a_hang(proxied: tuple[Cluster, TcpProxy]) -> None:
    """A partition: the database neither answers nor refuses. Requests must still be
    refused in bounded time (statement and connect timeouts), not held until the client
    gives up."""
    group, proxy = proxied
    pid = group["a"].pid
    with group["a"].client() as client:
        tokens = register(client, new_email())
    proxy.stall()
    try:

        def call(path: str) -> httpx.Response | str:
            with httpx.Client(base_url=group["a"].url, timeout=OUTAGE_ANSWER_WITHIN + 2) as c:
                try:
                    if path == "/auth/refresh":
                        return c.post(path, json={"refresh_token": tokens["refresh_token"]})
                    return c.get(path, headers=bearer(tokens["access_token"]))
                except httpx.TimeoutException:
                    return "no answer"

        paths = ["/readyz", "/auth/me", "/auth/refresh"]
        with ThreadPoolExecutor(len(paths)) as pool:
            answers = dict(zip(paths, pool.map(call, paths), strict=True))
    finally:
        proxy.restore()
    shown = {p: (a if isinstance(a, str) else a.status_code) for p, a in answers.items()}
    assert all(
        not isinstance(a, str) and a.status_code == 503 and "Retry-After" in a.headers
        for a in answers.values()
    ), f"answers within {OUTAGE_ANSWER_WITHIN + 2:.0f} s of a stalled database: {shown}"
    with group["a"].client() as client:
        _assert_recovered(group, client, pid)


async def _terminate_backends(database: str) -> int:
    import asyncpg

    name = make_url(database).database
    conn = await asyncpg.connect(postgres_dsn(postgres_url()), timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        return len(rows)
    finally:
        await conn.close()


def test_terminated_backends_under_load_give_503_or_200_never_500(
    proxied: tuple[Cluster, TcpProxy], tmp_path: Path
) -> None:
    group, _ = proxied
    pid = group["a"].pid
    with group["a"].client() as client:
        users = [register(client, new_email()) for _ in range(4)]
    statuses: list[tuple[str, int, str | None]] = []
    killed: list[int] = []

    async def worker(tokens: dict[str, Any], stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=group["a"].url, timeout=30.0) as c:
            current = tokens
            while not stop.is_set():
                me = await c.get("/auth/me", headers=bearer(current["access_token"]))
                statuses.append(("me", me.status_code, me.headers.get("Retry-After")))
                r = await c.post("/auth/refresh", json={"refresh_token": current["refresh_token"]})
                statuses.append(("refresh", r.status_code, r.headers.get("Retry-After")))
                if r.status_code == 200:
                    current = r.json()

    async def storm() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(worker(t, stop)) for t in users]
        for _ in range(5):
            await asyncio.sleep(0.3)  # load runs between the terminations
            killed.append(await _terminate_backends(group.database))
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*tasks)

    asyncio.run(storm())
    assert sum(killed) > 0, "no backend was terminated"
    counts: dict[int, int] = {}
    for _, status, _ in statuses:
        counts[status] = counts.get(status, 0) + 1
    print(f"\nterminated {sum(killed)} backends; statuses {counts}")
    bad = [s for s in statuses if s[1] not in (200, 503) or (s[1] == 503 and s[2] is None)]
    assert bad == [], bad
    assert counts.get(200, 0) > 0
    with group["a"].client() as client:
        _assert_recovered(group, client, pid)
