"""What the authgate guard costs a resource server, against no auth, PyJWT and Node.

Run: ``.venv/bin/python bench/guard.py [--quick] [--duration S] [--rounds R]``

Needs ``wrk`` (Debian: ``apt-get install wrk``), ``taskset``, Node 20+ and
``npm ci --prefix bench/node`` (express and jsonwebtoken, from its lockfile).

It starts a real ``authgate serve`` (see ``_serve.py``; audience ``api``, access tokens of
one hour), creates a role with ``posts:read``, users with that role and a service client with
``authgate:revocations`` through the CLI, then mints 10,001 distinct ES256 access tokens
through the server (``/auth/refresh`` chains) and as many HS256 tokens signed locally with
the same claims. Every app server answers ``GET /posts`` with the same small JSON body; only
the authentication differs, and every authenticating variant checks ``posts:read``:

* (a) no auth; for FastAPI also (a') no auth but one empty dependency: the floor that
  FastAPI's dependency machinery alone costs any dependency;
* (b) the authgate guard: ES256 with the server's JWKS and revocation feed, and HS256 with
  a local key (``revocation="off"``). FastAPI: the ``guard.require`` dependency, and the
  ``guard.starlette_required`` decorator on the endpoint; Starlette: the ASGI middleware
  and ``guard.starlette_required``;
* (c) the usual PyJWT pattern: ``HTTPBearer`` + ``jwt.decode`` in an async dependency
  (FastAPI) or in the endpoint (Starlette), with the key loaded once;
* (d) the anchors: Node express + jsonwebtoken, and bare ``node:http`` + jsonwebtoken, with
  the key passed as the guides pass it (the secret string; the PEM text), and for HS256
  also as a KeyObject made once (jsonwebtoken's fast form: it otherwise rebuilds the key on
  every call).

Each Python app runs on uvicorn (uvloop, httptools, one process). All app servers are
started at once, pinned to core 0 with ``taskset``; ``wrk`` (one thread) and the authgate
server are pinned to core 1. Every variant is measured with one hot token and with 10,000
distinct tokens in rotation (a wrk Lua script). A warm-up (not counted) walks the
rotation through every guard for 10 s, long enough to fill its cache (a steady state). Rates
on a shared virtual machine drift by tens of percent from one run to the next, so the rows
are measured in many short rounds, each in a shuffled order, and the comparisons use the
requests served per CPU-second of the app server process (utime + stime from ``/proc``:
what its one core can serve, which other processes on the machine hardly change): a ratio
is the median of the ratios of rows measured in the same round. Wall-clock req/s and
latencies are shown too (the round with the median rate), and so is the CPU that other
processes used during the runs (``/proc/stat`` minus the processes of the bench). Any
non-2xx answer invalidates a row.

Then, in this process, with a guard on the same server:

* revocation propagation: 200 tokens revoked one by one (RFC 7009), each timed from the
  revoke request (and from its answer) until the guard refuses the token; p50 and p99;
* guard memory (tracemalloc): 100,000 revocation entries, then a full token cache of 10,000
  ES256 user tokens.

A missed target is reported as MISS; the exit status is 0 all the same (performance is
reported, not asserted).
"""

# No `from __future__ import annotations`: FastAPI evaluates the routes' annotations, and
# they name local dependencies.

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import os
import platform
import random
import re
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
AUDIENCE = "api"
PERMISSION = "posts:read"
BODY = {"ok": True}
PASSWORD = "bench: a long enough passphrase 7"
DISTINCT = 10_000
USERS = 8
APP_CORE, LOAD_CORE = 0, 1

ROTATE_LUA = """
local tokens = {}
local i = 0
function init(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = "Bearer " .. line end
  i = math.random(#tokens)
end
function request()
  i = i % #tokens + 1
  return wrk.format("GET", nil, { ["Authorization"] = tokens[i] })
end
"""


# --- the app servers (each runs in its own process: --app FRAMEWORK:AUTH) --------------------


def _config() -> dict[str, str]:
    return {k[6:].lower(): v for k, v in os.environ.items() if k.startswith("BENCH_")}


