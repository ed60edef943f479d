"""Two real ``authgate serve`` instances on separate ports, sharing one fresh PostgreSQL
database and Redis: rotation, reuse detection, throttling and revocation work across them.

The module's instances run with ``AUTHGATE_REFRESH_GRACE=0``, so that a rotated token
presented again is always reuse; one test starts a second pair with the default grace.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from _support.http import PASSWORD, assert_problem, bearer, login, new_email, register
from authgate.wiring import new_master_key

from ._cluster import (
    REDIS_URL,
    Cluster,
    Instance,
    cluster,
    descendants,
    family_violations,
    metric,
    refresh_digest,
)

CONCURRENT = 50
FOLLOWED = 40


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Instances a and b, grace 0, on a fresh database and the shared Redis."""
    with cluster(tmp_path_factory.mktemp("pair"), AUTHGATE_REFRESH_GRACE="0") as group:
        yield group


@pytest.fixture(scope="module")
def admin_email(pair: Cluster) -> str:
    """An admin created with the CLI."""
    return pair.make_admin()


@pytest.fixture
def a(pair: Cluster) -> Iterator[httpx.Client]:
    with pair["a"].client() as client:
        yield client


@pytest.fixture
def b(pair: Cluster) -> Iterator[httpx.Client]:
    with pair["b"].client() as client:
        yield client


def family(group: Cluster, sid: str) -> list[dict[str, Any]]:
    """The refresh tokens of a session, from the database."""
    return group.fetch(
        "SELECT digest, sid, parent, successor, rotated_at FROM refresh_tokens WHERE sid = $1",
        sid,
    )


def sid_of(group: Cluster, refresh_token: str) -> str:
    rows = group.fetch(
        "SELECT sid FROM refresh_tokens WHERE digest = $1", refresh_digest(refresh_token)
    )
    assert len(rows) == 1
    return str(rows[0]["sid"])


CURRENT_KEYS = "SELECT alg FROM keys WHERE state = 'current'"


