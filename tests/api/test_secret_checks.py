"""Every secret check is throttled and audited: the current password of POST /auth/password
goes through the login throttle; client authentication (/oauth2/token, /oauth2/introspect,
the revocation feed) compares a keyed digest, never reaches the password hasher, and is
throttled per client id and per address."""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import json
import secrets
from collections.abc import Callable
from typing import Any

import httpx

from _support.http import PASSWORD, assert_problem, bearer, new_email
from authgate.storage.base import ClientRecord

from .conftest import ServerFactory
from .server import LiveServer

GROWING = [0.25, 0.5, 1.0, 2.0, 4.0]
CC = {"grant_type": "client_credentials"}
PROXIED = {"AUTHGATE_TRUSTED_PROXIES": "127.0.0.1"}


def new_address() -> str:
    """An address of the IPv6 documentation range that no other test uses."""
    return str(ipaddress.IPv6Address("2001:db8::") + secrets.randbits(64))


def at(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def make_client(live: LiveServer) -> tuple[str, str]:
    """A client_secret client with the feed scope; its id and secret."""
    record, secret = live.call(live.services.clients.create("svc", ["authgate:revocations"]))
    assert secret is not None
    return record.client_id, secret


def stored_secret(live: LiveServer, client_id: str) -> str:
    with live.db() as db:
        (row,) = db.execute(
            "SELECT secret_hash FROM clients WHERE client_id = ?", (client_id,)
        ).fetchall()
    return str(row[0])


def audit_events(live: LiveServer, event: str) -> list[dict[str, Any]]:
    with live.db() as db:
        rows = db.execute(
            "SELECT user_id, ip, detail FROM audit_events WHERE event = ? ORDER BY id", (event,)
        ).fetchall()
    return [{"user_id": u, "ip": ip, **json.loads(d or "{}")} for u, ip, d in rows]


def grant(live: LiveServer, client_id: str, secret: str, address: str) -> httpx.Response:
    return live.http.post("/oauth2/token", data=CC, auth=(client_id, secret), headers=at(address))


def assert_oauth(r: httpx.Response, status: int, error: str) -> None:
    assert r.status_code == status, r.text
    assert r.json() == {"error": error}
    assert "no-store" in r.headers["cache-control"]


# --- the current password ----------------------------------------------------------------


def test_unthrottled_secret_check_current_password_goes_through_the_login_throttle(
    make_server: ServerFactory,
) -> None:
    live = make_server(PROXIED)
    email, address = new_email(), new_address()
    body = live.register(email)
    token, user_id = body["access_token"], body["user"]["id"]
    change = {"current_password": "a wrong guess", "new_password": PASSWORD + " new"}
    for n in range(1, 10):  # failures 1..9: refused, delayed from the 5th on, audited
        r = live.http.post("/auth/password", json=change, headers={**bearer(token), **at(address)})
        assert_problem(r, 401, "invalid_credentials")
        assert live.sleeps.delays == GROWING[: max(0, n - 4)], f"after failure {n}"
    events = audit_events(live, "password_check_failed")
    assert [(e["user_id"], e["ip"]) for e in events] == [(user_id, address)] * 9
    # The 10th attempt is locked, the right password too, and the login shares the lock.
    right = {"current_password": PASSWORD, "new_password": PASSWORD + " new"}
    r = live.http.post("/auth/password", json=right, headers=bearer(token))
    assert_problem(r, 429, "too_many_attempts")
    assert int(r.headers["retry-after"]) == int(live.settings.throttle_window) + 1
    login = live.http.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert_problem(login, 429, "too_many_attempts")
    live.clock.advance(live.settings.throttle_window + 1)
    token = live.login(email)["access_token"]  # the old one has expired meanwhile
    r = live.http.post("/auth/password", json=right, headers=bearer(token))
    assert r.status_code == 204, r.text
    live.login(email, PASSWORD + " new")


def test_unthrottled_secret_check_a_right_current_password_clears_the_failures(
    server: LiveServer,
) -> None:
    email = new_email()
    token = server.register(email)["access_token"]
    wrong = {"current_password": "a wrong guess", "new_password": PASSWORD + " new"}
    for _ in range(4):
        r = server.http.post("/auth/password", json=wrong, headers=bearer(token))
        assert_problem(r, 401, "invalid_credentials")
    right = {"current_password": PASSWORD, "new_password": PASSWORD + " new"}
    assert server.http.post("/auth/password", json=right, headers=bearer(token)).status_code == 204
    for _ in range(4):
        r = server.http.post("/auth/login", json={"email": email, "password": "wrong again"})
        assert_problem(r, 401, "invalid_credentials")
    assert server.sleeps.delays == []  # never reached the 5th failure in a row


# --- client authentication ---------------------------------------------------------------


def test_hasher_exhaustion_client_auth_flood_never_reaches_the_hasher(
    make_server: ServerFactory,
) -> None:
    """A tiny hasher (one running, one queued) and no client throttle in the way: a flood
    of bad client authentication on every endpoint that takes it costs no hash at all, so
    logins made during the flood all succeed."""
    live = make_server(
        {
            "AUTHGATE_HASH_CONCURRENCY": "1",
            "AUTHGATE_HASH_QUEUE": "1",
            "AUTHGATE_MAX_IN_FLIGHT": "1000",  # the flood must meet the hasher, not the door
            "AUTHGATE_THROTTLE_CLIENT_LIMIT": "100000",
            "AUTHGATE_THROTTLE_CLIENT_IP_LIMIT": "100000",
        }
    )
    client_id, _ = make_client(live)
    email = new_email()
    live.register(email)
    flood: list[dict[str, Any]] = []
    for n in range(40):
        flood += [
            {"url": "/oauth2/token", "data": CC, "auth": (f"cli_nobody{n}", "x" * 43)},
            {"url": "/oauth2/token", "data": CC, "auth": (client_id, f"wrong {n}")},
            {
                "url": "/oauth2/token",
                "data": {**CC, "client_id": client_id, "client_secret": f"wrong {n}"},
            },
            {
                "url": "/oauth2/introspect",
                "data": {"token": "x"},
                "auth": (client_id, f"wrong {n}"),
            },
        ]
    checks_before = live.services.hasher.started

    async def run() -> tuple[list[httpx.Response], list[httpx.Response], list[httpx.Response]]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=live.url, timeout=60.0, limits=limits) as c:

            async def logins() -> list[httpx.Response]:
                answers = []
                for _ in range(6):
                    answers.append(
                        await c.post("/auth/login", json={"email": email, "password": PASSWORD})
                    )
                return answers

            async def feed() -> list[httpx.Response]:
                return list(
                    await asyncio.gather(
                        *(
                            c.get("/auth/revocations", auth=(client_id, f"wrong {n}"))
                            for n in range(40)
                        )
                    )
                )

            oauth, feed_answers, login_answers = await asyncio.gather(
                asyncio.gather(*(c.post(**call) for call in flood)), feed(), logins()
            )
            return list(oauth), feed_answers, login_answers

    oauth, feed_answers, login_answers = asyncio.run(run())
    assert collections.Counter(r.status_code for r in oauth) == {401: len(flood)}
    for r in oauth:
        assert r.json() == {"error": "invalid_client"}
    for r in feed_answers:
        assert_problem(r, 401, "invalid_credentials")
    assert [r.status_code for r in login_answers] == [200] * 6
    assert live.services.hasher.started - checks_before == 6  # the logins' checks only


