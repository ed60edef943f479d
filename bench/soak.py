"""Soak and overload run: a mixed load on real ``authgate serve`` processes, over loopback.

Run: ``.venv/bin/python bench/soak.py [--minutes M] [--burst-seconds S] [--targets sqlite,pg]``

Two targets, one after the other:

* ``sqlite``: one instance on a fresh SQLite file;
* ``pg``: two instances on one fresh PostgreSQL schema (``ag_bench_<random>`` on the server of
  ``--pg-url``, selected with ``?search_path=``, dropped at the end), sharing one master key
  and one issuer; the load goes round-robin across them (every request to the next instance,
  so a token issued by one is used at the other).

Each server is ``python -m authgate serve`` (one uvicorn worker, the default argon2id
parameters m=19 MiB t=2 p=1, ``AUTHGATE_HASH_CONCURRENCY`` 2 and ``AUTHGATE_HASH_QUEUE`` 64:
the defaults), started by ``_harness/servers.py``. Per target:

1. set-up: an admin (``authgate roles add`` / ``users add`` on the command line), ``--users``
   accounts registered through the API (each registration opens a session);
2. capacity: a closed-loop ramp (1, 2, 4, ... clients, ``--ramp-step-seconds`` each) of the
   mix below, which stops once two steps in a row add less than 5 %; then ``--confirm-steps``
   (3) more windows at the best level. The capacity is the median of the best step and those
   windows, in requests answered as expected per second (one step alone may catch a quiet
   moment of the machine's other processes);
3. steady: an open loop (Poisson arrivals) at ``--steady-fraction`` (0.7) of the capacity for
   ``--minutes`` (10); the first min(60 s, 20 %) of it is the memory warm-up;
4. burst: an open loop at ``--burst-factor`` (3) times the capacity for ``--burst-seconds``
   (60);
5. recovery: the steady rate again, for ``--recovery-seconds`` (30; 10 when ``--minutes`` < 5).

The mix, per request: 55 % ``GET /auth/me``, 28 % ``POST /auth/refresh`` (a session is never
refreshed twice at once: each rotation sends the token the previous one returned), 8 % admin
reads (``/admin/users``, ``/admin/audit``, ``/admin/sessions?user=``, ``/admin/keys``), 5 %
``POST /auth/login`` (a new session) and 4 % ``POST /auth/logout`` (ends a session). Logins are
expensive by design (argon2id), so their share is small, as in real traffic. An access token
older than 400 s is refreshed before use (the TTL is 600 s).

A separate process (``_harness/probe.py``) sends ``GET /healthz`` to each instance every 20 ms
on its own keep-alive connection, so that its figures are the server's, not this process's.
Resident memory (``VmRSS`` of ``/proc/<pid>/status``) of each server is sampled each second.

The load generator is one asyncio process (uvloop when installed) with a small HTTP/1.1
keep-alive client (``_harness/fastclient.py``, on httptools): httpx costs a few CPU-milliseconds per
request with hundreds in flight, which on a 2-core machine would make the generator, not the
servers, the bottleneck of the burst. The ``client`` column shows what it costs.

Bounds: at most ``--max-inflight`` (256) requests in flight (an arrival beyond it is counted
"over cap" and not sent), an arrival the generator cannot send within 1 s is counted "late"
and not sent, ``--max-requests`` per target, a 30 s client timeout, and a hard deadline per
target (its planned time x 1.25 + 5 min); the script stops by itself. Everything listens on
127.0.0.1 only.

Required results, checked and printed as PASS/FAIL per target (the exit status is 0 anyway):

* no 5xx other than deliberate load-shedding: 503 with ``Retry-After`` and code ``overloaded``;
* no lost writes: the SHA-256 hex of every refresh token answered with 200 (by refresh, and
  by login or register) is in ``refresh_tokens.digest``;
* no family with two live heads: at most one unrotated refresh token per session;
* resident memory growth of each server under 10 % after warm-up (at the end of the steady
  phase and at the end of the run, 5 s after the last answer, against the end of the warm-up);
* ``/healthz`` p99 under 25 ms during the burst, for each instance (a liveness probe must stay quick
  while the server sheds load).

It also checks (reported as extra lines): the token this script holds for each live session
is that session's live head, every logout answered with 204 revoked its session, no
``/auth/me`` answered for another user, and no traceback in the server logs. It reports
throughput, latency percentiles per operation (over the answers with the expected status),
answers by status, and the CPU used by the servers, this process, the prober and the rest of
the machine (other processes may be loading it: the load average is printed before and after).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import random
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _harness.db import DEFAULT_POSTGRES_URL, database, fresh_database, postgres_problem, shown
from _harness.fastclient import Client, Response
from _harness.load import closed_loop, open_loop
from _harness.procs import CpuMeter, RssSampler, Usage, rss_kib
from _harness.report import Column, Table, fmt, load_after, machine_lines, say, usable_cores
from _harness.servers import Probe, Prober, Server, serve
from _harness.stats import percentile

from authgate.wiring import new_master_key

PASSWORD = "soak: a long enough passphrase 31"  # throwaway bench accounts
ADMIN_EMAIL = "soak-admin@example.com"
MIX: tuple[tuple[str, float], ...] = (
    ("me", 0.55),
    ("refresh", 0.28),
    ("admin", 0.08),
    ("login", 0.05),
    ("logout", 0.04),
)
ADMIN_READS = ("users", "audit", "sessions", "keys")
EXPECTED = {"login": 200, "refresh": 200, "me": 200, "logout": 204, "register": 201}
SHED_CODES = frozenset({"overloaded"})
REFRESH_AFTER = 400.0  # s: an access token this old is refreshed before use (TTL 600 s)
CLIENT_TIMEOUT = 30.0
SETTLE = 5.0  # s: idle time after the last answer before the end-of-run memory samples
MAX_LAG = 1.0  # s: an arrival the generator cannot send within this is counted late, not sent
PROBE_INTERVAL = 0.020
PROBE_TIMEOUT = 5.0
HEALTHZ_P99_LIMIT_MS = 25.0
RSS_GROWTH_LIMIT = 0.10
RAMP_LEVELS = (1, 2, 4, 8, 16, 32, 64, 128)
RAMP_GAIN = 1.05


def digest(token: str) -> str:
    """What the server stores for a refresh token: SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def claims_of(jwt: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (the client only reads its own session id)."""
    part = jwt.split(".")[1]
    payload: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return payload


# --- what the load generator holds ---------------------------------------------------------


@dataclass(eq=False, slots=True)
class Session:
    """A live session as the client knows it: its tokens, and whether a request uses them."""

    sid: str
    user: int  # index in the user list; -1 for the admin
    access: str
    refresh: str
    issued: float  # time.monotonic() when the access token was obtained
    busy: bool = False  # a refresh or a logout is in flight
    readers: int = 0  # /auth/me or admin reads in flight
    pos: int = -1


class Pool:
    """The live sessions, with O(1) random pick and removal."""

    def __init__(self) -> None:
        self.items: list[Session] = []

    def __len__(self) -> int:
        return len(self.items)

    def add(self, s: Session) -> None:
        s.pos = len(self.items)
        self.items.append(s)

    def remove(self, s: Session) -> None:
        if s.pos < 0:
            return
        last = self.items.pop()
        if last is not s:
            self.items[s.pos] = last
            last.pos = s.pos
        s.pos = -1

    def pick(self, rng: random.Random, *, idle: bool = False, free: bool = False) -> Session | None:
        """A random session; ``idle``: no refresh or logout in flight; ``free``: nothing in
        flight at all. None if a few tries find none."""
        if not self.items:
            return None
        for _ in range(16):
            s = rng.choice(self.items)
            if (idle or free) and s.busy:
                continue
            if free and s.readers:
                continue
            return s
        return None


@dataclass(slots=True)
class User:
    email: str
    id: str


@dataclass(slots=True)
class OpStats:
    latencies: list[float] = field(default_factory=list)  # answers with the expected status
    statuses: Counter[str] = field(default_factory=Counter)

    @property
    def count(self) -> int:
        return sum(self.statuses.values())


@dataclass
class Phase:
    """One stretch of load: what was sent, what came back, and the clocks at its edges."""

    name: str
    rate: float | None  # offered arrivals per second (open loop), None for closed loop
    planned: float
    concurrency: int | None = None
    start: float = 0.0
    end: float = 0.0
    dispatched: int = 0
    not_sent: int = 0  # arrivals beyond --max-inflight
    late: int = 0  # arrivals this process could only dispatch more than MAX_LAG late
    budget_stop: bool = False
    lags: list[float] = field(default_factory=list)  # dispatch time - scheduled arrival
    ops: dict[str, OpStats] = field(default_factory=dict)
    five_xx: Counter[str] = field(default_factory=Counter)
    usage: Usage | None = None  # server, client (this process) and prober CPU

    def op(self, name: str) -> OpStats:
        stats = self.ops.get(name)
        if stats is None:
            stats = self.ops[name] = OpStats()
        return stats

    @property
    def elapsed(self) -> float:
        return max(1e-9, self.end - self.start)

    @property
    def ok(self) -> int:
        return sum(len(s.latencies) for s in self.ops.values())

    @property
    def answered(self) -> int:
        return sum(s.count for s in self.ops.values())


def expected_status(op: str) -> int:
    return 200 if op.startswith("admin") else EXPECTED[op]


# --- the driver ------------------------------------------------------------------------------


class Driver:
    """Sends the mix to the instances (round-robin) and keeps the books."""

    def __init__(
        self,
        clients: list[Client],
        *,
        rng: random.Random,
        max_inflight: int,
        max_requests: int,
    ) -> None:
        self.clients = clients
        self.rng = rng
        self.max_inflight = max_inflight
        self.max_requests = max_requests
        self.turn = 0
        self.sent = 0
        self.inflight = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.users: list[User] = []
        self.pool = Pool()
        self.admin: Session | None = None
        self.admin_relogin = False
        self.admin_logging_in = False
        self.min_pool = 1
        self.issued: list[tuple[str, str]] = []  # (digest, how) for every 200/201 refresh token
        self.logged_out: list[str] = []  # sids of logouts answered 204
        self.lost_sessions: Counter[str] = Counter()  # why the client gave a session up
        self.wrong_user = 0
        self.client_errors: Counter[str] = Counter()
        self.first_tracebacks: list[str] = []
        ops, weights = zip(*MIX, strict=True)
        self.ops: tuple[str, ...] = ops
        self.weights: tuple[float, ...] = weights

    def budget_left(self) -> bool:
        return self.sent < self.max_requests

    # -- HTTP ---------------------------------------------------------------------------

    async def call(
        self,
        phase: Phase,
        op: str,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        token: str | None = None,
    ) -> Response | None:
        client = self.clients[self.turn % len(self.clients)]
        self.turn += 1
        headers = {"authorization": f"Bearer {token}"} if token else None
        stats = phase.op(op)
        t0 = time.perf_counter()
        try:
            r = await client.request(method, path, json=body, headers=headers)
        except TimeoutError:
            stats.statuses["timeout"] += 1
            return None
        except OSError as exc:  # ConnectionError and the like
            stats.statuses[f"transport {type(exc).__name__}"] += 1
            return None
        latency = time.perf_counter() - t0
        status = r.status_code
        label = str(status)
        if status >= 500:
            code = "?"
            with contextlib.suppress(ValueError, AttributeError):
                doc = r.json()
                code = str(doc.get("code") or doc.get("error") or "?")
            retry_after = r.headers.get("retry-after")
            if status == 503 and retry_after and code in SHED_CODES:
                label = "503 shed"
            else:
                label = f"{status} {code}" + ("" if retry_after else " (no Retry-After)")
                phase.five_xx[f"{op}: {label}"] += 1
        stats.statuses[label] += 1
        if status == expected_status(op):
            stats.latencies.append(latency)
        return r

    # -- operations ---------------------------------------------------------------------

    def adopt(self, body: dict[str, Any], user: int, how: str) -> Session:
        s = Session(
            sid=str(claims_of(body["access_token"])["sid"]),
            user=user,
            access=body["access_token"],
            refresh=body["refresh_token"],
            issued=time.monotonic(),
        )
        self.issued.append((digest(s.refresh), how))
        return s

    def give_up(self, s: Session, why: str) -> None:
        """The client no longer knows the session's state: stop using it."""
        self.lost_sessions[why] += 1
        if s is self.admin:
            self.admin_relogin = True
        else:
            self.pool.remove(s)

    async def login(self, phase: Phase, user: int | None = None) -> None:
        u = self.rng.randrange(len(self.users)) if user is None else user
        email = ADMIN_EMAIL if u < 0 else self.users[u].email
        r = await self.call(
            phase, "login", "POST", "/auth/login", body={"email": email, "password": PASSWORD}
        )
        if r is not None and r.status_code == 200:
            s = self.adopt(r.json(), u, "login")
            if u < 0:
                self.admin = s
                self.admin_relogin = False
            else:
                self.pool.add(s)

    async def refresh(self, phase: Phase, s: Session | None = None) -> None:
        if s is None:
            s = self.pool.pick(self.rng, idle=True)
            if s is None:
                return await self.me(phase)
        s.busy = True
        try:
            r = await self.call(
                phase, "refresh", "POST", "/auth/refresh", body={"refresh_token": s.refresh}
            )
            if r is None:
                self.give_up(s, "refresh: no answer (rotated or not: unknown)")
            elif r.status_code == 200:
                got = r.json()
                s.access, s.refresh, s.issued = (
                    got["access_token"],
                    got["refresh_token"],
                    time.monotonic(),
                )
                self.issued.append((digest(s.refresh), "refresh"))
            elif r.status_code not in (429, 503):  # those rotate nothing: retry later
                self.give_up(s, f"refresh answered {r.status_code}")
        except asyncio.CancelledError:
            self.give_up(s, "refresh: cancelled")
            raise
        finally:
            s.busy = False

    async def me(self, phase: Phase) -> None:
        s = self.pool.pick(self.rng)
        if s is None:
            return await self.login(phase)
        if time.monotonic() - s.issued > REFRESH_AFTER and not s.busy:
            return await self.refresh(phase, s)
        s.readers += 1
        try:
            r = await self.call(phase, "me", "GET", "/auth/me", token=s.access)
        finally:
            s.readers -= 1
        if (
            r is not None
            and r.status_code == 200
            and r.json().get("email") != (self.users[s.user].email)
        ):
            self.wrong_user += 1

    async def logout(self, phase: Phase) -> None:
        if len(self.pool) <= self.min_pool:
            return await self.me(phase)
        s = self.pool.pick(self.rng, free=True)
        if s is None:
            return await self.me(phase)
        if time.monotonic() - s.issued > REFRESH_AFTER:
            return await self.refresh(phase, s)
        self.pool.remove(s)
        s.busy = True
        r = await self.call(phase, "logout", "POST", "/auth/logout", token=s.access)
        if r is not None and r.status_code == 204:
            self.logged_out.append(s.sid)

    async def admin_read(self, phase: Phase) -> None:
        a = self.admin
        if a is None or self.admin_relogin:
            if self.admin_logging_in:  # one re-login at a time
                return await self.me(phase)
            self.admin_logging_in = True
            try:
                return await self.login(phase, -1)
            finally:
                self.admin_logging_in = False
        if time.monotonic() - a.issued > REFRESH_AFTER and not a.busy:
            return await self.refresh(phase, a)
        kind = self.rng.choice(ADMIN_READS)
        if kind == "users":
            path = "/admin/users?limit=50"
        elif kind == "audit":
            path = "/admin/audit?limit=50"
        elif kind == "sessions":
            path = f"/admin/sessions?user={self.rng.choice(self.users).id}"
        else:
            path = "/admin/keys"
        a.readers += 1
        try:
            await self.call(phase, f"admin {kind}", "GET", path, token=a.access)
        finally:
            a.readers -= 1

    async def one(self, phase: Phase) -> None:
        op = self.rng.choices(self.ops, self.weights)[0]
        if op == "me":
            await self.me(phase)
        elif op == "refresh":
            await self.refresh(phase)
        elif op == "admin":
            await self.admin_read(phase)
        elif op == "login":
            await self.login(phase)
        else:
            await self.logout(phase)

    async def guarded(self, phase: Phase) -> None:
        self.inflight += 1
        try:
            await self.one(phase)
        except Exception as exc:  # a bug here, or a body that is not what the API promises
            self.client_errors[f"{type(exc).__name__}: {exc}"[:160]] += 1
            if len(self.first_tracebacks) < 3:
                self.first_tracebacks.append(traceback.format_exc())
        finally:
            self.inflight -= 1

    # -- load shapes --------------------------------------------------------------------

    async def closed_loop(self, phase: Phase, concurrency: int, duration: float) -> None:
        async def step(_: int) -> bool:
            if not self.budget_left():
                phase.budget_stop = True
                return False
            self.sent += 1
            phase.dispatched += 1
            await self.guarded(phase)
            return True

        await closed_loop(step, workers=concurrency, duration=duration)

    async def open_loop(self, phase: Phase, rate: float, duration: float) -> None:
        """Poisson arrivals at ``rate``/s for ``duration`` s; requests still in flight at the
        end go on (they count in this phase) while the next phase starts."""

        def arrive(lag: float) -> bool:
            if not self.budget_left():
                phase.budget_stop = True
                return False
            phase.lags.append(lag)
            if lag > MAX_LAG:  # this process could not keep up: the arrival is lost
                phase.late += 1
            elif self.inflight >= self.max_inflight:
                phase.not_sent += 1
            else:
                self.sent += 1
                phase.dispatched += 1
                task = asyncio.create_task(self.guarded(phase))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            return True

        await open_loop(arrive, rate=rate, duration=duration, rng=self.rng)

    async def drain(self, timeout: float) -> int:
        """Wait for the requests in flight; cancel what is left after ``timeout``."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=timeout)
        left = len(self.tasks)
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=5.0)
        return left


# --- one target ------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    servers: list[Server]
    database_url: str


async def set_up(driver: Driver, users: int, phase: Phase) -> None:
    """Register ``users`` accounts (4 at a time: the server's hash pool is 2 wide) and log
    the admin in. A shed registration (503) is retried after its Retry-After."""
    tag = secrets.token_hex(3)
    emails = [f"soak-{tag}-{i}@example.com" for i in range(users)]
    driver.users = [User(email, "") for email in emails]
    queue = list(range(users))

    async def worker() -> None:
        while queue:
            i = queue.pop()
            for _ in range(20):
                r = await driver.call(
                    phase,
                    "register",
                    "POST",
                    "/auth/register",
                    body={"email": emails[i], "password": PASSWORD},
                )
                if r is not None and r.status_code == 201:
                    body = r.json()
                    driver.users[i].id = body["user"]["id"]
                    driver.pool.add(driver.adopt(body, i, "register"))
                    break
                if r is not None and r.status_code not in (429, 503):
                    raise RuntimeError(f"register answered {r.status_code}: {r.text[:300]}")
                await asyncio.sleep(float(r.headers.get("retry-after", "1")) if r else 1.0)
            else:
                raise RuntimeError(f"could not register {emails[i]}")

    await asyncio.gather(*(worker() for _ in range(4)))
    await driver.login(phase, -1)
    if driver.admin is None:
        raise RuntimeError("the admin could not log in")
    driver.min_pool = max(1, users // 2)


async def run_phase(phase: Phase, meter: CpuMeter, body: Callable[[], Awaitable[None]]) -> Phase:
    before = meter.read()
    phase.start = time.monotonic()
    await body()
    phase.end = time.monotonic()
    phase.usage = meter.read() - before
    return phase


async def measure_capacity(
    driver: Driver, meter: CpuMeter, step: float, confirm: int
) -> tuple[float, list[Phase]]:
    """A closed-loop ramp; then ``confirm`` more windows at the best level. The capacity is
    the median of the best step and its confirmations: on a shared machine one step can
    catch a quiet moment of the other processes, and 70 % of that would be an overload."""
    steps: list[Phase] = []

    async def window(name: str, level: int) -> float:
        phase = Phase(name, None, step, concurrency=level)
        await run_phase(phase, meter, lambda: driver.closed_loop(phase, level, step))
        steps.append(phase)
        rate = phase.ok / phase.elapsed
        p99 = percentile([x for s in phase.ops.values() for x in s.latencies], 0.99)
        say(
            f"  {name:>12}: {rate:8.1f} ok/s, {phase.answered - phase.ok} other answers, "
            f"p99 {fmt(p99 * 1000)} ms, {ok_per_server_cpu(phase)} ok per server CPU-second"
        )
        return rate

    best, best_level, flat = 0.0, RAMP_LEVELS[0], 0
    for level in RAMP_LEVELS:
        rate = await window(f"ramp c={level}", level)
        if rate > best * RAMP_GAIN:
            flat = 0
        else:
            flat += 1
        if rate > best:
            best, best_level = rate, level
        if flat >= 2 or steps[-1].budget_stop:
            break
    rates = [best]
    for i in range(confirm):
        rates.append(await window(f"confirm c={best_level} #{i + 1}", best_level))
    capacity = statistics.median(rates)
    say(
        f"  capacity: median of {', '.join(f'{r:.1f}' for r in rates)} ok/s at "
        f"{best_level} clients = {capacity:.1f} ok/s"
    )
    return capacity, steps


# --- reporting ---------------------------------------------------------------------------------


def cpu_cells(phase: Phase) -> list[str]:
    """Cores (CPU time / wall time) of the servers, this process, the prober and the rest."""
    u = phase.usage
    if u is None:
        return ["-"] * 4
    ours = ("server", "client", "prober")
    return [f"{u.cores(name):.2f}" for name in ours] + [f"{u.others(*ours) / u.wall:.2f}"]


def ok_per_server_cpu(phase: Phase) -> str:
    if phase.usage is None or phase.usage.cpu["server"] <= 0:
        return "-"
    return fmt(phase.ok / phase.usage.cpu["server"])


PHASES = Table(
    Column("phase", left=True),
    "secs",
    "offered/s",
    "sent",
    "over cap",
    "late",
    "answered/s",
    "ok/s",
    "ok %",
    "shed 503",
    "other non-ok",
    "lag p99 ms",
    "ok/srv CPU-s",
    "srv cores",
    "client",
    "prober",
    "others",
)
OPERATIONS = Table(
    Column("operation", left=True),
    "answers",
    "ok",
    "ok/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    Column("by status", left=True),
)


def phase_table(phases: list[Phase]) -> str:
    rows = []
    for p in phases:
        shed = sum(s.statuses["503 shed"] for s in p.ops.values())
        rows.append(
            [
                p.name,
                f"{p.elapsed:.0f}",
                fmt(p.rate)
                if p.rate is not None
                else (f"closed c={p.concurrency}" if p.concurrency else "-"),
                str(p.dispatched) if p.dispatched else "-",
                str(p.not_sent),
                str(p.late),
                fmt(p.answered / p.elapsed),
                fmt(p.ok / p.elapsed),
                fmt(100.0 * p.ok / p.answered if p.answered else float("nan")),
                str(shed),
                str(p.answered - p.ok - shed),
                fmt(percentile(p.lags, 0.99) * 1000, 1) if p.lags else "-",
                ok_per_server_cpu(p),
                *cpu_cells(p),
            ]
        )
    return PHASES.render(rows)


def op_table(phase: Phase) -> str:
    rows = []
    for name in sorted(phase.ops, key=lambda n: (-phase.ops[n].count, n)):
        s = phase.ops[name]
        lat = s.latencies
        rows.append(
            [
                name,
                str(s.count),
                str(len(lat)),
                fmt(len(lat) / phase.elapsed),
                fmt(percentile(lat, 0.50) * 1000, 2),
                fmt(percentile(lat, 0.90) * 1000, 2),
                fmt(percentile(lat, 0.99) * 1000, 2),
                fmt(max(lat) * 1000, 1) if lat else "-",
                ", ".join(f"{k}: {v}" for k, v in sorted(s.statuses.items())),
            ]
        )
    return OPERATIONS.render(rows)


# --- database checks ---------------------------------------------------------------------------


@dataclass
class DbFacts:
    present: set[str]  # of the digests asked about
    heads_live: set[str]  # of the digests asked about: those not rotated
    multi_heads: list[tuple[str, int]]  # (sid, unrotated count) with count > 1
    revoked: set[str]  # of the sids asked about
    sessions: int
    tokens: int


async def db_facts(url: str, digests: list[str], heads: list[str], sids: list[str]) -> DbFacts:
    """What the database holds of the tokens and sessions the client knows."""
    live_heads = "SELECT sid, COUNT(*) FROM refresh_tokens WHERE rotated_at IS NULL GROUP BY sid"
    async with database(url) as db:
        return DbFacts(
            present=await db.column(
                "SELECT digest FROM refresh_tokens WHERE digest IN :values", values=digests
            ),
            heads_live=await db.column(
                "SELECT digest FROM refresh_tokens WHERE rotated_at IS NULL AND digest IN :values",
                values=heads,
            ),
            multi_heads=[
                (str(sid), int(n)) for sid, n in await db.rows(live_heads + " HAVING COUNT(*) > 1")
            ],
            revoked=await db.column(
                "SELECT sid FROM sessions WHERE revoked_at IS NOT NULL AND sid IN :values",
                values=sids,
            ),
            sessions=int(await db.value("SELECT COUNT(*) FROM sessions")),
            tokens=int(await db.value("SELECT COUNT(*) FROM refresh_tokens")),
        )


def log_problems(servers: list[Server]) -> tuple[int, int, list[str]]:
    """(tracebacks, ERROR/CRITICAL lines, the first few such lines) in the server logs."""
    tracebacks = errors = 0
    first: list[str] = []
    for server in servers:
        try:
            text = server.log_path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Traceback"):
                tracebacks += 1
            elif " ERROR " in line or " CRITICAL " in line or "[error" in line.lower():
                errors += 1
            else:
                continue
            if len(first) < 5:
                first.append(line[:200])
    return tracebacks, errors, first


# --- the run of one target ----------------------------------------------------------------------


@dataclass
class Verdict:
    target: str
    lines: list[tuple[bool, str]] = field(default_factory=list)
    extra: list[tuple[bool, str]] = field(default_factory=list)

    def check(self, ok: bool, text: str, *, extra: bool = False) -> None:
        (self.extra if extra else self.lines).append((ok, text))


async def soak_target(target: Target, args: argparse.Namespace, verdict: Verdict) -> None:
    servers = target.servers
    clients = [Client(s.base_url, timeout=CLIENT_TIMEOUT) for s in servers]
    rng = random.Random(args.seed)
    driver = Driver(
        clients, rng=rng, max_inflight=args.max_inflight, max_requests=args.max_requests
    )
    workdir = Path(tempfile.mkdtemp(prefix="authgate-soak-"))
    urls = [s.base_url for s in servers]
    prober = Prober(urls, workdir, interval=PROBE_INTERVAL, timeout=PROBE_TIMEOUT)
    meter = CpuMeter(
        server=lambda: sum(s.cpu_seconds() for s in servers),
        client=time.process_time,
        prober=prober.cpu_seconds,
    )
    sampler = RssSampler([s.pid for s in servers])
    sampler.start()
    phases: list[Phase] = []
    probes: list[Probe] = []
    try:
        t0 = time.monotonic()
        setup = Phase("set-up", None, 0.0)
        await run_phase(setup, meter, lambda: set_up(driver, args.users, setup))
        say(
            f"  set-up: {args.users} users registered and an admin in {time.monotonic() - t0:.1f} s"
        )

        capacity, ramp = await measure_capacity(
            driver, meter, args.ramp_step_seconds, args.confirm_steps
        )
        phases.extend(ramp)
        if capacity <= 0:
            raise RuntimeError("the ramp measured no capacity")
        steady_rate = args.steady_fraction * capacity
        burst_rate = args.burst_factor * capacity
        say(
            f"  capacity {capacity:.1f} ok/s (mixed); steady {steady_rate:.1f}/s for "
            f"{args.minutes:g} min, burst {burst_rate:.1f}/s for {args.burst_seconds:g} s, "
            f"recovery {steady_rate:.1f}/s for {args.recovery_seconds:g} s"
        )

        steady = Phase("steady", steady_rate, args.minutes * 60)
        warmup = min(60.0, 0.2 * steady.planned)

        async def steady_body() -> None:
            # progress every minute
            async def progress() -> None:
                while True:
                    await asyncio.sleep(60.0)
                    el = time.monotonic() - steady.start
                    say(
                        f"    steady {el:4.0f} s: {steady.ok} ok, "
                        f"{steady.answered - steady.ok} other, in flight {driver.inflight}, "
                        f"RSS {', '.join(str(rss_kib(s.pid)) for s in servers)} KiB"
                    )

            reporter = asyncio.create_task(progress())
            try:
                await driver.open_loop(steady, steady_rate, steady.planned)
            finally:
                reporter.cancel()

        await run_phase(steady, meter, steady_body)
        phases.append(steady)
        say(f"  steady done: {steady.ok / steady.elapsed:.1f} ok/s")

        burst = Phase("burst", burst_rate, args.burst_seconds)
        await run_phase(burst, meter, lambda: driver.open_loop(burst, burst_rate, burst.planned))
        phases.append(burst)
        say(f"  burst done: {burst.ok / burst.elapsed:.1f} ok/s, in flight {driver.inflight}")

        recovery = Phase("recovery", steady_rate, args.recovery_seconds)
        await run_phase(
            recovery, meter, lambda: driver.open_loop(recovery, steady_rate, recovery.planned)
        )
        phases.append(recovery)
        left = await driver.drain(CLIENT_TIMEOUT + 5)
        await asyncio.sleep(SETTLE)  # the end-of-run memory is read with no load at all
        await sampler.stop()
        probes = prober.stop()
        say(f"  load done ({driver.sent} requests sent, {left} cancelled at the end)")

        # --- the database ------------------------------------------------------------
        digests = [d for d, _ in driver.issued]
        heads = [digest(s.refresh) for s in driver.pool.items if not s.busy]
        if driver.admin is not None and not driver.admin_relogin and not driver.admin.busy:
            heads.append(digest(driver.admin.refresh))
        facts = await db_facts(target.database_url, digests, heads, driver.logged_out)

        # --- report ------------------------------------------------------------------
        say()
        say(f"  phases ({usable_cores()} cores; cores columns are CPU time / wall time):")
        for line in phase_table([setup, *phases]).splitlines():
            say("    " + line)
        for p in (steady, burst, recovery):
            say()
            say(f"  {p.name}: per operation (latency over the answers with the expected status)")
            for line in op_table(p).splitlines():
                say("    " + line)

        # 5xx
        all_phases = [setup, *phases]
        five = Counter[str]()
        shed = 0
        for p in all_phases:
            five.update(p.five_xx)
            shed += sum(s.statuses["503 shed"] for s in p.ops.values())
        probe_5xx = sum(1 for _, _, st, _ in probes if st >= 500)
        bad = sum(five.values()) + probe_5xx
        detail = ", ".join(f"{k}: {v}" for k, v in five.most_common(6)) or "none"
        verdict.check(
            bad == 0,
            f"no 5xx but shedding: {bad} other 5xx ({detail}; /healthz 5xx: {probe_5xx}); "
            f"{shed} deliberate 503 (Retry-After, overloaded)",
        )

        # lost writes
        missing = [(d, how) for d, how in driver.issued if d not in facts.present]
        by_how = Counter(how for _, how in driver.issued)
        miss_how = Counter(how for _, how in missing)
        verdict.check(
            not missing,
            f"no lost writes: {len(missing)} of {len(driver.issued)} refresh tokens answered "
            f"with 200/201 missing from refresh_tokens.digest (refresh {by_how['refresh']}, "
            f"login {by_how['login']}, register {by_how['register']}; missing: "
            f"{dict(miss_how) or 'none'})",
        )
        verdict.check(
            not facts.multi_heads,
            f"no family with two live heads: {len(facts.multi_heads)} sessions with more than "
            f"one unrotated refresh token (of {facts.sessions} sessions, {facts.tokens} "
            f"refresh tokens)" + (f"; e.g. {facts.multi_heads[:3]}" if facts.multi_heads else ""),
        )

        # memory
        warm_end = steady.start + warmup
        mem_ok = True
        mem_parts = []
        for i, server in enumerate(servers):
            base_w = sampler.window(i, warm_end - 5.0, warm_end + 0.5)
            steady_w = sampler.window(i, steady.end - 5.0, steady.end + 0.5)
            after_w = sampler.window(i, steady.start + warmup, float("inf"))
            final_w = sampler.last(i, 3)
            if not base_w or not steady_w or not final_w:
                mem_ok = False
                mem_parts.append(f"instance {i + 1}: too few samples")
                continue
            base = statistics.median(base_w)
            at_steady = statistics.median(steady_w)
            final = statistics.median(final_w)
            peak = max(after_w)
            g_steady = (at_steady - base) / base
            g_final = (final - base) / base
            g_peak = (peak - base) / base
            mem_ok &= max(g_steady, g_final) < RSS_GROWTH_LIMIT
            mem_parts.append(
                f"instance {i + 1} (pid {server.pid}): after warm-up {base / 1024:.1f} MiB, "
                f"end of steady {at_steady / 1024:.1f} MiB ({g_steady:+.1%}), end of run "
                f"{final / 1024:.1f} MiB ({g_final:+.1%}), peak {peak / 1024:.1f} MiB "
                f"({g_peak:+.1%}, not judged)"
            )
        verdict.check(
            mem_ok,
            f"RSS growth under {RSS_GROWTH_LIMIT:.0%} after a {warmup:.0f} s warm-up: "
            + "; ".join(mem_parts),
        )

        # healthz
        hz_ok = True
        hz_parts = []
        for i in range(len(servers)):
            lat = [
                lat if st == 200 else max(lat, PROBE_TIMEOUT)
                for start, lat, st, j in probes
                if j == i and burst.start <= start <= burst.end
            ]
            fails = sum(
                1
                for start, _, st, j in probes
                if j == i and burst.start <= start <= burst.end and st != 200
            )
            calm = [
                lat
                for start, lat, st, j in probes
                if j == i and steady.start + warmup <= start <= steady.end and st == 200
            ]
            p99 = percentile(lat, 0.99) * 1000
            hz_ok &= bool(lat) and p99 < HEALTHZ_P99_LIMIT_MS
            hz_parts.append(
                f"instance {i + 1}: {len(lat)} probes, p50 {fmt(percentile(lat, 0.5) * 1000, 2)} "
                f"p99 {fmt(p99, 2)} max {fmt(max(lat) * 1000 if lat else float('nan'), 1)} ms, "
                f"{fails} failed (steady p99 {fmt(percentile(calm, 0.99) * 1000, 2)} ms)"
            )
        verdict.check(
            hz_ok,
            f"/healthz p99 under {HEALTHZ_P99_LIMIT_MS:.0f} ms during the burst: "
            + "; ".join(hz_parts),
        )

        # extras
        not_head = len(heads) - len(set(heads) & facts.heads_live)
        verdict.check(
            not_head == 0,
            f"the client's token is the live head of each of its {len(heads)} live sessions: "
            f"{not_head} are not",
            extra=True,
        )
        unrevoked = len(driver.logged_out) - len(set(driver.logged_out) & facts.revoked)
        verdict.check(
            unrevoked == 0,
            f"every logout answered 204 revoked its session: {unrevoked} of "
            f"{len(driver.logged_out)} not revoked",
            extra=True,
        )
        verdict.check(
            driver.wrong_user == 0,
            f"/auth/me never answered for another user: {driver.wrong_user} times",
            extra=True,
        )
        tb, errs, first = log_problems(servers)
        verdict.check(
            tb == 0,
            f"server logs: {tb} tracebacks, {errs} error lines"
            + (f"; first: {first}" if first else ""),
            extra=True,
        )
        verdict.check(
            not driver.client_errors,
            f"load generator: {sum(driver.client_errors.values())} client-side exceptions"
            + (f" ({dict(driver.client_errors.most_common(3))})" if driver.client_errors else "")
            + f"; sessions given up: {dict(driver.lost_sessions) or 'none'}",
            extra=True,
        )
        for tb_text in driver.first_tracebacks:
            say("  client traceback:\n" + tb_text)
    finally:
        await sampler.stop()
        if prober.process.poll() is None:
            prober.stop()
        for task in list(driver.tasks):
            task.cancel()
        for client in clients:
            with contextlib.suppress(Exception):
                await client.aclose()
        for server in servers:
            if server.process.poll() is not None:
                say(f"  server {server.base_url} DIED (status {server.process.returncode}):")
                say(server.log_tail())
        shutil.rmtree(workdir, ignore_errors=True)


def planned_seconds(args: argparse.Namespace) -> float:
    ramp = args.ramp_step_seconds * (len(RAMP_LEVELS) + args.confirm_steps)
    return 180.0 + ramp + args.minutes * 60 + args.burst_seconds + args.recovery_seconds + 60


async def run_target(name: str, args: argparse.Namespace, verdict: Verdict) -> None:
    """``sqlite``: one instance on its own SQLite file; ``pg``: two instances on one fresh
    PostgreSQL schema, with one master key and one issuer (tokens cross over)."""
    # Every registration of the set-up comes from this one loopback address: the per-IP
    # mail budget (verification mails, 50 an hour) would refuse all but the first 50.
    env = {"AUTHGATE_MASTER_KEY": new_master_key(), "AUTHGATE_MAIL_IP_LIMIT": "1000000"}
    env.update(item.split("=", 1) for item in args.server_env)
    if name == "pg":  # otherwise the issuer is each server's own URL
        env["AUTHGATE_ISSUER"] = "http://127.0.0.1:1"
    async with fresh_database(args.pg_url if name == "pg" else None) as url:
        with contextlib.ExitStack() as stack:
            # One after the other: the first migrates the database before the second starts.
            servers = [
                stack.enter_context(serve(env=env, database_url=url))
                for _ in range(2 if name == "pg" else 1)
            ]
            servers[0].cli("roles", "add", "admin", "--permission", "authgate:admin")
            add_admin = ("users", "add", ADMIN_EMAIL, "--role", "admin", "--password-stdin")
            servers[0].cli(*add_admin, stdin=PASSWORD + "\n")
            for s in servers:
                say(f"  server {s.base_url}, pid {s.pid}, database {shown(s.database_url)}")
            await soak_target(Target(name, servers, servers[0].database_url), args, verdict)


async def main_async(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    assert me is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, me.cancel)

    say(f"authgate soak, {time.strftime('%Y-%m-%d %H:%M:%S')}")
    for line in machine_lines("httptools", "uvicorn", "argon2-cffi"):
        say(line)
    say(
        "servers: authgate serve, 1 uvicorn worker each, argon2id defaults (m=19 MiB t=2 p=1), "
        "hash concurrency 2, hash queue 64; mix: " + ", ".join(f"{op} {w:.0%}" for op, w in MIX)
    )
    if args.server_env:
        say("server settings: " + ", ".join(args.server_env))
    say(
        f"plan per target: ramp steps of {args.ramp_step_seconds:g} s, steady "
        f"{args.steady_fraction:.0%} of capacity for {args.minutes:g} min, burst "
        f"{args.burst_factor:g}x for {args.burst_seconds:g} s, recovery "
        f"{args.recovery_seconds:g} s; {args.users} users; at most {args.max_inflight} "
        f"in flight and {args.max_requests} "
        f"requests; seed {args.seed}"
    )
    verdicts: list[Verdict] = []
    for name in args.targets:
        say()
        say(
            f"== target {name}: "
            + ("1 instance, SQLite" if name == "sqlite" else "2 instances, PostgreSQL, round-robin")
            + " =="
        )
        verdict = Verdict(name)
        verdicts.append(verdict)
        if name == "pg":
            why = await postgres_problem(args.pg_url)
            if why is not None:
                where = shown(args.pg_url)
                verdict.check(False, f"SKIPPED: PostgreSQL at {where} unreachable: {why}")
                say(f"  skipped: {why}")
                continue
        deadline = planned_seconds(args) * 1.25 + 300
        started = time.monotonic()
        try:
            async with asyncio.timeout(deadline):
                await run_target(name, args, verdict)
        except TimeoutError:
            verdict.check(False, f"ABORTED: the target ran past its hard limit of {deadline:.0f} s")
        except asyncio.CancelledError:
            verdict.check(False, "ABORTED: interrupted")
            say("  interrupted")
            break
        except Exception as exc:
            verdict.check(False, f"ERROR: {type(exc).__name__}: {exc}")
            say(traceback.format_exc())
        say(f"  target {name} took {time.monotonic() - started:.0f} s")

    say()
    say("== results ==")
    for v in verdicts:
        for ok, text in v.lines:
            say(f"{'PASS' if ok else 'FAIL'}  [{v.target}] {text}")
        for ok, text in v.extra:
            say(f"{'PASS' if ok else 'FAIL'}  [{v.target}] (extra) {text}")
    say(load_after())
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="steady load per target")
    parser.add_argument("--burst-seconds", type=float, default=60.0)
    parser.add_argument("--recovery-seconds", type=float, default=None)
    parser.add_argument("--ramp-step-seconds", type=float, default=8.0)
    parser.add_argument(
        "--confirm-steps", type=int, default=3, help="windows re-measured at the best level"
    )
    parser.add_argument("--steady-fraction", type=float, default=0.7)
    parser.add_argument("--burst-factor", type=float, default=3.0)
    parser.add_argument("--targets", default="sqlite,pg", help="sqlite, pg or both")
    parser.add_argument("--pg-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--max-inflight", type=int, default=256)
    parser.add_argument("--max-requests", type=int, default=2_000_000, help="per target")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an AUTHGATE_* setting for every server (repeatable), e.g. AUTHGATE_MAX_IN_FLIGHT=32",
    )
    args = parser.parse_args()
    for item in args.server_env:
        name, sep, _ = item.partition("=")
        if not sep or not name.startswith("AUTHGATE_"):
            parser.error(f"--server-env takes AUTHGATE_NAME=VALUE, not {item!r}")
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not args.targets or any(t not in ("sqlite", "pg") for t in args.targets):
        parser.error("--targets takes sqlite, pg or sqlite,pg")
    if args.recovery_seconds is None:
        args.recovery_seconds = 30.0 if args.minutes >= 5 else 10.0
    for name in (
        "minutes",
        "burst_seconds",
        "ramp_step_seconds",
        "steady_fraction",
        "burst_factor",
    ):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.users < 2 or args.max_inflight < 1 or args.max_requests < 1:
        parser.error("--users >= 2, --max-inflight and --max-requests >= 1")
    if args.confirm_steps < 0:
        parser.error("--confirm-steps must not be negative")
    if args.seed is None:
        args.seed = secrets.randbelow(2**31)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main_async(args))
    return uvloop.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
