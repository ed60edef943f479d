"""Key rotation end to end, through FastAPI over HTTP: a rotated or imported key verifies
without a restart, and a flood of random kids costs at most one JWKS fetch per cooldown,
counted at the server."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from authgate.guard import Guard
from authgate.jose import Key

from ._apps import fastapi_app
from ._support import AppServer, AuthServer, bearer, make_guard

PASSWORD = "correct horse battery staple 42"
INVALID = 'Bearer error="invalid_token"'


@pytest.fixture(scope="module")
def guard(auth: AuthServer, creds: tuple[str, str]) -> Iterator[Guard]:
    g = make_guard(auth, creds, jwks_cooldown=30)
    yield g
    g.close_sync()


@pytest.fixture(scope="module")
def api(guard: Guard) -> Iterator[httpx.Client]:
    with AppServer(fastapi_app(guard, middleware=True)) as http:
        yield http


@pytest.fixture(scope="module")
def user(auth: AuthServer) -> str:
    async def create() -> None:
        await auth.services.accounts.create_user("rotating@example.com", PASSWORD)

    auth.call(create())
    return "rotating@example.com"


def kid_of(token: str) -> str:
    head = token.split(".")[0]
    kid: str = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]
    return kid


def random_kid_token(attacker: Key) -> str:
    head = base64.urlsafe_b64encode(
        json.dumps({"alg": "ES256", "kid": uuid.uuid4().hex, "typ": "at+jwt"}).encode()
    ).rstrip(b"=")
    body = base64.urlsafe_b64encode(b'{"sub":"x"}').rstrip(b"=")
    sig = base64.urlsafe_b64encode(attacker.sign(head + b"." + body)).rstrip(b"=")
    return (head + b"." + body + b"." + sig).decode()


def keep_fresh(auth: AuthServer, guard: Guard, seconds: float) -> None:
    """Move the shared clock, then let the feed answer (its staleness is clock time)."""
    auth.clock.advance(seconds)
    asyncio.run(guard.sync())


def test_a_scheduled_rotation_needs_no_fetch(
    api: httpx.Client, auth: AuthServer, guard: Guard, user: str, admin: str
) -> None:
    old = auth.login(user, PASSWORD)["access_token"]
    assert api.get("/me", headers=bearer(old)).status_code == 200
    fetches = auth.jwks_fetches()
    r = auth.http.post("/admin/keys/rotate", headers=bearer(admin))
    assert r.status_code == 200, r.text
    new = auth.login(user, PASSWORD)["access_token"]
    assert kid_of(new) != kid_of(old)
    # The next key was published before it signed: the guard already holds it.
    assert api.get("/me", headers=bearer(new)).status_code == 200
    assert api.get("/me", headers=bearer(old)).status_code == 200  # retiring, still valid
    assert auth.jwks_fetches() == fetches


def test_an_imported_key_verifies_after_one_fetch_without_restart(
    api: httpx.Client, auth: AuthServer, guard: Guard, user: str
) -> None:
    keep_fresh(auth, guard, 30)  # the cooldown since the start has passed
    fetches = auth.jwks_fetches()
    imported = Key.generate("ES256")
    auth.call(auth.services.keyring.import_key(imported, activate=True))
    token = auth.login(user, PASSWORD)["access_token"]
    assert kid_of(token) == imported.kid
    assert api.get("/me", headers=bearer(token)).status_code == 200
    assert auth.jwks_fetches() == fetches + 1
    for _ in range(50):  # verified and cached: no more fetches
        assert api.get("/me", headers=bearer(token)).status_code == 200
    assert auth.jwks_fetches() == fetches + 1


def test_an_imported_key_waits_for_the_cooldown(
    api: httpx.Client, auth: AuthServer, guard: Guard, user: str
) -> None:
    keep_fresh(auth, guard, 30)
    first = Key.generate("ES256")
    auth.call(auth.services.keyring.import_key(first, activate=True))
    assert (
        api.get("/me", headers=bearer(auth.login(user, PASSWORD)["access_token"])).status_code
        == 200
    )
    fetches = auth.jwks_fetches()
    # A second import within the cooldown: refused until the cooldown has passed.
    second = Key.generate("ES256")
    auth.call(auth.services.keyring.import_key(second, activate=True))
    token = auth.login(user, PASSWORD)["access_token"]
    r = api.get("/me", headers=bearer(token))
    assert (r.status_code, r.headers["www-authenticate"]) == (401, INVALID)
    assert auth.jwks_fetches() == fetches
    keep_fresh(auth, guard, 29)
    assert api.get("/me", headers=bearer(token)).status_code == 401
    keep_fresh(auth, guard, 1)
    assert api.get("/me", headers=bearer(token)).status_code == 200
    assert auth.jwks_fetches() == fetches + 1


def test_a_thousand_random_kids_cost_at_most_one_fetch_per_cooldown(
    api: httpx.Client, auth: AuthServer, guard: Guard
) -> None:
    attacker = Key.generate("ES256")
    keep_fresh(auth, guard, 30)
    fetches = auth.jwks_fetches()
    for _ in range(1000):
        r = api.get("/me", headers=bearer(random_kid_token(attacker)))
        assert (r.status_code, r.headers["www-authenticate"]) == (401, INVALID)
    assert auth.jwks_fetches() == fetches + 1
    for _ in range(1000):  # same window: no more
        assert api.get("/me", headers=bearer(random_kid_token(attacker))).status_code == 401
    assert auth.jwks_fetches() == fetches + 1
    keep_fresh(auth, guard, 30)  # the next window: at most one more
    for _ in range(1000):
        assert api.get("/me", headers=bearer(random_kid_token(attacker))).status_code == 401
    assert auth.jwks_fetches() == fetches + 2
