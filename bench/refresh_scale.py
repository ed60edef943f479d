"""Refresh latency as the sessions table grows, on SQLite and on PostgreSQL.

Run: ``.venv/bin/python bench/refresh_scale.py [--sizes 10000,100000,1000000]
[--backends sqlite,postgresql] [--samples 600] [--budget 300]``

For each backend it builds a fresh database (SQLite: a file in a temporary folder;
PostgreSQL: a schema ``ag_bench_<random>``, selected with ``?search_path=``, on the server of
``AUTHGATE_TEST_POSTGRES_URL``, default ``postgresql://postgres@127.0.0.1:5432/test``,
dropped afterwards; see ``_harness/db.py``), migrates it, and opens authgate's own services
on it (the store, the keyring, ``Sessions``: the code ``POST /auth/refresh`` runs, without
the HTTP layer). Then, for each size, it grows the tables to that many sessions by bulk
inserts straight into the tables (one user per 100 sessions; each session has two refresh
tokens, a rotated parent and its live successor: ``refresh_tokens`` holds twice the
sessions), and measures, on 20 real sessions made with ``Sessions.start``:

* ``refresh``: ``Sessions.refresh`` (read the token with its session and user, the
  compare-and-set rotation, a new access token), each chain rotating its own token;
* ``access``: ``Sessions.authenticate`` (what ``/auth/me`` and every protected route do).

It reports p50 and p99 in milliseconds. The machine's load changes while the tables grow, so
each size is measured in slices that alternate with a second, reference database kept at the
smallest size: ``ratio`` (p50 at this size over the reference's p50 measured alongside) is the
figure that says whether latency grows. It also shows the query plans of every statement that
a refresh and an access check run (captured from the engine, then ``EXPLAIN``-ed at that
size): ``index`` when no statement scans a table that grows (users, sessions, refresh_tokens),
otherwise the scans. PostgreSQL plans with ``enable_seqscan = off``, so that a scan shows only
where no index fits the statement (the planner rightly seq-scans a table of a few pages, such
as the users at the smallest size). After each growth the tables are ``VACUUM (ANALYZE)``-d
and a ``CHECKPOINT`` runs (SQLite: a WAL checkpoint): the state of tables that grew over
months, rather than the minutes right after a bulk load. The target is a flat line: a ratio
near 1 at 10^6 sessions (the verdict says ``flat`` under 1.5, with every statement on an
index).

``--budget`` caps the whole run (seconds): a size whose insert would not fit, judged from the
rate of the previous ones, is skipped and reported as such.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _harness.db import DEFAULT_POSTGRES_URL, pg_connect, postgres_schema
from _harness.report import Column, Table, machine_lines, say
from _harness.stats import percentile
from sqlalchemy import event
from sqlalchemy.engine import make_url

from authgate.settings import Settings
from authgate.storage.sql import migrate, open_storage
from authgate.wiring import Services, new_master_key

POSTGRES_URL = os.environ.get("AUTHGATE_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
SESSIONS_PER_USER = 100
LIVE_CHAINS = 20
SLICES = 6
GROWING_TABLES = ("users", "sessions", "refresh_tokens")
CHUNK = 50_000
DAY = 86400.0
DUMMY_HASH = "$argon2id$v=19$m=1024,t=1,p=1$YmVuY2hiZW5jaGJlbmNo$" + "A" * 43


@dataclass
class Row:
    """One line of the table."""

    backend: str
    sessions: int
    tokens: int
    insert_s: float
    refresh: list[float] = field(default_factory=list)
    access: list[float] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)  # refreshes at the smallest size
    plan: str = ""
    skipped: str = ""


def ms(values: list[float], q: float) -> float:
    """The q-th percentile (``q`` in 0..100, nearest rank), in milliseconds."""
    return percentile(values, q / 100) * 1000


# --- bulk data ------------------------------------------------------------------------------


def _batches(start: int, stop: int, now: float) -> Iterator[tuple[list[tuple[Any, ...]], ...]]:
    """(users, sessions, tokens) rows for sessions start..stop-1, in chunks."""
    for lo in range(start, stop, CHUNK):
        hi = min(stop, lo + CHUNK)
        users: list[tuple[Any, ...]] = []
        sessions: list[tuple[Any, ...]] = []
        tokens: list[tuple[Any, ...]] = []
        for i in range(lo, hi):
            user = f"usr_bench_{i // SESSIONS_PER_USER}"
            if i % SESSIONS_PER_USER == 0:
                users.append(
                    (user, f"bench{i // SESSIONS_PER_USER}@example.com", DUMMY_HASH, now, 0)
                )
            sid = f"sid_bench_{i}"
            sessions.append((sid, user, now, now, now + 90 * DAY))
            parent, head = secrets.token_hex(32), secrets.token_hex(32)
            tokens.append((parent, sid, now, now + 14 * DAY, None, now, head))
            tokens.append((head, sid, now, now + 14 * DAY, parent, None, None))
        yield users, sessions, tokens


_USER_COLS = ("id", "email", "password_hash", "created_at", "ver")
_SESSION_COLS = ("sid", "user_id", "created_at", "last_used_at", "expires_at")
_TOKEN_COLS = (
    "digest",
    "sid",
    "created_at",
    "idle_expires_at",
    "parent",
    "rotated_at",
    "successor",
)


def grow_sqlite(path: Path, start: int, stop: int, now: float) -> None:
    """Insert sessions start..stop-1 with sqlite3, in one transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # this loading connection only
        conn.execute("BEGIN IMMEDIATE")
        for users, sessions, tokens in _batches(start, stop, now):
            conn.executemany(
                "INSERT INTO users (id, email, password_hash, created_at, ver, disabled) "
                "VALUES (?, ?, ?, ?, ?, 0)",
                users,
            )
            conn.executemany(
                "INSERT INTO sessions (sid, user_id, created_at, last_used_at, expires_at, "
                "client_id) VALUES (?, ?, ?, ?, ?, 'authgate')",
                sessions,
            )
            conn.executemany(
                f"INSERT INTO refresh_tokens ({', '.join(_TOKEN_COLS)}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                tokens,
            )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # as the server would, over time
    finally:
        conn.close()


