"""A scripted issuer behind httpx.MockTransport: metadata, a JWKS and a revocation feed whose
answers and failures each test controls, and which counts what it was asked."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx

from authgate.clock import FixedClock
from authgate.guard import Guard
from authgate.jose import Key, KeySet, encode

ISSUER = "https://auth.test"
AUDIENCE = "api"
NOW = 1_700_000_000.0
CLIENT = ("cli_guard", "s3cret+/=")


class FakeIssuer:
    """The issuer's three endpoints; ``down`` makes every request fail to connect."""

    def __init__(self, keys: list[Key]) -> None:
        self.signing = keys
        self.published: list[dict[str, Any]] = [k.public().to_jwk() for k in keys]
        self.cache_control: str | None = "public, max-age=300"
        self.metadata: dict[str, Any] = {
            "issuer": ISSUER,
            "jwks_uri": f"{ISSUER}/jwks.json",
            "authgate_revocation_feed_endpoint": f"{ISSUER}/feed",
        }
        self.events: list[dict[str, Any]] = []
        self.down = False
        self.status: dict[str, int] = {}
        self.requests: Counter[str] = Counter()
        self.feed_params: list[dict[str, str]] = []
        self.authorizations: list[str | None] = []
        self.jwks_gate: asyncio.Event | None = None
        self.clamp_cursor = False
        self.page_limit: int | None = None  # at most this many events a page, as a server does
        self.later_pages_delay = 0.0  # seconds before answering a page after a cursor
        self.replay_from: int | None = None  # answer from this id whatever the cursor
        self.transport = httpx.MockTransport(self.handle)

    def publish(self, *keys: Key) -> None:
        """Replace the JWKS with these keys."""
        self.published = [k.public().to_jwk() for k in keys]

    def revoke(
        self,
        kind: str,
        value: str,
        *,
        expires_at: float,
        not_before: float | None = None,
        ver: Any = None,
    ) -> None:
        """Append an event to the feed (``ver`` as given, for a user event by version)."""
        event: dict[str, Any] = {
            "id": len(self.events) + 1,
            "kind": kind,
            "value": value,
            "expires_at": expires_at,
        }
        if not_before is not None:
            event["not_before"] = not_before
        if ver is not None:
            event["ver"] = ver
        self.events.append(event)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests[path] += 1
        if self.down:
            raise httpx.ConnectError("the issuer is down", request=request)
        if path in self.status:
            return httpx.Response(self.status[path], json={"error": "refused"})
        if path == "/.well-known/oauth-authorization-server":
            return httpx.Response(200, json=self.metadata)
        if path == "/jwks.json":
            if self.jwks_gate is not None:
                await self.jwks_gate.wait()
            headers = {} if self.cache_control is None else {"cache-control": self.cache_control}
            return httpx.Response(200, json={"keys": self.published}, headers=headers)
        if path == "/feed":
            self.authorizations.append(request.headers.get("authorization"))
            params = dict(request.url.params)
            self.feed_params.append(params)
            after = int(params["after"]) if "after" in params else None
            if self.replay_from is not None:
                after = self.replay_from  # a broken server: it ignores the cursor
            if after is not None and self.later_pages_delay:
                await asyncio.sleep(self.later_pages_delay)
            events = [e for e in self.events if after is None or e["id"] > after]
            events = events[: self.page_limit] if self.page_limit is not None else events
            latest = self.events[-1]["id"] if self.events else 0
            cursor = events[-1]["id"] if events else (after if after is not None else latest)
            if self.clamp_cursor:
                cursor = min(cursor, latest)
            return httpx.Response(200, json={"cursor": cursor, "events": events})
        return httpx.Response(404)

    def basic(self) -> str:
        raw = f"{CLIENT[0]}:{CLIENT[1]}".replace("+", "%2B").replace("/", "%2F")
        raw = raw.replace("=", "%3D")
        return "Basic " + base64.b64encode(raw.encode()).decode()


def token(key: Key, **changes: Any) -> str:
    """An access token of this issuer, signed by ``key``."""
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "usr_1",
        "aud": AUDIENCE,
        "exp": NOW + 600,
        "iat": NOW,
        "jti": "jti-1",
        "sid": "sid_1",
        "client_id": "authgate",
        "roles": [],
        "scope": "posts:read",
    }
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return encode(claims, key, typ="at+jwt")


def forged_kid(key: Key, kid: str) -> str:
    """A token whose header names ``kid`` (signed by ``key``: the kid is what matters)."""
    head = base64.urlsafe_b64encode(
        json.dumps({"alg": key.alg, "kid": kid, "typ": "at+jwt"}).encode()
    ).rstrip(b"=")
    body = token(key).split(".")[1].encode()
    sig = base64.urlsafe_b64encode(key.sign(head + b"." + body)).rstrip(b"=")
    return (head + b"." + body + b"." + sig).decode()


def fake_guard(fake: FakeIssuer, clock: FixedClock, **options: Any) -> Guard:
    """A guard on the fake issuer (revocation on unless options say otherwise)."""
    creds: dict[str, Any] = (
        {}
        if options.get("revocation") == "off"
        else {"client_id": CLIENT[0], "client_secret": CLIENT[1]}
    )
    return Guard(
        issuer=ISSUER,
        audience=AUDIENCE,
        clock=clock,
        transport=fake.transport,
        **creds,
        **options,
    )


def run_on(guard: Guard, make: Callable[[], Any]) -> Any:
    """Run a coroutine on the guard's own loop and wait for it."""
    return guard._runtime.submit(make()).result(10)


def local_set(*keys: Key) -> KeySet:
    """The public set of ``keys``."""
    return KeySet([k.public() for k in keys])
