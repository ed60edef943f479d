"""Throughput and latency of a real ``authgate serve`` on SQLite, over loopback.

Run: ``.venv/bin/python bench/server.py [--quick] [--duration S]``

It starts ``python -m authgate serve`` in a fresh temporary folder (SQLite, the default
argon2id parameters m=19 MiB t=2 p=1, ``AUTHGATE_LOG_FORMAT=console``; see ``_serve.py``),
registers one user per client, and drives the server with ``httpx.AsyncClient`` (HTTP/1.1
keep-alive, one connection per client) from C concurrent clients, C = 2 x the server's hash
concurrency (``AUTHGATE_HASH_CONCURRENCY``, default 2). Every figure of the table comes from
this one run:

* ``POST /auth/login``: logins/s, against the bare argon2id verify rate measured in this
  process at the same parameters (the hash the server stored for a bench user, read back from
  its database) with as many threads as the server's hash pool
  (``argon2.PasswordHasher.verify`` in a ``ThreadPoolExecutor``). Target: >= 90 %.
* ``POST /auth/refresh``: rotations/s, each client rotating its own chain (it always sends the
  token it got last, so every request is a real rotation), and rotations per CPU-second of the
  server process (utime + stime from ``/proc/<pid>/stat`` over the window), against
  Keycloak's published 120 refreshes/s per vCPU. Target: >= 4x, that is >= 480.
* ``GET /auth/me``: requests/s and p50/p99 latency.
* ``GET /healthz``: requests/s, the floor of the HTTP stack (uvicorn + FastAPI + middleware).

Each round runs every measurement once, one after the other (so a change in machine load hits
all of them); there are several rounds after a short warm-up, and the table shows medians over
the rounds. The client runs on the same machine and takes CPU from the server: the
``client cores`` column shows how much. A missed target is reported as MISS; the exit status
is 0 all the same: performance is reported here, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import sqlite3
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version

import httpx
from _serve import Server, serve
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError

PASSWORD = "bench: a long enough passphrase 7"  # a throwaway bench account
KEYCLOAK_REFRESH_PER_VCPU = 120.0
LOGIN_TARGET = 0.90
REFRESH_TARGET = 4.0
LOGIN_SLICE = 1.0  # seconds: logins and bare verifies alternate at this grain


# --- measuring ---------------------------------------------------------------------------


def _system_busy_seconds() -> float:
    """CPU seconds every process of the machine has spent busy so far (/proc/stat)."""
    with open("/proc/stat") as fh:
        fields = fh.readline().split()[1:]
    # user nice system idle iowait irq softirq steal (guest time is already in user/nice)
    values = [int(v) for v in fields[:8]]
    busy = values[0] + values[1] + values[2] + values[5] + values[6] + values[7]
    return busy / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Clocks read at the edge of a window."""

    wall: float
    server: float  # the server process tree, user + system
    loop: float  # the server's main (event-loop) thread
    client: float  # this process (the load generator, or the in-process verify threads)
    system: float  # every process of the machine

    @classmethod
    def take(cls, server: Server) -> Snapshot:
        return cls(
            wall=time.perf_counter(),
            server=server.cpu_seconds(),
            loop=server.main_thread_cpu_seconds(),
            client=time.process_time(),
            system=_system_busy_seconds(),
        )


@dataclass(slots=True)
class Window:
    """What one or more measurement slices counted (slices add up)."""

    count: int = 0
    elapsed: float = 0.0
    server_cpu: float = 0.0
    loop_cpu: float = 0.0
    client_cpu: float = 0.0
    system_cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def add(self, before: Snapshot, after: Snapshot, latencies: list[float]) -> None:
        self.count += len(latencies)
        self.latencies.extend(latencies)
        self.elapsed += after.wall - before.wall
        self.server_cpu += after.server - before.server
        self.loop_cpu += after.loop - before.loop
        self.client_cpu += after.client - before.client
        self.system_cpu += after.system - before.system

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed else float("nan")

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the latencies, in milliseconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
        return ordered[index] * 1000.0

    def per_op_ms(self, cpu: float) -> float:
        return cpu / self.count * 1000.0 if self.count else float("nan")

    @property
    def per_server_cpu_second(self) -> float:
        return self.count / self.server_cpu if self.server_cpu > 0 else float("inf")

    @property
    def others_cpu(self) -> float:
        """CPU seconds that processes other than the server and this one used meanwhile."""
        return max(0.0, self.system_cpu - self.server_cpu - self.client_cpu)


Step = Callable[[httpx.AsyncClient, int], Awaitable[None]]