def _guard(auth: str, cfg: dict[str, str]) -> Any:
    from authgate.guard import Guard
    from authgate.jose import Key

    if auth == "guard-es256":
        return Guard(
            issuer=cfg["issuer"],
            audience=AUDIENCE,
            client_id=cfg["client_id"],
            client_secret=cfg["client_secret"],
        )
    secret = cfg["hs_secret_text"].encode()
    return Guard(
        keys=Key.from_secret(secret, kid="bench-hs"),
        issuer=cfg["issuer"],
        audience=AUDIENCE,
        revocation="off",
    )


def _pyjwt_key(auth: str, cfg: dict[str, str]) -> tuple[Any, list[str]]:
    if auth == "pyjwt-hs256":
        return cfg["hs_secret_text"].encode(), ["HS256"]
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    return load_pem_public_key(cfg["es_pem"].encode()), ["ES256"]


def fastapi_app(auth: str, cfg: dict[str, str]) -> Any:
    """FastAPI, as its tutorials write it."""
    from typing import Annotated

    import jwt
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

    from authgate.guard import Principal

    if auth == "none":
        app = FastAPI()

        @app.get("/posts")
        async def posts_open():  # type: ignore[no-untyped-def]
            return BODY

    elif auth == "empty-dependency":
        app = FastAPI()

        async def nothing() -> int:
            return 0

        @app.get("/posts")
        async def posts_empty_dependency(n: Annotated[int, Depends(nothing)]):  # type: ignore[no-untyped-def]
            return BODY

    elif auth.endswith("-decorator"):
        guard = _guard(auth.removesuffix("-decorator"), cfg)
        app = FastAPI(lifespan=guard.lifespan)

        @app.get("/posts")
        @guard.starlette_required(PERMISSION)
        async def posts_decorated(request: Request):  # type: ignore[no-untyped-def]
            return BODY

    elif auth.startswith("guard"):
        guard = _guard(auth, cfg)
        app = FastAPI(lifespan=guard.lifespan)
        reader = guard.require(PERMISSION)

        @app.get("/posts")
        async def posts_guarded(user: Annotated[Principal, Depends(reader)]):  # type: ignore[no-untyped-def]
            return BODY

    else:
        key, algorithms = _pyjwt_key(auth, cfg)
        bearer = HTTPBearer()
        app = FastAPI()

        async def current_user(
            creds: Annotated[HTTPAuthorizationCredentials, Depends(bearer)],
        ) -> dict[str, Any]:
            try:
                claims: dict[str, Any] = jwt.decode(
                    creds.credentials,
                    key,
                    algorithms=algorithms,
                    audience=AUDIENCE,
                    issuer=cfg["issuer"],
                )
            except jwt.PyJWTError as exc:
                raise HTTPException(401, "invalid token", {"WWW-Authenticate": "Bearer"}) from exc
            if PERMISSION not in str(claims.get("scope", "")).split():
                raise HTTPException(403, "forbidden")
            return claims

        @app.get("/posts")
        async def posts_pyjwt(user: Annotated[dict[str, Any], Depends(current_user)]):  # type: ignore[no-untyped-def]
            return BODY

    return app