async def grow_postgresql(url: str, start: int, stop: int, now: float) -> None:
    """COPY sessions start..stop-1 in, then VACUUM (ANALYZE) and CHECKPOINT."""
    conn = await pg_connect(url)
    try:
        for users, sessions, tokens in _batches(start, stop, now):
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "users",
                    records=[(*u, False, None) for u in users],
                    columns=[*_USER_COLS, "disabled", "name"],
                )
                await conn.copy_records_to_table(
                    "sessions",
                    records=[(*s, "authgate") for s in sessions],
                    columns=[*_SESSION_COLS, "client_id"],
                )
                await conn.copy_records_to_table(
                    "refresh_tokens", records=tokens, columns=_TOKEN_COLS
                )
        # What autovacuum would have done to tables that grew over months (statistics, the
        # visibility map), and the checkpoint the bulk load would have spread out.
        for table in GROWING_TABLES:
            await conn.execute(f"VACUUM (ANALYZE) {table}")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


# --- plans --------------------------------------------------------------------------------


class Capture:
    """Statements the store's engine runs (with their real parameters), while on."""

    def __init__(self, engine: Any) -> None:
        self.on = False
        self.statements: list[tuple[str, Any]] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if self.on and statement.lstrip().split(None, 1)[0].upper() in (
            "SELECT",
            "UPDATE",
            "INSERT",
            "DELETE",
            "WITH",
        ):
            self.statements.append((statement, params))


def _scans_sqlite(path: Path, statements: list[tuple[str, Any]]) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    scans = []
    try:
        for statement, params in statements:
            for row in conn.execute("EXPLAIN QUERY PLAN " + statement, params):
                detail = str(row[-1])
                if detail.startswith("SCAN ") and any(t in detail for t in GROWING_TABLES):
                    scans.append(detail)
    finally:
        conn.close()
    return scans


async def _scans_postgresql(url: str, statements: list[tuple[str, Any]]) -> list[str]:
    conn = await pg_connect(url)
    scans = []
    try:
        # A seq scan of a small table is the planner's right choice; with seq scans priced
        # out, one that remains means that no index fits the statement.
        await conn.execute("SET enable_seqscan = off")
        for statement, params in statements:
            args = list(params) if isinstance(params, list | tuple) else []
            for row in await conn.fetch("EXPLAIN " + statement, *args):
                line = str(row[0]).strip()
                if "Seq Scan" in line and any(f" on {t}" in line for t in GROWING_TABLES):
                    scans.append(line)
    finally:
        await conn.close()
    return scans


