"""``kill -9`` of one instance in the middle of a refresh storm loses no committed refresh
and leaves no family with two live heads.

Clients rotate their own chains over both instances. A client whose request dies with the
instance sends the same token to the other one: within the grace window (the default,
10 s) it gets the successor the dead instance committed, or a rotation of its own if the
dead one committed nothing. Afterwards every refresh that answered 200 is in the database
as the successor of its parent, and each client's last token is its family's one head.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from _support.http import new_email, register
from scaleout._cluster import Cluster, cluster, family_violations, refresh_digest

CLIENTS = 16
KILL_AFTER = 120  # successful rotations before the kill
AFTER_KILL = 120  # successful rotations after it
STORM_LIMIT = 60.0  # seconds, a safety net


@dataclass
class Chain:
    """One client's refresh chain and what it saw."""

    token: str
    rotations: list[tuple[str, str, str]] = field(default_factory=list)  # parent, child, on
    refused: list[tuple[str, int, str]] = field(default_factory=list)
    lost_requests: int = 0


async def _storm(group: Cluster, chains: list[Chain]) -> dict[str, Any]:
    names = ["a", "b"]
    dead: set[str] = set()
    done = asyncio.Event()
    state: dict[str, Any] = {"ok": 0, "ok_at_kill": None, "killed_at": None}
    clients = {
        n: httpx.AsyncClient(
            base_url=group[n].url, timeout=30.0, limits=httpx.Limits(max_connections=CLIENTS)
        )
        for n in names
    }

    async def run(chain: Chain, index: int) -> None:
        step = index
        while not done.is_set():
            alive = [n for n in names if n not in dead]
            on = alive[step % len(alive)]
            step += 1
            try:
                r = await clients[on].post("/auth/refresh", json={"refresh_token": chain.token})
            except httpx.TransportError:
                chain.lost_requests += 1  # the instance died under it: try the same token again
                continue
            if r.status_code != 200:
                chain.refused.append((on, r.status_code, r.text))
                return
            child = r.json()["refresh_token"]
            chain.rotations.append((chain.token, child, on))
            chain.token = child
            state["ok"] += 1
            if state["ok_at_kill"] is None and state["ok"] >= KILL_AFTER:
                state["ok_at_kill"] = state["ok"]
                dead.add("a")  # new requests go to b; those in flight on a die with it
                state["killed_at"] = time.monotonic()
                group["a"].kill9()
            elif state["ok_at_kill"] is not None and state["ok"] >= KILL_AFTER + AFTER_KILL:
                done.set()

    async def limit() -> None:
        await asyncio.sleep(STORM_LIMIT)
        done.set()

    guard = asyncio.create_task(limit())
    try:
        await asyncio.gather(*(run(c, i) for i, c in enumerate(chains)))
    finally:
        guard.cancel()
        for c in clients.values():
            await c.aclose()
    return state


def test_kill_9_mid_storm_loses_no_committed_refresh(tmp_path: Path) -> None:
    with cluster(tmp_path) as group:
        chains = []
        for i in range(CLIENTS):
            with group["ab"[i % 2]].client() as client:
                chains.append(Chain(register(client, new_email("storm"))["refresh_token"]))
        first = {refresh_digest(c.token) for c in chains}
        state = asyncio.run(_storm(group, chains))

        assert state["ok_at_kill"] is not None, "the storm ended before the kill"
        assert [c.refused for c in chains if c.refused] == []
        on_a = sum(1 for c in chains for *_, on in c.rotations if on == "a")
        on_b = sum(1 for c in chains for *_, on in c.rotations if on == "b")
        lost = sum(c.lost_requests for c in chains)
        print(f"\nrotations: {on_a} on a, {on_b} on b; {lost} requests died with a")
        assert on_a > 0
        assert on_b > 0
        assert group["a"].process is not None
        assert group["a"].process.returncode == -9

        rows = group.fetch("SELECT digest, sid, parent, successor, rotated_at FROM refresh_tokens")
        by_digest = {r["digest"]: r for r in rows}
        missing = []
        for chain in chains:
            for parent, child, on in chain.rotations:
                p = by_digest.get(refresh_digest(parent))
                c = by_digest.get(refresh_digest(child))
                linked = p is not None and c is not None
                if not linked or p["successor"] != c["digest"] or c["parent"] != p["digest"]:
                    missing.append((on, refresh_digest(child)[:12]))
        assert missing == [], f"answered 200 but not in the database: {missing}"
        assert family_violations(rows) == []
        heads = {r["digest"] for r in rows if r["rotated_at"] is None}
        assert heads == {refresh_digest(c.token) for c in chains}  # one head each, the last
        assert {r["digest"] for r in rows if r["parent"] is None} == first
        assert group.fetch("SELECT sid FROM sessions WHERE revoked_at IS NOT NULL") == []
