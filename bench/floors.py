"""The framework floors under issue 16's guard and server targets, measured in-process.

Run: ``.venv/bin/python bench/floors.py [--quick]``

Each app is driven through its ASGI callable directly (no socket, no HTTP parser), so that
the figures are the app's own work per request: microseconds per request, the median of
interleaved rounds (one round of each app in turn). Over HTTP the server adds the same
fixed cost to every row, so an in-process ratio is a lower bound of the one ``wrk`` sees.

* FastAPI, as ``bench/guard.py`` builds it: no auth (a); one empty dependency (a'); the
  guard's dependency (b); the guard's decorator. The dependency's cost over an empty
  dependency is the guard's own work; an empty dependency's cost is FastAPI's.
* Starlette: no auth, and the guard's middleware with the decorator.
* FastAPI's automatic OpenTelemetry export, on (FastAPI's default) and off.
* authgate's own app, ``GET /healthz`` and ``GET /auth/me``: its middleware stack and its
  router, against a bare FastAPI route.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _harness.report import machine_lines, say

HS_SECRET = "bench floors: an HMAC secret of more than 32 bytes"
ISSUER = "https://issuer.example"
os.environ.update(
    BENCH_ISSUER=ISSUER, BENCH_HS_SECRET_TEXT=HS_SECRET, BENCH_ES_PEM="-", BENCH_CLIENT_ID="-"
)

import guard as guard_bench  # noqa: E402  (reads the BENCH_ variables above)
from authgate.jose import Key, encode  # noqa: E402

Asgi = Callable[..., Awaitable[None]]


def _token() -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": guard_bench.AUDIENCE,
        "sub": "user-1",
        "exp": now + 3600,
        "iat": now,
        "jti": "jti-1",
        "client_id": "web",
        "scope": guard_bench.PERMISSION,
        "sid": "sid-1",
        "roles": [],
        "permissions": [guard_bench.PERMISSION],
    }
    return encode(claims, Key.from_secret(HS_SECRET.encode(), kid="bench-hs"), typ="at+jwt")


async def _start(app: Asgi) -> Callable[[], Awaitable[None]]:
    """Run the app's lifespan startup (the guard starts there); return its shutdown."""
    queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    await queue.put({"type": "lifespan.startup"})
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.get_running_loop().create_task(app(scope, queue.get, send))
    for _ in range(500):
        if sent:
            break
        await asyncio.sleep(0.01)
    if not sent or sent[0]["type"] != "lifespan.startup.complete":
        raise SystemExit(f"an app did not start: {sent}")

    async def stop() -> None:
        await queue.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(task, timeout=10)

    return stop