def test_instances_share_one_keyring_and_database(
    pair: Cluster, a: httpx.Client, b: httpx.Client
) -> None:
    # Both started at once on an empty database: one of them created the keys.
    assert a.get("/.well-known/jwks.json").json() == b.get("/.well-known/jwks.json").json()
    # One current key per algorithm: the access tokens' and the ID tokens'.
    assert sorted(r["alg"] for r in pair.fetch(CURRENT_KEYS)) == ["ES256", "RS256"]
    email = new_email()
    tokens = register(a, email)
    me = b.get("/auth/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["email"] == email
    assert pair.fetch("SELECT email FROM users WHERE email = $1", email) == [{"email": email}]


def test_reuse_on_the_other_instance_revokes_the_family(
    pair: Cluster, a: httpx.Client, b: httpx.Client
) -> None:
    first = register(a, new_email())
    rotated = a.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    sid = sid_of(pair, first["refresh_token"])

    # The old token again, on B: reuse (grace 0), the whole family is revoked.
    reuse = b.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_problem(reuse, 401, "invalid_grant")
    for client in (a, b):
        head = client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
        assert_problem(head, 401, "invalid_grant")
        me = client.get("/auth/me", headers=bearer(second["access_token"]))
        assert_problem(me, 401, "invalid_token")
    session = pair.fetch("SELECT revoked_at FROM sessions WHERE sid = $1", sid)
    assert session[0]["revoked_at"] is not None
    events = pair.fetch("SELECT event FROM audit_events WHERE sid = $1", sid)
    assert {"event": "refresh_reuse"} in events


async def _storm(urls: list[str], token: str, count: int) -> list[httpx.Response]:
    clients = [
        httpx.AsyncClient(base_url=url, timeout=60.0, limits=httpx.Limits(max_connections=count))
        for url in urls
    ]
    try:
        return await asyncio.gather(
            *(
                clients[i % len(clients)].post("/auth/refresh", json={"refresh_token": token})
                for i in range(count)
            )
        )
    finally:
        for client in clients:
            await client.aclose()


def test_concurrent_refreshes_over_both_instances_leave_one_head(
    pair: Cluster, a: httpx.Client
) -> None:
    tokens = register(a, new_email())
    sid = sid_of(pair, tokens["refresh_token"])
    responses = asyncio.run(
        _storm([pair["a"].url, pair["b"].url], tokens["refresh_token"], CONCURRENT)
    )
    statuses = sorted(r.status_code for r in responses)
    # Grace 0: one rotation wins; every other attempt is reuse of a rotated token.
    assert statuses == [200] + [401] * (CONCURRENT - 1), statuses
    for r in responses:
        if r.status_code == 401:
            assert r.json()["code"] == "invalid_grant"
    winner = next(r.json() for r in responses if r.status_code == 200)
    rows = family(pair, sid)
    assert len(rows) == 2, rows
    by_digest = {r["digest"]: r for r in rows}
    root = by_digest[refresh_digest(tokens["refresh_token"])]
    child = by_digest[refresh_digest(winner["refresh_token"])]
    assert root["successor"] == child["digest"]
    assert child["parent"] == root["digest"]
    assert child["rotated_at"] is None  # the one head (of a family the losers revoked)
    assert family_violations(rows) == []


def test_concurrent_refreshes_within_grace_one_rotation_one_replay_then_reuse(
    tmp_path: Path,
) -> None:
    """Across two instances: one refresh rotates, one replays and gets the same successor
    (the grace window's one replay), and every other one is a reuse that ends the family."""
    with cluster(tmp_path) as group:  # default grace (10 s), its own database
        with group["a"].client() as a:
            tokens = register(a, new_email())
        sid = sid_of(group, tokens["refresh_token"])
        responses = asyncio.run(
            _storm([group["a"].url, group["b"].url], tokens["refresh_token"], CONCURRENT)
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * 2 + [401] * (CONCURRENT - 2), [
            (r.status_code, r.text) for r in responses
        ][:4]
        successors = {r.json()["refresh_token"] for r in responses if r.status_code == 200}
        assert len(successors) == 1  # both answers are the one rotation's successor
        rows = family(group, sid)
        assert len(rows) == 2, rows
        assert family_violations(rows) == []
        head = [r for r in rows if r["rotated_at"] is None]
        assert [r["digest"] for r in head] == [refresh_digest(successors.pop())]
        (revoked,) = group.fetch("SELECT revoked_at FROM sessions WHERE sid = $1", sid)
        assert revoked["revoked_at"] is not None


def test_throttling_counts_attempts_on_both_instances(
    pair: Cluster, a: httpx.Client, b: httpx.Client
) -> None:
    email = new_email("throttled")
    register(a, email)
    clients = [a, b]
    for attempt in range(1, 10):  # failures 1..9, alternating A, B, A, ...
        r = clients[(attempt - 1) % 2].post(
            "/auth/login", json={"email": email, "password": "wrong password " + str(attempt)}
        )
        assert_problem(r, 401, "invalid_credentials")
    # Each instance saw 4 or 5 failures only; the 10th attempt (on B) is the locked one,
    # even with the right password.
    locked = b.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert_problem(locked, 429, "too_many_attempts")
    assert int(locked.headers["Retry-After"]) >= 1
    again = a.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert_problem(again, 429, "too_many_attempts")
    # The count lives in Redis, not in the shared database.
    r = redis.Redis.from_url(REDIS_URL)
    try:
        assert r.hget(f"authgate:counter:login:acct:{email}", "count") == b"9"
    finally:
        r.close()
    assert pair.fetch("SELECT key FROM counters WHERE key = $1", f"login:acct:{email}") == []


def _long_poll(
    url: str, token: str, cursor: int, done: Future[tuple[float, httpx.Response]]
) -> None:
    try:
        r = httpx.get(
            url + "/auth/revocations",
            params={"after": cursor, "wait": 20},
            headers=bearer(token),
            timeout=30.0,
        )
        done.set_result((time.monotonic(), r))
    except BaseException as exc:
        done.set_exception(exc)


def test_a_logout_on_a_wakes_a_long_poll_on_b(
    pair: Cluster, admin_email: str, a: httpx.Client, b: httpx.Client
) -> None:
    admin = login(b, admin_email)["access_token"]
    delays = []
    for _ in range(3):
        user = register(a, new_email())
        sid = sid_of(pair, user["refresh_token"])
        feed = b.get("/auth/revocations", headers=bearer(admin))
        assert feed.status_code == 200, feed.text
        cursor = feed.json()["cursor"]
        done: Future[tuple[float, httpx.Response]] = Future()
        poller = threading.Thread(
            target=_long_poll, args=(pair["b"].url, admin, cursor, done), daemon=True
        )
        poller.start()
        time.sleep(0.5)  # let the poll reach B and park there; timing does not depend on it
        assert not done.done(), "the long poll answered before any revocation"
        started = time.monotonic()
        out = a.post("/auth/logout", headers=bearer(user["access_token"]))
        assert out.status_code == 204, out.text
        answered, r = done.result(timeout=30)
        poller.join()
        assert r.status_code == 200, r.text
        events = r.json()["events"]
        assert {"kind": "sid", "value": sid} in [
            {"kind": e["kind"], "value": e["value"]} for e in events
        ]
        delays.append(answered - started)
    print(f"\nrevocation on A -> long poll on B: {', '.join(f'{d * 1000:.0f} ms' for d in delays)}")
    assert max(delays) < 5.0, delays


def test_a_follower_of_b_misses_no_revocation_made_concurrently_on_both(
    pair: Cluster, admin_email: str, a: httpx.Client, b: httpx.Client
) -> None:
    """Cursor order is commit order: concurrent revocations on two instances never commit
    an id below a cursor a follower has already passed."""
    admin = login(b, admin_email)["access_token"]
    users = [register([a, b][i % 2], new_email("follow")) for i in range(FOLLOWED)]
    sids = {sid_of(pair, u["refresh_token"]) for u in users}
    cursor = b.get("/auth/revocations", headers=bearer(admin)).json()["cursor"]
    seen: set[str] = set()
    stop = threading.Event()

    def follow() -> None:
        nonlocal cursor
        with httpx.Client(base_url=pair["b"].url, timeout=30.0, headers=bearer(admin)) as feed:
            while not stop.is_set() and not sids <= seen:
                r = feed.get("/auth/revocations", params={"after": cursor, "wait": 2})
                assert r.status_code == 200, r.text
                page = r.json()
                seen.update(e["value"] for e in page["events"] if e["kind"] == "sid")
                cursor = page["cursor"]

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()

    async def logouts() -> list[int]:
        clients = [httpx.AsyncClient(base_url=pair[n].url, timeout=30.0) for n in ("a", "b")]
        try:
            answers = await asyncio.gather(
                *(
                    clients[i % 2].post("/auth/logout", headers=bearer(u["access_token"]))
                    for i, u in enumerate(users)
                )
            )
        finally:
            for c in clients:
                await c.aclose()
        return [r.status_code for r in answers]

    assert asyncio.run(logouts()) == [204] * FOLLOWED
    follower.join(timeout=20)
    stop.set()
    follower.join(timeout=10)
    assert sids - seen == set(), f"the follower missed {len(sids - seen)} of {FOLLOWED}"


def test_the_full_api_flow_on_postgresql_and_redis(
    pair: Cluster, a: httpx.Client, b: httpx.Client
) -> None:
    email = new_email("flow")
    registered = register(a, email)
    assert registered["user"]["email"] == email
    first = login(b, email)  # a second session
    me = a.get("/auth/me", headers=bearer(first["access_token"]))
    assert me.status_code == 200
    assert me.json()["email"] == email
    refreshed = b.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    first = refreshed.json()
    sessions = a.get("/auth/sessions", headers=bearer(first["access_token"]))
    assert sessions.status_code == 200
    assert len(sessions.json()) == 2

    # A password change (on B, from the registration session) ends the other session.
    new_password = "another long passphrase 99"
    changed = b.post(
        "/auth/password",
        headers=bearer(registered["access_token"]),
        json={"current_password": PASSWORD, "new_password": new_password},
    )
    assert changed.status_code == 204, changed.text
    assert_problem(a.get("/auth/me", headers=bearer(first["access_token"])), 401, "invalid_token")
    stale = a.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_problem(stale, 401, "invalid_grant")
    assert a.get("/auth/me", headers=bearer(registered["access_token"])).status_code == 200
    old = b.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert_problem(old, 401, "invalid_credentials")
    second = login(a, email, new_password)
    third = login(b, email, new_password)

    # Logout (on A) ends one session, at once on B too.
    assert a.post("/auth/logout", headers=bearer(second["access_token"])).status_code == 204
    assert_problem(b.get("/auth/me", headers=bearer(second["access_token"])), 401, "invalid_token")
    assert b.get("/auth/me", headers=bearer(third["access_token"])).status_code == 200

    # Logout everywhere (on B) ends every session.
    assert b.post("/auth/logout-all", headers=bearer(third["access_token"])).status_code == 204
    for token in (registered, third):
        for client in (a, b):
            dead = client.get("/auth/me", headers=bearer(token["access_token"]))
            assert_problem(dead, 401, "invalid_token")
        again = a.post("/auth/refresh", json={"refresh_token": token["refresh_token"]})
        assert_problem(again, 401, "invalid_grant")
    live = pair.fetch(
        "SELECT s.sid FROM sessions s JOIN users u ON u.id = s.user_id "
        "WHERE u.email = $1 AND s.revoked_at IS NULL",
        email,
    )
    assert live == []


def test_serve_with_two_workers_on_postgresql(pair: Cluster) -> None:
    (inst,) = pair.start(["workers"], args=("--workers", "2"), AUTHGATE_REFRESH_GRACE="0")
    try:
        assert len(descendants(inst.pid)) >= 2  # uvicorn's supervisor and its 2 workers
        email = new_email("workers")
        seen: list[float] = []
        with inst.client() as client:
            tokens = register(client, email)
            for _ in range(5):
                r = client.get("/auth/me", headers=bearer(tokens["access_token"]))
                assert r.status_code == 200, r.text
            assert login(client, email)["token_type"] == "Bearer"
        assert pair.fetch("SELECT email FROM users WHERE email = $1", email) == [{"email": email}]
        # Each worker has its own metrics: the /metrics count a response shows grows
        # strictly while one process answers. A repeat or a drop shows a second process.
        for _ in range(200):
            with httpx.Client(base_url=inst.url, timeout=10.0) as fresh:  # a new connection
                text = fresh.get("/metrics").text
            seen.append(
                metric(
                    text,
                    "authgate_http_request_duration_seconds_count",
                    method="GET",
                    route="/metrics",
                )
            )
            if len(seen) > 1 and seen[-1] <= seen[-2]:
                break
        assert any(later <= earlier for earlier, later in itertools.pairwise(seen)), (
            f"only one worker answered: {seen}"
        )
    finally:
        inst.stop()


def test_an_instance_with_another_master_key_refuses_to_start(pair: Cluster) -> None:
    """Every instance needs the same master key: one with another never signs with keys of
    its own, it refuses to start."""
    env = pair.env(AUTHGATE_MASTER_KEY=new_master_key())
    stray = Instance("stray", env, pair.directory).spawn()
    assert stray.process is not None
    try:
        code = stray.process.wait(timeout=60)
    finally:
        stray.stop()
    assert code == 1, stray.log_tail()
    assert "master key" in stray.log_tail()
    # One current key per algorithm: the access tokens' and the ID tokens'.
    assert sorted(r["alg"] for r in pair.fetch(CURRENT_KEYS)) == ["ES256", "RS256"]