# --- one backend ----------------------------------------------------------------------------


@dataclass
class Target:
    """One database, with authgate's services open on it and live chains to rotate."""

    backend: str
    url: str
    svc: Services
    capture: Capture
    chains: list[dict[str, str]]
    have: int = 0

    @classmethod
    async def open(cls, backend: str, url: str) -> Target:
        await migrate(url)
        storage = await open_storage(url, pool_size=4)
        capture = Capture(storage._engine)
        settings = Settings.from_env(
            {
                "AUTHGATE_DATABASE_URL": url,
                "AUTHGATE_MASTER_KEY": new_master_key(),
                "AUTHGATE_ARGON2_MEMORY_KIB": "1024",
                "AUTHGATE_ARGON2_TIME_COST": "1",
            }
        )
        svc = await Services.open(settings, storage)
        user = await svc.accounts.create_user("live@example.com", "a bench passphrase 123")
        chains = []
        for _ in range(LIVE_CHAINS):
            pair = await svc.sessions.start(user, ip="127.0.0.1", user_agent="bench")
            chains.append({"refresh": pair.refresh_token, "access": pair.access_token})
        target = cls(backend, url, svc, capture, chains)
        await target.measure(2 * LIVE_CHAINS)  # warm-up: pools, caches, the keyring
        return target

    async def grow(self, size: int, now: float) -> float:
        """Grow to ``size`` sessions; the seconds it took."""
        started = time.monotonic()
        if self.backend == "sqlite":
            path = Path(make_url(self.url).database or "")
            await asyncio.to_thread(grow_sqlite, path, self.have, size, now)
        else:
            await grow_postgresql(self.url, self.have, size, now)
        self.have = size
        return time.monotonic() - started

    async def measure(self, samples: int) -> tuple[list[float], list[float]]:
        """Seconds per refresh and per access check, ``samples`` of each."""
        refresh: list[float] = []
        access: list[float] = []
        for i in range(samples):
            chain = self.chains[i % len(self.chains)]
            started = time.perf_counter()
            pair = await self.svc.sessions.refresh(chain["refresh"], ip=None)
            refresh.append(time.perf_counter() - started)
            chain["refresh"], chain["access"] = pair.refresh_token, pair.access_token
            started = time.perf_counter()
            await self.svc.sessions.authenticate(chain["access"])
            access.append(time.perf_counter() - started)
        return refresh, access

    async def plan(self) -> str:
        """``index``, or the scans of the statements one refresh and one access check run."""
        self.capture.statements.clear()
        self.capture.on = True
        await self.measure(1)
        self.capture.on = False
        if self.backend == "sqlite":
            path = Path(make_url(self.url).database or "")
            scans = _scans_sqlite(path, self.capture.statements)
        else:
            scans = await _scans_postgresql(self.url, self.capture.statements)
        return "index" if not scans else "; ".join(sorted(set(scans)))