def _driver(app: Asgi, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> Any:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def run(n: int) -> float:
        statuses.clear()
        started = time.perf_counter()
        for _ in range(n):
            await app(dict(scope), receive, send)
        elapsed = time.perf_counter() - started
        if set(statuses) != {200}:
            raise SystemExit(f"{method} {path} answered {sorted(set(statuses))}")
        return elapsed / n * 1e6

    return run


def _bare_fastapi(telemetry: bool) -> Asgi:
    from fastapi import FastAPI

    off = {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI() if telemetry else FastAPI(telemetry=off)  # type: ignore[arg-type]

    @app.get("/posts")
    async def posts() -> dict[str, bool]:
        return {"ok": True}

    return app


def _authgate(tmp: Path) -> Asgi:
    from authgate.server.app import create_app
    from authgate.settings import Settings
    from authgate.wiring import new_master_key

    env = {
        "AUTHGATE_MASTER_KEY": new_master_key(),
        "AUTHGATE_DATABASE_URL": f"sqlite:///{tmp / 'floors.db'}",
        "AUTHGATE_ARGON2_MEMORY_KIB": "1024",
        "AUTHGATE_ARGON2_TIME_COST": "1",
    }
    return create_app(Settings.from_env(env, config_dir=tmp))


async def _access_token(app: Asgi) -> str:
    import json

    body = json.dumps({"email": "floors@example.com", "password": guard_bench.PASSWORD}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/auth/register",
        "raw_path": b"/auth/register",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    token: str = json.loads(b"".join(chunks))["access_token"]
    return token


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    args = parser.parse_args()
    rounds, per_round = (5, 1000) if args.quick else (11, 3000)

    for line in machine_lines("fastapi", "starlette"):
        say(line)
    token = _token()
    auth = [(b"authorization", f"Bearer {token}".encode())]
    apps: dict[str, Asgi] = {
        "FastAPI (a) no auth": guard_bench.fastapi_app("none", {}),
        "FastAPI (a') one empty dependency": guard_bench.fastapi_app("empty-dependency", {}),
        "FastAPI (b) guard dependency, HS256": guard_bench.fastapi_app(
            "guard-hs256", guard_bench._config()
        ),
        "FastAPI guard decorator, HS256": guard_bench.fastapi_app(
            "guard-hs256-decorator", guard_bench._config()
        ),
        "Starlette (a) no auth": guard_bench.starlette_app("none", {}),
        "Starlette (b) guard middleware, HS256": guard_bench.starlette_app(
            "guard-hs256", guard_bench._config()
        ),
        "FastAPI route, telemetry on (default)": _bare_fastapi(telemetry=True),
        "FastAPI route, telemetry off": _bare_fastapi(telemetry=False),
    }
    with tempfile.TemporaryDirectory() as tmp:
        own = _authgate(Path(tmp))
        stops = [await _start(app) for app in (*apps.values(), own)]
        own_token = await _access_token(own)  # its console mail is printed on stderr
        runs = {name: _driver(app, "GET", "/posts", auth) for name, app in apps.items()}
        runs["authgate GET /healthz"] = _driver(own, "GET", "/healthz", [])
        runs["authgate GET /auth/me"] = _driver(
            own, "GET", "/auth/me", [(b"authorization", f"Bearer {own_token}".encode())]
        )
        for run in runs.values():  # warm-up
            await run(200)
        samples: dict[str, list[float]] = {name: [] for name in runs}
        gc.disable()
        try:
            for _ in range(rounds):
                for name, run in runs.items():
                    samples[name].append(await run(per_round))
        finally:
            gc.enable()
        for stop in stops:
            await stop()
    us = {name: statistics.median(values) for name, values in samples.items()}

    say()
    say(f"in-process µs per request, median of {rounds} interleaved rounds of {per_round}")
    width = max(map(len, us)) + 2
    for name, value in us.items():
        say(f"  {name:<{width}}{value:8.1f}")

    def ratio(a: str, b: str) -> float:
        return us[a] / us[b]

    say()
    say("ratios (in-process; over HTTP the server's fixed cost raises each one):")
    pairs = [
        (
            "FastAPI a/a': one empty dependency alone",
            "FastAPI (a) no auth",
            "FastAPI (a') one empty dependency",
        ),
        (
            "FastAPI a/b: the guard dependency",
            "FastAPI (a) no auth",
            "FastAPI (b) guard dependency, HS256",
        ),
        (
            "FastAPI a'/b: the guard over an empty dependency",
            "FastAPI (a') one empty dependency",
            "FastAPI (b) guard dependency, HS256",
        ),
        ("FastAPI a/decorator", "FastAPI (a) no auth", "FastAPI guard decorator, HS256"),
        (
            "Starlette a/b: middleware and decorator",
            "Starlette (a) no auth",
            "Starlette (b) guard middleware, HS256",
        ),
        (
            "telemetry off/on",
            "FastAPI route, telemetry off",
            "FastAPI route, telemetry on (default)",
        ),
    ]
    for label, a, b in pairs:
        say(f"  {label:<52}{ratio(a, b):6.3f}   (+{us[b] - us[a]:.1f} µs)")
    say()
    say(
        "The guard's own work is the difference between its rows and the no-auth rows; "
        "bench/guard.py measures the same apps over HTTP (uvicorn, wrk), where the "
        "server's cost per request is added to each."
    )
    say(
        f"authgate's /healthz costs {us['authgate GET /healthz']:.1f} µs in-process against "
        f"{us['FastAPI route, telemetry off']:.1f} µs for a bare FastAPI route: its middleware "
        "stack and the walk over the routers that come before the health check's."
    )


if __name__ == "__main__":
    asyncio.run(main())