async def drive(
    clients: list[httpx.AsyncClient], step: Step, duration: float, server: Server, into: Window
) -> None:
    """Run ``step`` in a loop on every client (one task each) for ``duration`` seconds.

    A client starts no request after the deadline; the window ends when the last one is
    answered, and counts every request started in it.
    """
    latencies: list[list[float]] = [[] for _ in clients]
    deadline = 0.0

    async def worker(i: int) -> None:
        client = clients[i]
        own = latencies[i]
        clock = time.perf_counter
        while clock() < deadline:
            t0 = clock()
            await step(client, i)
            own.append(clock() - t0)

    before = Snapshot.take(server)
    deadline = before.wall + duration
    await asyncio.gather(*(worker(i) for i in range(len(clients))))
    into.add(before, Snapshot.take(server), [x for own in latencies for x in own])


def bare_verify(
    hasher: PasswordHasher,
    stored: str,
    password: bytes,
    threads: int,
    duration: float,
    server: Server,
    into: Window,
) -> None:
    """argon2id verify in ``threads`` threads for ``duration`` seconds, in this process."""
    deadline = 0.0

    def loop() -> list[float]:
        own: list[float] = []
        clock = time.perf_counter
        while clock() < deadline:
            t0 = clock()
            if not hasher.verify(stored, password):
                raise VerificationError("the bench password does not verify")
            own.append(clock() - t0)
        return own

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bare-argon2") as pool:
        before = Snapshot.take(server)
        deadline = before.wall + duration
        futures = [pool.submit(loop) for _ in range(threads)]
        results = [f.result() for f in futures]
        into.add(before, Snapshot.take(server), [x for own in results for x in own])


# --- the server's side ---------------------------------------------------------------------


class Unexpected(RuntimeError):
    """The server answered something a benchmark request should never get."""


def _expect(response: httpx.Response, status: int = 200) -> httpx.Response:
    if response.status_code != status:
        raise Unexpected(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:300]}"
        )
    return response


def stored_hash(server: Server, email: str) -> str:
    """The argon2id hash the server stored for ``email`` (read-only look at its SQLite file)."""
    uri = f"file:{server.database_path}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=10) as db:
        row = db.execute("SELECT password_hash FROM users WHERE email = ?", (email,)).fetchone()
    if row is None:
        raise Unexpected(f"no stored hash for {email}")
    return str(row[0])


@dataclass(slots=True)
class Accounts:
    """Per client: an email, a refresh chain to rotate, and a chain to mint /me tokens."""

    emails: list[str]
    refresh: list[str]
    me_refresh: list[str]
    me_access: list[str]


async def set_up(clients: list[httpx.AsyncClient]) -> Accounts:
    """Register one user per client; open a second session for /auth/me."""
    emails = [f"bench-{i}@example.com" for i in range(len(clients))]
    refresh: list[str] = []
    me_refresh: list[str] = []
    me_access: list[str] = []
    for client, email in zip(clients, emails, strict=True):
        body = {"email": email, "password": PASSWORD}
        reg = _expect(await client.post("/auth/register", json=body), 201).json()
        refresh.append(reg["refresh_token"])
        login = _expect(await client.post("/auth/login", json=body)).json()
        me_refresh.append(login["refresh_token"])
        me_access.append(login["access_token"])
    return Accounts(emails, refresh, me_refresh, me_access)


# --- the run -------------------------------------------------------------------------------


MEASURES = ("login", "verify", "refresh", "me", "healthz")


def _med(values: list[float]) -> float:
    return statistics.median(values)


def machine_lines(load_before: tuple[float, float, float]) -> list[str]:
    cpu_model = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0))
    return [
        f"machine: {platform.machine()}, {os.cpu_count()} cores ({usable} usable), {cpu_model}",
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.release()}",
        f"packages: argon2-cffi {version('argon2-cffi')}, httpx {version('httpx')}, "
        f"uvicorn {version('uvicorn')}, fastapi {version('fastapi')}, "
        f"sqlalchemy {version('sqlalchemy')}, aiosqlite {version('aiosqlite')}",
        "load average before: {:.2f} {:.2f} {:.2f}".format(*load_before),
    ]