async def run_backend(
    backend: str, urls: tuple[str, str], sizes: list[int], samples: int, deadline: float
) -> list[Row]:
    """Grow one database size by size; at each size, measure it in slices that alternate
    with a reference database kept at the smallest size, so that a change in the machine's
    load hits both alike."""
    reference = await Target.open(backend, urls[0])
    grown = await Target.open(backend, urls[1])
    rows: list[Row] = []
    try:
        now = time.time()
        await reference.grow(sizes[0], now)
        rate = None  # seconds per session inserted so far
        for size in sizes:
            if rate is not None and time.monotonic() + rate * (size - grown.have) * 1.2 > deadline:
                rows.append(Row(backend, size, 2 * size, 0.0, skipped="over the --budget"))
                continue
            before = grown.have
            took = await grown.grow(size, now)
            rate = took / (size - before)
            row = Row(backend, size, 2 * size, took)
            per_slice = max(1, samples // SLICES)
            for _ in range(SLICES):
                refresh, access = await grown.measure(per_slice)
                row.refresh += refresh
                row.access += access
                refresh, _ = await reference.measure(per_slice)
                row.reference += refresh
            row.plan = await grown.plan()
            rows.append(row)
            _print_row(row)
    finally:
        await grown.svc.close()
        await reference.svc.close()
    return rows


# --- output -------------------------------------------------------------------------------

TABLE = Table(
    Column("backend", 11, left=True),
    Column("sessions", 10),
    Column("tokens", 10),
    Column("insert s", 9),
    Column("refresh p50", 12),
    Column("p99", 8),
    Column("ref p50", 8),
    Column("ratio", 6),
    Column("access p50", 11),
    Column("p99", 8),
    Column("plan", left=True),
    gap=" ",
)


def _ratio(row: Row) -> float:
    return ms(row.refresh, 50) / ms(row.reference, 50)


def _cells(row: Row) -> list[str]:
    if row.skipped:
        return [row.backend, f"{row.sessions:,}", "", "", f"skipped: {row.skipped}"]
    return [
        row.backend,
        f"{row.sessions:,}",
        f"{row.tokens:,}",
        f"{row.insert_s:.1f}",
        f"{ms(row.refresh, 50):.2f}ms",
        f"{ms(row.refresh, 99):.2f}ms",
        f"{ms(row.reference, 50):.2f}ms",
        f"{_ratio(row):.2f}",
        f"{ms(row.access, 50):.2f}ms",
        f"{ms(row.access, 99):.2f}ms",
        row.plan,
    ]


def _print_row(row: Row) -> None:
    say(TABLE.row(_cells(row)))


def _flatness(rows: list[Row]) -> None:
    for backend in dict.fromkeys(r.backend for r in rows):
        measured = [r for r in rows if r.backend == backend and not r.skipped]
        if not measured:
            continue
        large = measured[-1]
        ratio = _ratio(large)
        indexed = all(r.plan == "index" for r in measured)
        verdict = "flat" if ratio < 1.5 and indexed else "GROWS"
        say(
            f"{backend}: refresh p50 at {large.sessions:,} sessions is x{ratio:.2f} the p50 at "
            f"{measured[0].sessions:,} measured alongside; "
            f"{'every statement uses an index' if indexed else 'some statement scans'}: {verdict}"
        )


async def _sqlite(sizes: list[int], samples: int, deadline: float) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="authgate-scale-") as tmp:
        urls = (f"sqlite:///{Path(tmp) / 'reference.db'}", f"sqlite:///{Path(tmp) / 'grown.db'}")
        return await run_backend("sqlite", urls, sizes, samples, deadline)


async def _postgresql(sizes: list[int], samples: int, deadline: float) -> list[Row]:
    async with contextlib.AsyncExitStack() as stack:
        reference = await stack.enter_async_context(postgres_schema(POSTGRES_URL))
        grown = await stack.enter_async_context(postgres_schema(POSTGRES_URL))
        return await run_backend("postgresql", (reference, grown), sizes, samples, deadline)


async def main_async(args: argparse.Namespace) -> int:
    sizes = sorted(int(s) for s in args.sizes.split(","))
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"sqlite", "postgresql"}
    if unknown:
        print(f"unknown backends: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    deadline = time.monotonic() + args.budget
    for line in machine_lines("sqlalchemy", "aiosqlite", "asyncpg"):
        say(line)
    say(
        f"authgate refresh latency vs table size; {args.samples} samples per size over "
        f"{LIVE_CHAINS} chains, in {SLICES} slices alternating with a reference database of "
        f"{sizes[0]:,} sessions (ref p50; ratio = refresh p50 / ref p50)"
    )
    say(TABLE.head())
    rows: list[Row] = []
    for index, backend in enumerate(backends):
        # Each backend gets its share of what is left of the budget.
        share = (deadline - time.monotonic()) / (len(backends) - index)
        backend_deadline = time.monotonic() + share
        try:
            if backend == "sqlite":
                rows += await _sqlite(sizes, args.samples, backend_deadline)
            else:
                rows += await _postgresql(sizes, args.samples, backend_deadline)
        except OSError as exc:  # PostgreSQL unreachable: report, go on
            say(f"{backend}: skipped ({type(exc).__name__}: {exc})")
    say()
    say(TABLE.render(_cells(row) for row in rows))
    _flatness(rows)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="session counts")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--samples", type=int, default=600, help="refreshes measured per size")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds for the whole run")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