def test_client_auth_throttle_per_address(make_server: ServerFactory) -> None:
    live = make_server({**PROXIED, "AUTHGATE_THROTTLE_CLIENT_IP_LIMIT": "5"})
    client_id, secret = make_client(live)
    address = new_address()
    for n in range(5):
        assert_oauth(grant(live, f"cli_nobody{n}", "x" * 43, address), 401, "invalid_client")
    refused = grant(live, client_id, secret, address)  # even the right secret, from there
    assert_oauth(refused, 429, "slow_down")
    assert int(refused.headers["retry-after"]) == int(live.settings.throttle_window) + 1
    feed = live.http.get("/auth/revocations", auth=(client_id, secret), headers=at(address))
    assert_problem(feed, 429, "too_many_attempts")
    assert grant(live, client_id, secret, new_address()).status_code == 200  # another address
    live.clock.advance(live.settings.throttle_window + 1)
    assert grant(live, client_id, secret, address).status_code == 200


def test_client_auth_throttle_per_client_id_never_locks_out_the_right_secret(
    make_server: ServerFactory,
) -> None:
    """Wrong secrets for one client id, from many addresses: 429 after the limit. The right
    secret still works: 256 random bits cannot be guessed, and a lock would let anyone who
    knows a client id cut the service off."""
    live = make_server({**PROXIED, "AUTHGATE_THROTTLE_CLIENT_LIMIT": "3"})
    client_id, secret = make_client(live)
    unknown = "cli_" + secrets.token_urlsafe(12)
    answers: dict[str, list[httpx.Response]] = {client_id: [], unknown: []}
    for cid in (client_id, unknown):
        for n in range(5):
            answers[cid].append(grant(live, cid, f"wrong secret {n}", new_address()))
    for cid in (client_id, unknown):  # a known id and an unknown one answer alike
        assert [r.status_code for r in answers[cid]] == [401, 401, 401, 429, 429]
        for r in answers[cid][3:]:
            assert_oauth(r, 429, "slow_down")
    for known, other in zip(answers[client_id], answers[unknown], strict=True):
        assert known.content == other.content
        assert known.headers.get("retry-after") == other.headers.get("retry-after")
    assert grant(live, client_id, secret, new_address()).status_code == 200


