"""A race harness for stale privileges: demotions and disables landing during logins and
refreshes in flight, each token then checked at every server instance and at a guard.

One race: a user holding the role ``writer`` (permission ``posts:write``) logs in (or
refreshes) at one instance while an admin, after a random pause that spreads the change
over the whole of that request, removes the role (or disables the user) at another. Once
both have answered, the token the login or refresh got, if any, is either *fresh* (it
carries the privileges the user has now) or *stale* (minted from a read taken before the
change). A stale token must be refused by every instance and by a guard that has read the
feed up to the change; a fresh one must be accepted (so the checks can fail both ways).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from _support.http import bearer
from _support.tokens import claims_of
from authgate.clock import FixedClock
from authgate.errors import InvalidToken
from authgate.guard import Guard
from guard._support import AuthServer, auth_server

ROLE = "writer"
PERMISSION = "posts:write"
PASSWORD = "correct horse battery staple 42"
KINDS = ("login+demote", "login+disable", "refresh+demote", "refresh+disable")
# Throttling is not under test: a disabled user's login attempts are failures, by the
# hundred. These settings keep them from locking the account.
NO_THROTTLE = {
    "AUTHGATE_THROTTLE_DELAY_AFTER": "1000000",
    "AUTHGATE_THROTTLE_LOCK_AFTER": "1000000",
    "AUTHGATE_THROTTLE_IP_LIMIT": "1000000",
}
# The real argon2 parameters: the window between reading the user and issuing the token
# is then as wide as it is in production (tens of milliseconds).
REAL_ARGON2 = {"AUTHGATE_ARGON2_MEMORY_KIB": "19456", "AUTHGATE_ARGON2_TIME_COST": "2"}


@contextlib.asynccontextmanager
async def raced_server(
    tmp_path: Path,
) -> AsyncIterator[tuple[AuthServer, str, Guard, httpx.AsyncClient]]:
    """A server with real argon2 and no throttle, an admin's token, a guard following its
    feed (on the server's clock) and an HTTP client: what every race here needs."""
    clock = FixedClock(1_700_000_000.0)
    env = {**REAL_ARGON2, **NO_THROTTLE, "AUTHGATE_AUDIENCE": "authgate"}
    with auth_server(tmp_path, clock=clock, env=env) as live:
        admin = live.make_admin()
        client_id, client_secret = live.new_client()
        guard = Guard(
            issuer=live.url,
            audience="authgate",
            client_id=client_id,
            client_secret=client_secret,
            clock=clock,
            feed_wait=2.0,
        )
        async with guard, httpx.AsyncClient(base_url=live.url, timeout=60) as http:
            yield live, admin, guard, http


@dataclass
class Tally:
    """What the races did."""

    races: Counter[str] = field(default_factory=Counter)
    minted: int = 0  # tokens issued at all
    stale: int = 0  # tokens minted from a read taken before the change
    fresh: int = 0  # tokens that carry the privileges the user has now
    stale_accepted_server: int = 0
    stale_accepted_guard: int = 0
    fresh_accepted_server: int = 0
    fresh_accepted_guard: int = 0
    details: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line for the test's output."""
        return (
            f"{sum(self.races.values())} races {dict(self.races)}: {self.minted} tokens, "
            f"{self.stale} stale (accepted: server {self.stale_accepted_server}, guard "
            f"{self.stale_accepted_guard}), {self.fresh} fresh (accepted: server "
            f"{self.fresh_accepted_server}, guard {self.fresh_accepted_guard})"
        )


async def _ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json() if response.content else {}
    return body


async def _synced(guard: Guard) -> None:
    """Read the feed until it has nothing more: every event committed so far is applied."""
    for _ in range(100):
        if await guard.sync() == 0:
            return
    raise AssertionError("the guard's feed never ran dry")


@dataclass
class Lane:
    """One user, raced again and again (its state restored between races)."""

    email: str
    user_id: str


async def setup_lanes(http: httpx.AsyncClient, admin: str, lanes: int) -> list[Lane]:
    """The role, and one user per lane holding it."""
    r = await http.post(
        "/admin/roles", json={"name": ROLE, "permissions": [PERMISSION]}, headers=bearer(admin)
    )
    assert r.status_code in (201, 409), r.text
    out = []
    for i in range(lanes):
        email = f"racer-{i}-{random.getrandbits(40):x}@example.com"
        body = await _ok(
            await http.post(
                "/admin/users",
                json={"email": email, "password": PASSWORD, "roles": [ROLE]},
                headers=bearer(admin),
            ),
            201,
        )
        out.append(Lane(email, body["id"]))
    return out


async def run_races(
    *,
    issuers: Sequence[httpx.AsyncClient],
    admin_http: httpx.AsyncClient,
    admin: str,
    guard: Guard,
    lanes: Sequence[Lane],
    races: int,
    seed: int,
) -> Tally:
    """``races`` races spread over ``lanes``; logins and refreshes go to ``issuers`` in turn
    (the change to ``admin_http``), every token is checked at every issuer and the guard."""
    tally = Tally()
    rng = random.Random(seed)
    plan = [(KINDS[i % len(KINDS)], rng.random()) for i in range(races)]
    queue: asyncio.Queue[tuple[int, str, float]] = asyncio.Queue()
    for index, (kind, spread) in enumerate(plan):
        queue.put_nowait((index, kind, spread))

    async def lane_loop(lane: Lane) -> None:
        while not queue.empty():
            index, kind, spread = queue.get_nowait()
            await one_race(lane, index, kind, spread)

    async def one_race(lane: Lane, index: int, kind: str, spread: float) -> None:
        issuer = issuers[index % len(issuers)]
        # Restore: the role held, the account enabled.
        await _ok(
            await admin_http.patch(
                f"/admin/users/{lane.user_id}",
                json={"roles": [ROLE], "disabled": False},
                headers=bearer(admin),
            )
        )
        action, change = kind.split("+")
        refresh_token = None
        if action == "refresh":
            pair = await _ok(
                await issuer.post("/auth/login", json={"email": lane.email, "password": PASSWORD})
            )
            refresh_token = pair["refresh_token"]
        window = 0.06 if action == "login" else 0.01

        async def request() -> httpx.Response:
            if refresh_token is None:
                return await issuer.post(
                    "/auth/login", json={"email": lane.email, "password": PASSWORD}
                )
            return await issuer.post("/auth/refresh", json={"refresh_token": refresh_token})

        async def privilege_change() -> None:
            await asyncio.sleep(spread * window)
            body = {"roles": []} if change == "demote" else {"disabled": True}
            await _ok(
                await admin_http.patch(
                    f"/admin/users/{lane.user_id}", json=body, headers=bearer(admin)
                )
            )

        got, _ = await asyncio.gather(request(), privilege_change())
        tally.races[kind] += 1
        if got.status_code != 200:
            assert got.status_code == 401, got.text  # disabled before the read: refused
            return
        token = got.json()["access_token"]
        tally.minted += 1
        claims = claims_of(token)
        stale = change == "disable" or PERMISSION in str(claims.get("scope", "")).split()
        if stale:
            tally.stale += 1
        else:
            tally.fresh += 1
        await _synced(guard)
        accepted_by = 0
        for check in issuers:
            me = await check.get("/auth/me", headers=bearer(token))
            if me.status_code == 200:
                accepted_by += 1
                assert stale or me.json()["permissions"] == []
            else:
                assert me.status_code == 401, me.text
        if stale and accepted_by:
            tally.stale_accepted_server += 1
            tally.details.append(f"race {index} ({kind}): a server accepted {claims}")
        if not stale:
            assert accepted_by == len(issuers), f"race {index}: a server refused a fresh token"
            tally.fresh_accepted_server += 1
        try:
            principal = await guard.verify(token)
        except InvalidToken:
            accepted_by_guard = False
        else:
            accepted_by_guard = True
            assert stale or PERMISSION not in principal.permissions
        if stale and accepted_by_guard:
            tally.stale_accepted_guard += 1
            tally.details.append(f"race {index} ({kind}): guard accepted {claims}")
        if not stale:
            assert accepted_by_guard, f"race {index}: the guard refused a fresh token"
            tally.fresh_accepted_guard += 1

    await asyncio.gather(*(lane_loop(lane) for lane in lanes))
    return tally