def _fmt(value: float, digits: int = 1) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def render(
    rounds: dict[str, list[Window]], *, concurrency: int, threads: int, busy_machine: bool
) -> str:
    """The table: medians over the rounds. On a busy machine the login rate ratio is marked
    as unreliable (the scheduler's share, not authgate, decides it)."""

    def med(name: str, fn: Callable[[Window], float]) -> float:
        return _med([fn(w) for w in rounds[name]])

    def cells(name: str, *, in_process: bool = False) -> list[str]:
        return [
            _fmt(med(name, lambda w: w.rate)),
            _fmt(med(name, lambda w: w.percentile(0.50)), 2),
            _fmt(med(name, lambda w: w.percentile(0.99)), 2),
            _fmt(med(name, lambda w: w.per_op_ms(w.client_cpu if in_process else w.server_cpu)), 2),
            "-" if in_process else _fmt(med(name, lambda w: w.per_op_ms(w.loop_cpu)), 2),
            _fmt(med(name, lambda w: w.server_cpu / w.elapsed), 2),
            _fmt(med(name, lambda w: w.client_cpu / w.elapsed), 2),
        ]

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISS"

    verify_rate = med("verify", lambda w: w.rate)
    login_ratio = _med(
        [lw.rate / vw.rate for lw, vw in zip(rounds["login"], rounds["verify"], strict=True)]
    )
    login_per_cpu = med("login", lambda w: w.per_server_cpu_second)
    verify_per_cpu = med("verify", lambda w: w.count / w.client_cpu)
    login_cpu_ratio = _med(
        [
            lw.per_server_cpu_second / (vw.count / vw.client_cpu)
            for lw, vw in zip(rounds["login"], rounds["verify"], strict=True)
        ]
    )
    per_cpu = med("refresh", lambda w: w.per_server_cpu_second)
    refresh_ratio = per_cpu / KEYCLOAK_REFRESH_PER_VCPU
    me_rate = med("me", lambda w: w.rate)
    healthz_rate = med("healthz", lambda w: w.rate)
    header = [
        "measure",
        "conc",
        "rate/s",
        "p50 ms",
        "p99 ms",
        "CPU ms/op",
        "loop ms/op",
        "srv cores",
        "client cores",
        "baseline",
        "ratio",
        "target",
        "",
    ]
    c = str(concurrency)
    blank = ["", "", "", ""]
    rows = [
        [
            "POST /auth/login",
            c,
            *cells("login"),
            f"bare verify {verify_rate:,.1f}/s",
            f"{login_ratio:.1%}",
            f">= {LOGIN_TARGET:.0%}",
            verdict(login_ratio >= LOGIN_TARGET) + (" (busy machine!)" if busy_machine else ""),
        ],
        [
            "  logins per server CPU-second",
            "",
            _fmt(login_per_cpu),
            *[""] * 6,
            f"verify {verify_per_cpu:,.1f}/CPU-s",
            f"{login_cpu_ratio:.1%}",
            "",
            "",
        ],
        [
            "  argon2id verify, in-process",
            f"{threads} thr",
            *cells("verify", in_process=True),
            *blank,
        ],
        ["POST /auth/refresh (rotations)", c, *cells("refresh"), *blank],
        [
            "  rotations per server CPU-second",
            "",
            _fmt(per_cpu),
            *[""] * 6,
            f"Keycloak {KEYCLOAK_REFRESH_PER_VCPU:.0f}/vCPU",
            f"{refresh_ratio:.2f}x",
            f">= {REFRESH_TARGET:.0f}x",
            verdict(refresh_ratio >= REFRESH_TARGET),
        ],
        [
            "GET /auth/me",
            c,
            *cells("me"),
            f"/healthz {healthz_rate:,.0f}/s",
            f"{me_rate / healthz_rate:.1%}",
            "",
            "",
        ],
        ["GET /healthz (HTTP floor)", c, *cells("healthz"), *blank],
    ]
    left = {0, 9, 12}
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(widths[i]) if i in left else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ).rstrip()

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