def test_client_auth_failures_are_audited(make_server: ServerFactory) -> None:
    live = make_server(PROXIED)
    client_id, _ = make_client(live)
    address = new_address()
    grant(live, client_id, "a wrong secret", address)
    grant(live, "cli_nobody", "a wrong secret", address)
    live.http.get("/auth/revocations", auth=(client_id, "wrong"), headers=at(address))
    events = audit_events(live, "client_auth_failed")
    assert [(e["client_id"], e["ip"]) for e in events] == [
        (client_id, address),
        (None, address),
        (client_id, address),
    ]
    text = json.dumps(events)
    assert "a wrong secret" not in text


def _legacy_client(live: LiveServer) -> tuple[str, str]:
    """A client whose secret an older version stored as an argon2id hash."""
    secret = secrets.token_urlsafe(32)
    client_id = "cli_" + secrets.token_urlsafe(12)

    async def create() -> None:
        svc = live.services
        record = ClientRecord(
            client_id=client_id,
            name="legacy",
            scopes=("authgate:revocations",),
            created_at=live.clock.now(),
            secret_hash=await svc.hasher.hash(secret),
        )
        await svc.storage.create_client(record)

    live.call(create())
    assert stored_secret(live, client_id).startswith("$argon2id$")
    return client_id, secret


def checks(live: LiveServer, action: Callable[[], httpx.Response]) -> tuple[httpx.Response, int]:
    """The answer of ``action`` and how many hashes it made."""
    before = live.services.hasher.started
    r = action()
    return r, live.services.hasher.started - before


def test_client_secret_stored_as_argon2id_is_verified_once_then_kept_as_a_keyed_digest(
    make_server: ServerFactory,
) -> None:
    live = make_server(PROXIED)
    client_id, secret = _legacy_client(live)
    r, hashes = checks(live, lambda: grant(live, client_id, secret, new_address()))
    assert (r.status_code, hashes) == (200, 1)
    assert stored_secret(live, client_id).startswith("hmac-sha256$")
    r, hashes = checks(live, lambda: grant(live, client_id, secret, new_address()))
    assert (r.status_code, hashes) == (200, 0)
    r, hashes = checks(live, lambda: grant(live, client_id, "wrong", new_address()))
    assert (r.status_code, hashes) == (401, 0)


def test_client_secret_stored_as_argon2id_costs_no_hash_over_the_limit(
    make_server: ServerFactory,
) -> None:
    live = make_server({**PROXIED, "AUTHGATE_THROTTLE_CLIENT_LIMIT": "2"})
    client_id, secret = _legacy_client(live)
    for _ in range(2):
        r, hashes = checks(live, lambda: grant(live, client_id, "wrong", new_address()))
        assert (r.status_code, hashes) == (401, 1)
    for attempt in ("wrong", secret):
        r, hashes = checks(live, lambda a=attempt: grant(live, client_id, a, new_address()))
        assert (r.status_code, hashes) == (429, 0)
    live.clock.advance(live.settings.throttle_window + 1)
    r, hashes = checks(live, lambda: grant(live, client_id, secret, new_address()))
    assert (r.status_code, hashes) == (200, 1)
    assert stored_secret(live, client_id).startswith("hmac-sha256$")
