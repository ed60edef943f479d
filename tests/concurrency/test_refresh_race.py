"""50 concurrent refreshes of one token against the real server: never a fork in the family."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path

import httpx
import pytest

from _support.http import new_email
from _support.tokens import claims_of
from api.server import LiveServer, running_server

N = 50


def family_rows(
    live: LiveServer, sid: str
) -> list[tuple[str, str | None, float | None, str | None]]:
    with live.db() as db:
        return [
            tuple(row)  # type: ignore[misc]
            for row in db.execute(
                "SELECT digest, parent, rotated_at, successor FROM refresh_tokens WHERE sid = ?",
                (sid,),
            )
        ]


def assert_no_fork(
    live: LiveServer, sid: str
) -> list[tuple[str, str | None, float | None, str | None]]:
    rows = family_rows(live, sid)
    heads = [r for r in rows if r[2] is None]
    assert len(heads) <= 1, f"{len(heads)} live heads"
    parents = Counter(r[1] for r in rows if r[1] is not None)
    assert all(n == 1 for n in parents.values()), f"a token has two children: {parents}"
    by_digest = {r[0]: r for r in rows}
    for digest, parent, rotated_at, successor in rows:
        if rotated_at is not None:  # a rotated token names its one child, which exists
            assert successor in by_digest
            assert by_digest[successor][1] == digest
        if parent is not None:
            assert by_digest[parent][3] == digest
    return rows


def session_revoked_at(live: LiveServer, sid: str) -> float | None:
    with sqlite3.connect(f"file:{live.db_path}?mode=ro", uri=True) as db:
        (revoked_at,) = db.execute(
            "SELECT revoked_at FROM sessions WHERE sid = ?", (sid,)
        ).fetchone()
    return revoked_at  # type: ignore[no-any-return]


async def refresh_all(live: LiveServer, token: str, n: int = N) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=live.url, limits=limits, timeout=60) as client:
        gate = asyncio.Event()

        async def one() -> httpx.Response:
            await gate.wait()
            return await client.post("/auth/refresh", json={"refresh_token": token})

        tasks = [asyncio.create_task(one()) for _ in range(n)]
        await asyncio.sleep(0)  # let every task reach the gate, then release them together
        gate.set()
        return list(await asyncio.gather(*tasks))


@pytest.mark.anyio
async def test_concurrent_refreshes_within_grace_one_rotation_one_replay_then_reuse(
    tmp_path: Path,
) -> None:
    """Within the grace window the rotated token may be replayed once: of 50 concurrent
    refreshes, one rotates, one replays and gets the same successor, and every other one is
    a reuse that ends the family (whoever sent it)."""
    with running_server(tmp_path) as live:
        first = live.register(new_email())
        sid = claims_of(first["access_token"])["sid"]
        responses = await refresh_all(live, first["refresh_token"])

        statuses = Counter(r.status_code for r in responses)
        assert statuses == {200: 2, 401: N - 2}, statuses
        successors = {r.json()["refresh_token"] for r in responses if r.status_code == 200}
        assert len(successors) == 1
        assert all(r.headers["cache-control"] == "no-store" for r in responses if r.is_success)
        for r in responses:
            if r.status_code == 401:
                assert r.json()["code"] == "invalid_grant"
        assert session_revoked_at(live, sid) is not None
        rows = assert_no_fork(live, sid)
        assert len(rows) == 2  # the original, rotated once, and one head
        (successor,) = successors
        r = live.http.post("/auth/refresh", json={"refresh_token": successor})
        assert r.status_code == 401, r.text


@pytest.mark.anyio
async def test_concurrent_refresh_and_its_one_replay_share_the_successor(tmp_path: Path) -> None:
    """Two concurrent refreshes (a client's retry): one rotation and one replay, the same
    successor, and the family lives on."""
    with running_server(tmp_path) as live:
        first = live.register(new_email())
        sid = claims_of(first["access_token"])["sid"]
        responses = await refresh_all(live, first["refresh_token"], n=2)
        assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
        successors = {r.json()["refresh_token"] for r in responses}
        assert len(successors) == 1
        assert session_revoked_at(live, sid) is None
        assert len(assert_no_fork(live, sid)) == 2
        (successor,) = successors
        r = live.http.post("/auth/refresh", json={"refresh_token": successor})
        assert r.status_code == 200, r.text
        assert_no_fork(live, sid)


@pytest.mark.anyio
async def test_concurrent_refreshes_without_grace_revoke_the_family(tmp_path: Path) -> None:
    with running_server(tmp_path, {"AUTHGATE_REFRESH_GRACE": "0"}) as live:
        first = live.register(new_email())
        sid = claims_of(first["access_token"])["sid"]
        responses = await refresh_all(live, first["refresh_token"])

        statuses = Counter(r.status_code for r in responses)
        # One wins the compare-and-set; every other one is a reuse and kills the family.
        assert statuses == {200: 1, 401: N - 1}, statuses
        for r in responses:
            if r.status_code == 401:
                assert r.json()["code"] == "invalid_grant"
        assert session_revoked_at(live, sid) is not None
        rows = assert_no_fork(live, sid)
        assert len(rows) == 2
        (winner,) = [r.json() for r in responses if r.status_code == 200]
        r = live.http.post("/auth/refresh", json={"refresh_token": winner["refresh_token"]})
        assert r.status_code == 401
        assert r.json()["code"] == "invalid_grant"
        me = live.http.get(
            "/auth/me", headers={"Authorization": f"Bearer {winner['access_token']}"}
        )
        assert me.status_code == 401


@pytest.mark.anyio
async def test_concurrent_refresh_pairs_spend_the_familys_one_replay_then_reuse(
    tmp_path: Path,
) -> None:
    """The grace window allows one replay per family, not one per token: a first pair of
    concurrent refreshes (a rotation and its replay) shares one successor; the next pair,
    on that successor, is a rotation and a reuse, and the family ends. Never a fork."""
    with running_server(tmp_path) as live:
        body = live.register(new_email())
        sid = claims_of(body["access_token"])["sid"]
        first = await refresh_all(live, body["refresh_token"], n=2)
        assert [r.status_code for r in first] == [200, 200]
        (successor,) = {r.json()["refresh_token"] for r in first}
        assert session_revoked_at(live, sid) is None
        live.clock.advance(1)
        second = await refresh_all(live, successor, n=2)
        assert sorted(r.status_code for r in second) == [200, 401]
        assert session_revoked_at(live, sid) is not None
        assert len(assert_no_fork(live, sid)) == 3
