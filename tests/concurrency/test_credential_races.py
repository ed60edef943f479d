"""Logins racing a password change or a deletion, over HTTP with real argon2.

- A password change ends every other session: a login whose password check passed with the
  old password, but whose session was opened while the change ran, used to survive it.
- A deletion kills every token: a login racing ``DELETE /admin/users/{id}`` used to get a
  token that every guard kept accepting (the deletion published no floor above it).
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import httpx
import pytest

from _support.http import bearer
from authgate.errors import InvalidToken

from ._privilege_race import PASSWORD, raced_server

TRIALS = 12
LOGINS = 6
NEW_PASSWORD = "a brand new passphrase 2026"


async def _login(http: httpx.AsyncClient, email: str, delay: float) -> httpx.Response:
    await asyncio.sleep(delay)
    return await http.post("/auth/login", json={"email": email, "password": PASSWORD})


@pytest.mark.anyio
async def test_stale_credential_login_racing_a_password_change_keeps_no_session(
    tmp_path: Path,
) -> None:
    rng = random.Random(7)
    survivors = opened = 0
    async with raced_server(tmp_path) as (_, _admin, _guard, http):
        for trial in range(TRIALS):
            email = f"pw-{trial}-{rng.getrandbits(32):x}@example.com"
            r = await http.post("/auth/register", json={"email": email, "password": PASSWORD})
            assert r.status_code == 201, r.text
            owner = r.json()

            async def change(token: str = owner["access_token"]) -> httpx.Response:
                await asyncio.sleep(rng.random() * 0.05)
                return await http.post(
                    "/auth/password",
                    json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
                    headers=bearer(token),
                )

            logins = [_login(http, email, rng.random() * 0.05) for _ in range(LOGINS)]
            changed, *answers = await asyncio.gather(change(), *logins)
            assert changed.status_code == 204, changed.text
            for answer in answers:
                if answer.status_code != 200:
                    assert answer.status_code == 401, answer.text
                    continue
                opened += 1
                again = await http.post(
                    "/auth/refresh", json={"refresh_token": answer.json()["refresh_token"]}
                )
                if again.status_code == 200:
                    survivors += 1
                else:
                    assert again.status_code == 401, again.text
    print(
        f"{TRIALS} changes raced by {TRIALS * LOGINS} logins: {opened} sessions opened "
        f"with the old password, {survivors} survived the change"
    )
    assert opened > 0  # the logins did race the change
    assert survivors == 0


@pytest.mark.anyio
async def test_stale_privileges_login_racing_a_deletion_dies_at_every_guard(
    tmp_path: Path,
) -> None:
    rng = random.Random(11)
    minted = accepted = 0
    async with raced_server(tmp_path) as (_, admin, guard, http):
        for trial in range(TRIALS):
            email = f"del-{trial}-{rng.getrandbits(32):x}@example.com"
            r = await http.post("/auth/register", json={"email": email, "password": PASSWORD})
            assert r.status_code == 201, r.text
            user_id = r.json()["user"]["id"]

            async def delete(user: str = user_id) -> httpx.Response:
                # Spread over the whole burst: six logins queue for two hashers.
                await asyncio.sleep(rng.random() * 0.2)
                return await http.delete(f"/admin/users/{user}", headers=bearer(admin))

            logins = [_login(http, email, rng.random() * 0.05) for _ in range(LOGINS)]
            deleted, *answers = await asyncio.gather(delete(), *logins)
            assert deleted.status_code == 204, deleted.text
            while await guard.sync():
                pass
            for answer in answers:
                if answer.status_code != 200:
                    continue
                minted += 1
                token = answer.json()["access_token"]
                me = await http.get("/auth/me", headers=bearer(token))
                assert me.status_code == 401, me.text
                try:
                    await guard.verify(token)
                except InvalidToken:
                    continue
                accepted += 1
    print(
        f"{TRIALS} deletions raced by {TRIALS * LOGINS} logins: {minted} tokens minted, "
        f"{accepted} accepted by the guard afterwards"
    )
    assert minted > 0
    assert accepted == 0
