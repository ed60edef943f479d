"""Redis stopped and restarted under load: the service continues (logins and refreshes
answer 200 or 401 as they should, never 5xx), falls back to the database for counters
and to polling for the feed, meters it, and goes back to Redis when it returns.

The test runs a Redis server of its own on a free port (never the shared one), and kills
and restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from _support.http import PASSWORD, bearer, login, new_email, register
from _support.live import free_port
from _support.services import unavailable
from scaleout._cluster import Cluster, cluster, metric

PHASE = 1.5  # seconds of load in each phase: up, down, back up


class OwnRedis:
    """``redis-server`` on a port of its own, no persistence."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed")
            return
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            deadline = time.monotonic() + 10
            while True:
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)  # polling for startup
        finally:
            client.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


Outcome = tuple[str, str, int]  # phase, kind, status


async def _load(
    group: Cluster, accounts: list[dict[str, Any]], phase: dict[str, str], stop: asyncio.Event
) -> list[Outcome]:
    """Clients on both instances: right logins (200), wrong logins (401), refreshes (200)."""
    outcomes: list[Outcome] = []
    clients = [httpx.AsyncClient(base_url=group[n].url, timeout=30.0) for n in ("a", "b")]

    async def user(index: int, account: dict[str, Any]) -> None:
        token = account["tokens"]["refresh_token"]
        step = index
        while not stop.is_set():
            c = clients[step % 2]
            step += 1
            r = await c.post("/auth/login", json={"email": account["email"], "password": PASSWORD})
            outcomes.append((phase["now"], "login", r.status_code))
            wrong = await c.post(
                "/auth/login", json={"email": new_email("nobody"), "password": "not it at all"}
            )
            outcomes.append((phase["now"], "wrong", wrong.status_code))
            r = await clients[step % 2].post("/auth/refresh", json={"refresh_token": token})
            outcomes.append((phase["now"], "refresh", r.status_code))
            if r.status_code == 200:
                token = r.json()["refresh_token"]

    try:
        await asyncio.gather(*(user(i, acct) for i, acct in enumerate(accounts)))
    finally:
        for c in clients:
            await c.aclose()
    return outcomes


def _feed_delay(group: Cluster, admin: str) -> float:
    """Seconds from a logout on a to the answer of a long poll on b."""
    with group["a"].client() as a, group["b"].client() as b:
        user = register(a, new_email())
        cursor = b.get("/auth/revocations", headers=bearer(admin)).json()["cursor"]
        done: Future[float] = Future()

        def poll() -> None:
            r = httpx.get(
                group["b"].url + "/auth/revocations",
                params={"after": cursor, "wait": 20},
                headers=bearer(admin),
                timeout=30.0,
            )
            assert r.status_code == 200, r.text
            done.set_result(time.monotonic())

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        time.sleep(0.5)  # let the poll park on b
        started = time.monotonic()
        assert a.post("/auth/logout", headers=bearer(user["access_token"])).status_code == 204
        answered = done.result(timeout=30)
        thread.join()
        return answered - started


def test_redis_down_and_back_under_load(tmp_path: Path, own_redis: OwnRedis) -> None:
    with cluster(tmp_path / "cluster", redis=own_redis.url) as group:
        admin_email = group.make_admin()
        accounts = []
        with group["a"].client() as a:
            for _ in range(4):
                email = new_email("load")
                accounts.append({"email": email, "tokens": register(a, email)})
            admin = login(a, admin_email)["access_token"]

        phase = {"now": "up"}

        async def scenario() -> list[Outcome]:
            stop = asyncio.Event()
            load = asyncio.create_task(_load(group, accounts, phase, stop))
            await asyncio.sleep(PHASE)
            own_redis.kill()
            phase["now"] = "down"
            await asyncio.sleep(PHASE)
            await asyncio.to_thread(own_redis.start)
            phase["now"] = "back"
            await asyncio.sleep(PHASE)
            stop.set()
            return await load

        outcomes = asyncio.run(scenario())
        by_phase: dict[str, dict[tuple[str, int], int]] = {}
        for name, kind, status in outcomes:
            tally = by_phase.setdefault(name, {})
            tally[kind, status] = tally.get((kind, status), 0) + 1
        print(f"\n{by_phase}")
        expected = {"login": 200, "wrong": 401, "refresh": 200}
        unexpected = [o for o in outcomes if o[2] != expected[o[1]]]
        assert unexpected == [], unexpected[:20]
        for name in ("up", "down", "back"):
            assert sum(by_phase.get(name, {}).values()) > 0, f"no request while {name}"

        for name in ("a", "b"):
            fallbacks = metric(group[name].metrics(), "authgate_redis_fallbacks_total")
            assert fallbacks > 0, f"instance {name} metered no fallback"

        # Back on Redis: a failure is counted in the restarted server again.
        email = new_email("counted")
        with group["b"].client() as b:
            register(b, email)
            r = b.post("/auth/login", json={"email": email, "password": "not the password"})
            assert r.status_code == 401
        client = own_redis.client()
        try:
            assert client.hget(f"authgate:counter:login:acct:{email}", "count") == b"1"
        finally:
            client.close()
        delay = _feed_delay(group, admin)
        print(f"revocation on a -> long poll on b after the outage: {delay * 1000:.0f} ms")
        assert delay < 5.0