async def run(args: argparse.Namespace) -> int:
    load_before = os.getloadavg()
    for text in machine_lines(load_before):
        print(text)
    cores = len(os.sched_getaffinity(0))
    if load_before[0] > 0.5 * cores:
        print(
            f"WARNING: load average {load_before[0]:.2f} on {cores} cores before the run: "
            "other processes are busy and take CPU from the server and the client"
        )
    hash_concurrency = args.hash_concurrency
    concurrency = 2 * hash_concurrency
    print(
        "server: authgate serve, 1 uvicorn worker, SQLite, argon2id defaults, "
        f"AUTHGATE_HASH_CONCURRENCY={hash_concurrency}; {concurrency} clients, "
        f"{args.rounds} rounds of {args.duration:g} s per measure (+ a warm-up round)",
        flush=True,
    )

    rounds: dict[str, list[Window]] = {name: [] for name in MEASURES}
    env = {"AUTHGATE_HASH_CONCURRENCY": str(hash_concurrency)}
    with serve(env=env) as server:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        clients = [
            httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=60.0)
            for _ in range(concurrency)
        ]
        try:
            accounts = await set_up(clients)
            stored = stored_hash(server, accounts.emails[0])
            parts = stored.split("$")
            print(f"stored hash: {parts[1]} {parts[3]} (the bare verify checks this very hash)")
            hasher = PasswordHasher()  # verify reads the parameters from the hash itself
            password = PASSWORD.encode("utf-8")  # ASCII: NFKC leaves it as is
            login_bodies = [{"email": e, "password": PASSWORD} for e in accounts.emails]
            me_headers: list[dict[str, str]] = []

            async def login(client: httpx.AsyncClient, i: int) -> None:
                _expect(await client.post("/auth/login", json=login_bodies[i]))

            async def refresh(client: httpx.AsyncClient, i: int) -> None:
                body = {"refresh_token": accounts.refresh[i]}
                got = _expect(await client.post("/auth/refresh", json=body)).json()
                accounts.refresh[i] = got["refresh_token"]

            async def me(client: httpx.AsyncClient, i: int) -> None:
                got = _expect(await client.get("/auth/me", headers=me_headers[i])).json()
                if got["email"] != accounts.emails[i]:
                    raise Unexpected(f"/auth/me answered {got['email']}")

            async def healthz(client: httpx.AsyncClient, i: int) -> None:
                _expect(await client.get("/healthz"))

            async def fresh_me_tokens() -> None:
                # A fresh access token per client (600 s TTL), outside the timed window.
                me_headers.clear()
                for i, client in enumerate(clients):
                    body = {"refresh_token": accounts.me_refresh[i]}
                    got = _expect(await client.post("/auth/refresh", json=body)).json()
                    accounts.me_refresh[i] = got["refresh_token"]
                    me_headers.append({"authorization": f"Bearer {got['access_token']}"})

            async def one_round(duration: float) -> dict[str, Window]:
                w = {name: Window() for name in MEASURES}
                # Logins and bare verifies alternate in ~1 s slices, so that a change in the
                # machine's load hits both sides of the ratio alike.
                slices = max(1, round(duration / LOGIN_SLICE))
                for _ in range(slices):
                    await drive(clients, login, duration / slices, server, w["login"])
                    await asyncio.to_thread(
                        bare_verify,
                        hasher,
                        stored,
                        password,
                        hash_concurrency,
                        duration / slices,
                        server,
                        w["verify"],
                    )
                await drive(clients, refresh, duration, server, w["refresh"])
                await fresh_me_tokens()
                await drive(clients, me, duration, server, w["me"])
                await drive(clients, healthz, duration, server, w["healthz"])
                return w

            await one_round(args.warmup)
            for r in range(args.rounds):
                w = await one_round(args.duration)
                for name in MEASURES:
                    rounds[name].append(w[name])
                print(
                    f"  round {r + 1}/{args.rounds}: login {w['login'].rate:.1f}/s, "
                    f"verify {w['verify'].rate:.1f}/s, refresh {w['refresh'].rate:.0f}/s "
                    f"({w['refresh'].per_server_cpu_second:.0f}/CPU-s), "
                    f"me {w['me'].rate:.0f}/s, healthz {w['healthz'].rate:.0f}/s",
                    flush=True,
                )
        finally:
            for client in clients:
                await client.aclose()
        if server.process.poll() is not None:
            raise Unexpected(f"the server died during the run:\n{server.log_tail()}")

    windows = [w for ws in rounds.values() for w in ws]
    others = sum(w.others_cpu for w in windows) / sum(w.elapsed for w in windows)
    print()
    print(
        render(
            rounds,
            concurrency=concurrency,
            threads=hash_concurrency,
            busy_machine=others > 0.25 * cores,
        )
    )
    print()
    load_after = os.getloadavg()
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*load_after))
    print(
        f"other processes used {others:.2f} of {cores} cores on average during the measured "
        "windows (the machine's busy time less the server's and this process's)"
        + ("  <- HIGH: the absolute figures are depressed" if others > 0.25 * cores else "")
    )
    print(
        "Timings on a shared machine are noisy; the ratios (login vs bare verify, rotations "
        "per server CPU-second) are what matter. When other processes keep the cores busy, "
        "the scheduler's share decides the login/verify rate ratio (the server runs more "
        "threads); logins per server CPU-second against verifies per CPU-second is then the "
        "steadier comparison.\n"
        "Medians over the rounds; the login ratio is the median of the per-round ratios. "
        "CPU ms/op: the server's CPU time (all its threads) per request; for the in-process "
        "verify row, this process's per verify. loop ms/op: the server's event-loop thread "
        "alone. srv cores / client cores: CPU time over wall time of the server and of this "
        "process (the load generator, which competes with the server for the same cores)."
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~30 s run (short windows)")
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds per measure per round"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians are taken)")
    parser.add_argument(
        "--hash-concurrency", type=int, default=2, help="AUTHGATE_HASH_CONCURRENCY (default 2)"
    )
    args = parser.parse_args()
    if args.duration is None:
        args.duration = 1.2 if args.quick else 7.0
    if args.duration <= 0 or args.rounds < 1 or args.hash_concurrency < 1:
        parser.error("--duration, --rounds and --hash-concurrency must be positive")
    args.warmup = min(1.0 if args.quick else 2.0, args.duration)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