def starlette_app(auth: str, cfg: dict[str, str]) -> Any:
    """Bare Starlette."""
    import jwt
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    if auth == "none":

        async def posts(request: Request) -> Response:
            return JSONResponse(BODY)

        return Starlette(routes=[Route("/posts", posts)])

    if auth.startswith("guard"):
        guard = _guard(auth, cfg)

        @guard.starlette_required(PERMISSION)
        async def guarded(request: Request) -> Response:
            return JSONResponse(BODY)

        app = Starlette(routes=[Route("/posts", guarded)])
        app.add_middleware(guard.asgi_middleware)  # starts the guard in the lifespan
        return app

    key, algorithms = _pyjwt_key(auth, cfg)

    async def with_pyjwt(request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
        try:
            claims = jwt.decode(
                token, key, algorithms=algorithms, audience=AUDIENCE, issuer=cfg["issuer"]
            )
        except jwt.PyJWTError:
            return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
        if PERMISSION not in str(claims.get("scope", "")).split():
            return Response(status_code=403)
        return JSONResponse(BODY)

    return Starlette(routes=[Route("/posts", with_pyjwt)])


def run_app(name: str, port: int) -> None:
    """The child process: build one app and serve it."""
    import uvicorn

    framework, auth = name.split(":")
    builder = fastapi_app if framework == "fastapi" else starlette_app
    uvicorn.run(
        builder(auth, _config()),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
    )


# --- orchestration ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Variant:
    framework: str  # FastAPI, Starlette, Node
    row: str  # a, b, c, d
    label: str
    command: list[str]  # with {port}
    tokens: str  # which tokens it verifies: es or hs

    @property
    def key(self) -> str:
        return f"{self.framework}/{self.label}"


def variants() -> list[Variant]:
    py = [sys.executable, str(Path(__file__).resolve()), "--app"]
    out: list[Variant] = []
    for framework in ("fastapi", "starlette"):
        title = "FastAPI" if framework == "fastapi" else "Starlette"
        controls = [("a'", "empty-dependency", "no auth, one empty dependency", "es")]
        decorated = [
            ("b", "guard-es256-decorator", "authgate guard, ES256, decorator", "es"),
            ("b", "guard-hs256-decorator", "authgate guard, HS256, decorator", "hs"),
        ]
        for row, auth, label, tokens in (
            ("a", "none", "no auth", "es"),
            *(controls if framework == "fastapi" else []),
            ("b", "guard-es256", "authgate guard, ES256 (JWKS + feed)", "es"),
            ("b", "guard-hs256", "authgate guard, HS256 (local key)", "hs"),
            *(decorated if framework == "fastapi" else []),
            ("c", "pyjwt-es256", "PyJWT dependency, ES256", "es"),
            ("c", "pyjwt-hs256", "PyJWT dependency, HS256", "hs"),
        ):
            label = label if framework == "fastapi" else label.replace("dependency", "in endpoint")
            out.append(Variant(title, row, label, [*py, f"{framework}:{auth}", "{port}"], tokens))
    node = shutil.which("node") or "node"
    for framework, title in (("express", "express"), ("http", "node:http")):
        for auth, label, tokens in (
            ("none", "no auth", "es"),
            ("hs256", "jsonwebtoken, HS256", "hs"),
            ("hs256-keyobject", "jsonwebtoken, HS256, KeyObject", "hs"),
            ("es256", "jsonwebtoken, ES256", "es"),
        ):
            out.append(
                Variant(
                    f"Node {title}",
                    "d" if auth != "none" else "a",
                    label,
                    [node, str(NODE_DIR / "server.mjs"), framework, auth, "{port}"],
                    tokens,
                )
            )
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pin(pid: int, core: int) -> None:
    """Pin every thread of ``pid`` to ``core``."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(tid), {core})


@dataclass(frozen=True, slots=True)
class Running:
    port: int
    pid: int


@contextlib.contextmanager
def app_server(variant: Variant, env: dict[str, str], log: Path) -> Iterator[Running]:
    """Start one app server pinned to the app core; stop it afterwards."""
    port = free_port()
    command = ["taskset", "-c", str(APP_CORE), *[c.format(port=port) for c in variant.command]]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{variant.key} exited: see {log}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{variant.key} did not listen: see {log}")
            time.sleep(0.05)
        yield Running(port, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True, slots=True)
class Result:
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    others: float = 0.0  # cores other processes of the machine used during the run
    per_cpu: float = 0.0  # requests per CPU-second of the app server process


def busy_seconds() -> float:
    """CPU seconds every process of the machine has spent busy so far (/proc/stat)."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:9]]
    return (sum(fields[:3]) + sum(fields[5:8])) / os.sysconf("SC_CLK_TCK")


def measured(pids: list[int], run: Any) -> Result:
    """Run ``run()`` (a wrk call) and charge the CPU that our processes did not use to the
    others: the app server, the authgate server, wrk itself and this process."""
    from _serve import process_cpu_seconds

    def ours() -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        waited = children.ru_utime + children.ru_stime + me.ru_utime + me.ru_stime
        return waited + sum(process_cpu_seconds(pid) for pid in pids)

    app0 = process_cpu_seconds(pids[0])
    busy0, ours0, t0 = busy_seconds(), ours(), time.monotonic()
    result: Result = run()
    elapsed = time.monotonic() - t0
    others = max(0.0, (busy_seconds() - busy0) - (ours() - ours0)) / elapsed
    app_cpu = process_cpu_seconds(pids[0]) - app0
    per_cpu = result.requests / app_cpu if app_cpu > 0 else float("nan")
    return Result(
        result.rate,
        result.p50_ms,
        result.p99_ms,
        result.errors,
        result.requests,
        others,
        per_cpu,
    )


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s)", text)
    assert match, text
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(
    port: int,
    *,
    duration: float,
    connections: int,
    token: str | None,
    lua: Path | None,
    tokens_file: Path | None,
) -> Result:
    command = [
        "taskset", "-c", str(LOAD_CORE), "wrk", "-t1", f"-c{connections}",
        f"-d{max(1, round(duration))}s", "--latency", "--timeout", "5s",
    ]  # fmt: skip
    if token is not None:
        command += ["-H", f"Authorization: Bearer {token}"]
    if lua is not None:
        command += ["-s", str(lua)]
    command.append(f"http://127.0.0.1:{port}/posts")
    if tokens_file is not None:
        command += ["--", str(tokens_file)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    if socket_errors:
        errors += sum(int(x) for x in socket_errors.groups())
    return Result(rate, p50, p99, errors, requests)


# --- set-up: the server, the CLI, the tokens -----------------------------------------------


def cli(server: Any, *args: str, stdin: str | None = None) -> str:
    """``python -m authgate ARGS`` against the server's folder (config and database)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGATE_")}
    env["AUTHGATE_DATABASE_URL"] = f"sqlite:///{server.database_path}"
    env["AUTHGATE_ISSUER"] = server.base_url
    env["AUTHGATE_AUDIENCE"] = AUDIENCE
    proc = subprocess.run(
        [sys.executable, "-m", "authgate", *args],
        cwd=server.directory,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"authgate {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


async def mint_es256(base_url: str, count: int) -> list[str]:
    """``count`` distinct server-signed user tokens: one login per user, then refresh chains."""
    import httpx

    per_user = -(-count // USERS)
    tokens: list[str] = []

    async def chain(i: int) -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            r = await http.post(
                "/auth/login", json={"email": f"bench-{i}@example.com", "password": PASSWORD}
            )
            r.raise_for_status()
            pair = r.json()
            tokens.append(pair["access_token"])
            for _ in range(per_user - 1):
                r = await http.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
                r.raise_for_status()
                pair = r.json()
                tokens.append(pair["access_token"])

    await asyncio.gather(*(chain(i) for i in range(USERS)))
    return tokens[:count]


def mint_hs256(secret: bytes, issuer: str, count: int) -> list[str]:
    """``count`` distinct HS256 access tokens with the server's claims."""
    from authgate.jose import Key, encode

    key = Key.from_secret(secret, kid="bench-hs")
    now = int(time.time())
    return [
        encode(
            {
                "iss": issuer,
                "sub": f"usr_{secrets.token_urlsafe(16)}",
                "aud": AUDIENCE,
                "exp": now + 3600,
                "iat": now,
                "jti": secrets.token_urlsafe(16),
                "sid": f"sid_{secrets.token_urlsafe(16)}",
                "client_id": "authgate",
                "roles": ["reader"],
                "scope": PERMISSION,
            },
            key,
            typ="at+jwt",
        )
        for _ in range(count)
    ]


# --- propagation and memory -----------------------------------------------------------------


def propagation(
    base_url: str, client: tuple[str, str], count: int
) -> tuple[list[float], list[float]]:
    """Revoke ``count`` client tokens one by one; the delay until the guard refuses each."""
    import httpx

    from authgate.errors import TokenRevoked
    from authgate.guard import Guard

    guard = Guard(issuer=base_url, audience=AUDIENCE, client_id=client[0], client_secret=client[1])
    from_request: list[float] = []
    from_answer: list[float] = []
    with guard, httpx.Client(base_url=base_url, auth=client, timeout=30) as http:
        for _ in range(count):
            r = http.post("/oauth2/token", data={"grant_type": "client_credentials"})
            r.raise_for_status()
            token = r.json()["access_token"]
            guard.verify_sync(token)
            t0 = time.perf_counter()
            r = http.post("/oauth2/revoke", data={"token": token})
            t_answer = time.perf_counter()
            r.raise_for_status()
            while True:
                try:
                    guard.verify_sync(token)
                except TokenRevoked:
                    break
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError("a revocation did not reach the guard in 30 s")
                time.sleep(0.0001)
            t1 = time.perf_counter()
            from_request.append(t1 - t0)
            from_answer.append(max(0.0, t1 - t_answer))
    return from_request, from_answer


@dataclass(frozen=True, slots=True)
class Memory:
    revocation_bytes: int
    revocation_entries: int
    revocation_estimate: int
    cache_bytes: int
    cache_entries: int
    cache_estimate: int


def memory(base_url: str, client: tuple[str, str], tokens: list[str]) -> Memory:
    """Guard memory with 100,000 revocation entries and a full token cache."""
    from authgate.guard import Event, Guard

    guard = Guard(issuer=base_url, audience=AUDIENCE, client_id=client[0], client_secret=client[1])
    with guard:
        assert guard.revoked is not None
        far, now = time.time() + 3600, time.time()
        kinds = [("jti", "", None)] * 40_000 + [("sid", "sid_", None)] * 40_000
        kinds += [("user", "usr_", now)] * 20_000
        tracemalloc.start()
        try:
            # Values made inside the window, as the feed's JSON parser makes them.
            gc.collect()
            start = tracemalloc.get_traced_memory()[0]
            guard.revoked.apply(
                (
                    Event(i, kind, f"{prefix}{secrets.token_urlsafe(16)}", far + i / 1e3, nb)
                    for i, (kind, prefix, nb) in enumerate(kinds)
                ),
                now=now,
            )
            gc.collect()
            revocations = tracemalloc.get_traced_memory()[0] - start
            start = tracemalloc.get_traced_memory()[0]
            fresh = [t.encode().decode() for t in tokens]  # new strings, as from requests
            for token in fresh:
                guard.verify_sync(token)
            del fresh
            gc.collect()
            cache = tracemalloc.get_traced_memory()[0] - start
        finally:
            tracemalloc.stop()
        info = guard.cache_info()
        return Memory(
            revocations,
            len(guard.revoked),
            guard.revoked.approx_bytes(),
            cache,
            info.entries,
            info.approx_bytes,
        )


# --- the report ------------------------------------------------------------------------------


Runs = dict[tuple[str, str], list[Result]]


def median(values: list[float]) -> float:
    return statistics.median(values)


def row_summary(runs: list[Result]) -> Result:
    """The run with the median rate (its own latencies), and the median requests per
    CPU-second; errors of every run count; the others' CPU is the mean over the rounds."""
    mid = sorted(runs, key=lambda r: r.rate)[(len(runs) - 1) // 2]
    errors = sum(r.errors for r in runs)
    others = sum(r.others for r in runs) / len(runs)
    per_cpu = median([r.per_cpu for r in runs])
    return Result(mid.rate, mid.p50_ms, mid.p99_ms, errors, mid.requests, others, per_cpu)


def ratios(runs: Runs, num: str, den: str, mode: str) -> list[float]:
    """Per-round ratios of requests per app-server CPU-second, of two rows measured in the
    same round: what one core can serve, whatever else the machine did meanwhile."""
    return [
        n.per_cpu / d.per_cpu for n, d in zip(runs[(num, mode)], runs[(den, mode)], strict=True)
    ]


def spread(values: list[float]) -> float:
    """The interquartile range as a fraction of the median."""
    if len(values) < 4:
        return float("nan")
    q = statistics.quantiles(values, n=4)
    return (q[2] - q[0]) / median(values)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def report(
    runs: Runs,
    all_variants: list[Variant],
    args: argparse.Namespace,
    prop: tuple[list[float], list[float]],
    mem: Memory,
) -> None:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    node_version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout
    summary = {key: row_summary(r) for key, r in runs.items()}
    others = [r.others for rs in runs.values() for r in rs]
    print()
    print(
        f"authgate guard bench: {platform.python_implementation()} {platform.python_version()}, "
        f"{cpu}, {os.cpu_count()} cores; app server on core {APP_CORE}, wrk (1 thread, "
        f"{args.connections} connections) and authgate serve on core {LOAD_CORE}"
    )
    print(
        f"uvicorn {version('uvicorn')} (uvloop {version('uvloop')}, httptools), "
        f"FastAPI {version('fastapi')}, Starlette {version('starlette')}, "
        f"PyJWT {version('pyjwt')}; Node {node_version.strip()}, "
        f"express {version_of_node('express')}, jsonwebtoken {version_of_node('jsonwebtoken')}"
    )
    print(
        f"{args.rounds} rounds of {args.duration:g} s per row, in a shuffled order each round, "
        f"after a warm-up. req/s and latencies: the round with the median rate; req/cpu-s: "
        f"requests per CPU-second of the app server (median); b/a and every ratio below: "
        f"the median of the per-round ratios of req/cpu-s (spread: their interquartile "
        f"range / median)"
    )
    print(
        f"other processes on this machine used {statistics.mean(others):.2f} cores on average "
        f"during the runs (max {max(others):.2f})"
    )
    header = (
        f"{'server':<16}{'':3}{'auth':<36}{'tokens':<7}"
        f"{'req/s':>8}{'req/cpu-s':>10}{'p50 ms':>8}{'p99 ms':>8}{'b/a':>7}{'spread':>8}"
    )
    print()
    print(header)
    print("-" * len(header))
    for mode in ("hot", "10k"):
        for v in all_variants:
            res = summary[(v.key, mode)]
            base = f"{v.framework}/no auth"
            if v.row != "a":
                rs = ratios(runs, v.key, base, mode)
                ratio, wide = f"{median(rs):.2f}", f"{spread(rs):.0%}"
            else:
                ratio, wide = "", ""
            bad = f"  INVALID: {res.errors} errors" if res.errors else ""
            print(
                f"{v.framework:<16}{v.row:<3}{v.label:<36}{mode:<7}{res.rate:>8.0f}"
                f"{res.per_cpu:>10.0f}{res.p50_ms:>8.2f}{res.p99_ms:>8.2f}{ratio:>7}{wide:>8}{bad}"
            )
        print()

    def key(framework: str, label: str) -> str:
        return f"{framework}/{label}"

    def ratio(framework: str, num: str, den: str, mode: str) -> float:
        return median(ratios(runs, key(framework, num), key(framework, den), mode))

    def cross(num: tuple[str, str], den: tuple[str, str], mode: str) -> float:
        return median(ratios(runs, key(*num), key(*den), mode))

    es, hs = "authgate guard, ES256 (JWKS + feed)", "authgate guard, HS256 (local key)"
    print("targets")
    for fw in ("FastAPI", "Starlette"):
        labels = [es, hs]
        if fw == "FastAPI":
            labels += ["authgate guard, ES256, decorator", "authgate guard, HS256, decorator"]
        for label in labels:
            hot = ratio(fw, label, "no auth", "hot")
            print(f"  {fw} {label}, hot token: b/a = {hot:.2f} (>= 0.90) {verdict(hot >= 0.90)}")
        for label in [es, *(["authgate guard, ES256, decorator"] if fw == "FastAPI" else [])]:
            ten = ratio(fw, label, "no auth", "10k")
            print(
                f"  {fw} {label}, 10,000 tokens: b/a = {ten:.2f} (>= 0.75) {verdict(ten >= 0.75)}"
            )
        if fw == "FastAPI":
            for mode in ("hot", "10k"):
                floor = ratio(fw, "no auth, one empty dependency", "no auth", mode)
                b_es = ratio(fw, es, "no auth, one empty dependency", mode)
                b_hs = ratio(fw, hs, "no auth, one empty dependency", mode)
                print(
                    f"    control ({mode}): one empty FastAPI dependency alone: a'/a = "
                    f"{floor:.2f}; the guard's dependency against it: b/a' = {b_es:.2f} (ES256), "
                    f"{b_hs:.2f} (HS256)"
                )
        c_word = "dependency" if fw == "FastAPI" else "in endpoint"
        for alg, b_label in (("ES256", es), ("HS256", hs)):
            for mode in ("hot", "10k"):
                bc = ratio(fw, b_label, f"PyJWT {c_word}, {alg}", mode)
                print(f"  {fw} {alg} {mode}: b/c = {bc:.2f} (>= 1) {verdict(bc >= 1.0)}")
    star_hs = ("Starlette", hs)
    vs_express = cross(star_hs, ("Node express", "jsonwebtoken, HS256"), "hot")
    vs_bare = cross(star_hs, ("Node node:http", "jsonwebtoken, HS256"), "hot")
    print(
        f"  Starlette guard (HS256, hot) / express+jsonwebtoken = {vs_express:.2f} (>= 2) "
        f"{verdict(vs_express >= 2)}"
    )
    print(
        f"  Starlette guard (HS256, hot) / node:http+jsonwebtoken = {vs_bare:.2f} (>= 1) "
        f"{verdict(vs_bare >= 1)}"
    )
    ko_express = cross(star_hs, ("Node express", "jsonwebtoken, HS256, KeyObject"), "hot")
    ko_bare = cross(star_hs, ("Node node:http", "jsonwebtoken, HS256, KeyObject"), "hot")
    print(
        f"    (against jsonwebtoken's fast form, a KeyObject made once: express {ko_express:.2f}, "
        f"node:http {ko_bare:.2f})"
    )
    es_express = cross(("Starlette", es), ("Node express", "jsonwebtoken, ES256"), "hot")
    es_bare = cross(("Starlette", es), ("Node node:http", "jsonwebtoken, ES256"), "hot")
    print(
        f"  Starlette guard (ES256, hot) / express+jsonwebtoken (ES256) = {es_express:.2f}, "
        f"/ node:http+jsonwebtoken (ES256) = {es_bare:.2f}"
    )
    for fw, a_label, b_label, c_label in (
        ("FastAPI", "no auth", hs, "PyJWT dependency, HS256"),
        ("Starlette", "no auth", hs, "PyJWT in endpoint, HS256"),
        ("Node express", "no auth", None, "jsonwebtoken, HS256"),
        ("Node node:http", "no auth", None, "jsonwebtoken, HS256"),
        ("Node express", "no auth", None, "jsonwebtoken, HS256, KeyObject"),
        ("Node node:http", "no auth", None, "jsonwebtoken, HS256, KeyObject"),
    ):
        a = median([r.per_cpu for r in runs[(key(fw, a_label), "hot")]])
        parts = []
        if b_label is not None:
            b = median([r.per_cpu for r in runs[(key(fw, b_label), "hot")]])
            parts.append(f"guard {1e6 / b - 1e6 / a:+.0f} us")
        c = median([r.per_cpu for r in runs[(key(fw, c_label), "hot")]])
        parts.append(f"{c_label.replace(', HS256', '')} {1e6 / c - 1e6 / a:+.0f} us")
        print(f"  CPU added per request, {fw}, HS256 hot token: " + ", ".join(parts))

    req, ans = prop
    print()
    print(
        f"revocation propagation over {len(req)} revocations (RFC 7009 revoke -> the guard "
        f"refuses the token; long-poll feed):"
    )
    print(
        f"  from the revoke request: p50 {pct(req, 0.5) * 1000:.1f} ms, "
        f"p99 {pct(req, 0.99) * 1000:.1f} ms, max {max(req) * 1000:.1f} ms"
    )
    print(
        f"  from its answer:         p50 {pct(ans, 0.5) * 1000:.1f} ms, "
        f"p99 {pct(ans, 0.99) * 1000:.1f} ms, max {max(ans) * 1000:.1f} ms"
    )
    mib = 1024 * 1024
    print()
    print("guard memory (tracemalloc):")
    print(
        f"  {mem.revocation_entries:,} revocation entries: {mem.revocation_bytes / mib:.1f} MiB "
        f"({mem.revocation_bytes / mem.revocation_entries:.0f} B/entry; "
        f"estimate {mem.revocation_estimate / mib:.1f} MiB)"
    )
    print(
        f"  token cache, {mem.cache_entries:,} ES256 user tokens: {mem.cache_bytes / mib:.1f} MiB "
        f"({mem.cache_bytes / mem.cache_entries:.0f} B/entry; "
        f"estimate {mem.cache_estimate / mib:.1f} MiB)"
    )
    print(f"  total: {(mem.revocation_bytes + mem.cache_bytes) / mib:.1f} MiB")


def version_of_node(package: str) -> str:
    path = NODE_DIR / "node_modules" / package / "package.json"
    try:
        return str(json.loads(path.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "?"


def check_tools() -> None:
    missing = [t for t in ("wrk", "taskset", "node") if shutil.which(t) is None]
    if missing:
        sys.exit(f"missing tools: {missing} (apt-get install wrk util-linux nodejs)")
    for package in ("express", "jsonwebtoken"):
        if not (NODE_DIR / "node_modules" / package / "package.json").is_file():
            sys.exit("Node packages are missing: run `npm ci --prefix bench/node`")
    if (os.cpu_count() or 1) < 2:
        sys.exit("this bench pins the app server and the load generator to two cores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, fewer revocations")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=8, help="rounds (shuffled each time)")
    parser.add_argument("--revocations", type=int, default=200)
    parser.add_argument("--app", nargs=2, metavar=("NAME", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.app:
        run_app(args.app[0], int(args.app[1]))
        return
    if args.quick:
        args.duration, args.warmup, args.revocations, args.rounds = 1.0, 1.0, 50, 2
    check_tools()
    sys.path.insert(0, str(HERE))
    from _serve import serve

    from authgate.jose import KeySet

    work = Path(tempfile.mkdtemp(prefix="authgate-guard-bench-"))
    env_server = {"AUTHGATE_AUDIENCE": AUDIENCE, "AUTHGATE_ACCESS_TTL": "1h"}
    print("starting authgate serve and minting tokens ...", flush=True)
    with serve(env=env_server) as server:
        cli(server, "roles", "add", "reader", "--permission", PERMISSION)
        for i in range(USERS):
            cli(
                server, "users", "add", f"bench-{i}@example.com", "--role", "reader",
                "--password-stdin", stdin=PASSWORD + "\n",
            )  # fmt: skip
        out = json.loads(
            cli(server, "clients", "add", "bench-guard", "--scope", "authgate:revocations")
        )
        client = (out["client_id"], out["client_secret"])
        es_tokens = asyncio.run(mint_es256(server.base_url, DISTINCT + 1))
        hs_secret = secrets.token_urlsafe(32)  # text, as the Node guides keep it
        hs_tokens = mint_hs256(hs_secret.encode(), server.base_url, DISTINCT + 1)
        import httpx

        jwks = httpx.get(f"{server.base_url}/.well-known/jwks.json").json()
        kid = json.loads(base64.urlsafe_b64decode(es_tokens[0].split(".")[0] + "=="))["kid"]
        public = KeySet.from_jwks(jwks).get(kid)
        assert public is not None
        pin(server.pid, LOAD_CORE)
        pin(os.getpid(), LOAD_CORE)
        files = {}
        for name, tokens in (("es", es_tokens), ("hs", hs_tokens)):
            files[name] = work / f"{name}-tokens.txt"
            files[name].write_text("\n".join(tokens[1:]) + "\n")
        lua = work / "rotate.lua"
        lua.write_text(ROTATE_LUA)
        hot = {"es": es_tokens[0], "hs": hs_tokens[0]}
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AUTHGATE_")},
            "BENCH_ISSUER": server.base_url,
            "BENCH_AUDIENCE": AUDIENCE,
            "BENCH_CLIENT_ID": client[0],
            "BENCH_CLIENT_SECRET": client[1],
            "BENCH_HS_SECRET_TEXT": hs_secret,
            "BENCH_ES_PEM": public.to_pem().decode(),
        }
        all_variants = variants()
        rounds: dict[tuple[str, str], list[Result]] = {}
        print(f"  starting {len(all_variants)} app servers ...", flush=True)
        with contextlib.ExitStack() as stack:
            running = {
                v.key: stack.enter_context(app_server(v, env, work / "apps.log"))
                for v in all_variants
            }

            def load(v: Variant, mode: str, seconds: float) -> Result:
                kwargs: dict[str, Any] = (
                    {"token": hot[v.tokens], "lua": None, "tokens_file": None}
                    if mode == "hot"
                    else {"token": None, "lua": lua, "tokens_file": files[v.tokens]}
                )
                return wrk(
                    running[v.key].port,
                    duration=seconds,
                    connections=args.connections,
                    **kwargs,
                )

            print("  warm-up ...", flush=True)
            for v in all_variants:
                load(v, "hot", args.warmup)
                # A guard's cache fills as the rotation walks the 10,000 tokens: at the
                # uncached rate (more than 2,000 req/s) 10 s covers them all.
                load(v, "10k", max(args.warmup, 10.0) if "guard" in v.label else args.warmup)
            order = [(v, mode) for v in all_variants for mode in ("hot", "10k")]
            shuffle = random.Random(20240611)
            for n in range(args.rounds):
                print(f"  round {n + 1} of {args.rounds} ...", flush=True)
                shuffle.shuffle(order)
                for v, mode in order:
                    pids = [running[v.key].pid, server.pid]
                    res = measured(pids, lambda v=v, mode=mode: load(v, mode, args.duration))
                    rounds.setdefault((v.key, mode), []).append(res)
        os.sched_setaffinity(0, set(range(os.cpu_count() or 2)))
        print("  revocation propagation ...", flush=True)
        prop = propagation(server.base_url, client, args.revocations)
        print("  memory ...", flush=True)
        mem = memory(server.base_url, client, es_tokens[1 : DISTINCT + 1])
    report(rounds, all_variants, args, prop, mem)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
