"""Stale privileges at token issue: hundreds of demotions and disables during logins and
refreshes in flight, on SQLite and on PostgreSQL with two instances. No stale token may be
accepted anywhere: not by any instance, not by a guard following the feed.

The harness is ``_privilege_race.py``; each backend runs at least 500 races, a quarter of
each kind (login or refresh, raced by a demotion or a disable)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from _support.http import bearer, login
from authgate.guard import Guard
from scaleout._cluster import ISSUER, cluster

from ._privilege_race import NO_THROTTLE, REAL_ARGON2, Tally, raced_server, run_races, setup_lanes

RACES = 500
LANES = 4


def _assert_no_stale_token_accepted(tally: Tally) -> None:
    print(tally.line())  # the figures for the record (pytest -s)
    assert sum(tally.races.values()) >= RACES
    assert tally.stale_accepted_server == 0, tally.details[:5]
    assert tally.stale_accepted_guard == 0, tally.details[:5]
    # The races did race: stale tokens were minted, and fresh ones were accepted, so both
    # checks can fail.
    assert tally.stale > 0
    assert tally.fresh_accepted_server == tally.fresh > 0
    assert tally.fresh_accepted_guard == tally.fresh


async def _race(
    *,
    issuers: list[httpx.AsyncClient],
    admin_http: httpx.AsyncClient,
    admin: str,
    guard: Guard,
    seed: int,
) -> None:
    """The lanes (set up through the first issuer), RACES races, and the verdict."""
    lanes = await setup_lanes(issuers[0], admin, LANES)
    tally = await run_races(
        issuers=issuers,
        admin_http=admin_http,
        admin=admin,
        guard=guard,
        lanes=lanes,
        races=RACES,
        seed=seed,
    )
    _assert_no_stale_token_accepted(tally)


@pytest.mark.anyio
async def test_stale_privileges_race_sqlite(tmp_path: Path) -> None:
    async with raced_server(tmp_path) as (_, admin, guard, http):
        await _race(issuers=[http], admin_http=http, admin=admin, guard=guard, seed=1)


class _To(httpx.AsyncBaseTransport):
    """Sends every request for the cluster's issuer to one instance on loopback (the guard
    is configured with the issuer the tokens name; this stands in for DNS)."""

    def __init__(self, url: str) -> None:
        self._target = httpx.URL(url)
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(
            scheme=self._target.scheme, host=self._target.host, port=self._target.port
        )
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.mark.anyio
async def test_stale_privileges_race_postgresql_two_instances(tmp_path: Path) -> None:
    with cluster(tmp_path, **REAL_ARGON2, **NO_THROTTLE) as group:
        email = group.make_admin()
        with group["a"].client() as a:
            admin = login(a, email)["access_token"]
            made = a.post(
                "/admin/clients",
                json={"name": "guard", "scopes": ["authgate:revocations"]},
                headers=bearer(admin),
            )
            assert made.status_code == 201, made.text
            client: dict[str, Any] = made.json()
        guard = Guard(
            issuer=ISSUER,
            audience="authgate",
            client_id=client["client_id"],
            client_secret=client["client_secret"],
            transport=_To(group["b"].url),
            allow_insecure_http=True,
            feed_wait=2.0,
        )
        async with (
            guard,
            httpx.AsyncClient(base_url=group["a"].url, timeout=60) as a_http,
            httpx.AsyncClient(base_url=group["b"].url, timeout=60) as b_http,
        ):
            # Logins and refreshes at A and B in turn; every change at B.
            await _race(
                issuers=[a_http, b_http], admin_http=b_http, admin=admin, guard=guard, seed=2
            )
