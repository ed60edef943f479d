"""Real ``authgate serve`` processes sharing one PostgreSQL database and Redis: the harness
of tests/scaleout, tests/faults and tests/deploy.

Each test module gets a fresh database (``CREATE DATABASE ag_<random>`` on the test
PostgreSQL server of ``_support.services``), dropped afterwards. Redis is the test Redis
(db 14 by default); the tests use unique emails, so runs never share counters. When a
service is unreachable the tests skip, or fail with ``AUTHGATE_REQUIRE_SERVICES=1``.

Other test folders import this module as ``scaleout._cluster`` (pytest puts ``tests/`` on
``sys.path``: its sub-folders are packages, ``tests/`` itself is not).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from sqlalchemy.engine import make_url

from _support.cli import AUTHGATE, add_role, add_user, run_cli
from _support.http import ADMIN_PERMISSION, PASSWORD, new_email
from _support.live import free_port
from _support.services import (
    clean_environ,
    postgres_dsn,
    postgres_url,
    redis_url,
    require_redis,
    run_in_thread,
    unavailable,
)
from authgate.wiring import new_master_key

POSTGRES_URL: Final = postgres_url()
REDIS_URL: Final = redis_url(14)
ISSUER: Final = "http://authgate.cluster.test"
READY_TIMEOUT: Final = 60.0

# Cheap argon2, small pools (several instances share one PostgreSQL), fast throttle delays,
# and a per-IP limit out of reach: every test client is 127.0.0.1, and the per-IP counter
# lives in the shared Redis for 15 minutes, across test runs.
BASE_ENV: Final = {
    "AUTHGATE_ARGON2_MEMORY_KIB": "1024",
    "AUTHGATE_ARGON2_TIME_COST": "1",
    "AUTHGATE_DB_POOL_SIZE": "3",
    "AUTHGATE_THROTTLE_BASE_DELAY": "1ms",
    "AUTHGATE_THROTTLE_IP_LIMIT": "1000000",
    "AUTHGATE_MAIL_IP_LIMIT": "1000000",
    "AUTHGATE_LOG_FORMAT": "console",
}


# --- PostgreSQL ---------------------------------------------------------------------------


def database_url(name: str, base: str = POSTGRES_URL) -> str:
    """``base`` pointing at database ``name``."""
    return make_url(base).set(database=name).render_as_string(hide_password=False)


async def _pg_execute(dsn: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def require_postgres() -> str:
    """The server URL; skip or fail if it is unreachable."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        unavailable("asyncpg is not installed (pip install 'authgate[postgres]')")
    try:
        run_in_thread(_pg_execute(postgres_dsn(POSTGRES_URL), "SELECT 1"))
    except Exception as exc:
        shown = make_url(POSTGRES_URL).render_as_string(hide_password=True)
        unavailable(f"PostgreSQL at {shown} is unreachable ({type(exc).__name__}: {exc})")
    return POSTGRES_URL


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty database ``ag_<random>``; yields its URL and drops it afterwards (with
    FORCE: a killed instance may leave connections behind for a moment)."""
    base = require_postgres()
    name = "ag_" + secrets.token_hex(6)
    run_in_thread(_pg_execute(postgres_dsn(base), f"CREATE DATABASE {name}"))
    try:
        yield database_url(name, base)
    finally:
        drop = f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        run_in_thread(_pg_execute(postgres_dsn(base), drop))


async def _pg_fetch(url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    import asyncpg

    conn = await asyncpg.connect(postgres_dsn(url), timeout=5)
    try:
        return [dict(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


def pg_fetch(url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows of a query on the database at ``url``, as dicts."""
    return run_in_thread(_pg_fetch(url, sql, *args))


# --- instances ----------------------------------------------------------------------------


@dataclass
class Instance:
    """One ``python -m authgate serve`` subprocess."""

    name: str
    env: dict[str, str]
    directory: Path
    args: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """Where its output goes."""
        return self.directory / f"{self.name}.log"

    @property
    def pid(self) -> int:
        """The serve process id."""
        assert self.process is not None
        return self.process.pid

    def spawn(self) -> Instance:
        """Start the process (without waiting for it to answer)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*AUTHGATE, "serve", "--port", str(self.port), *self.args],
                cwd=self.directory,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> Instance:
        """Wait until ``GET /readyz`` answers 200."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2.0) as client:
            while True:
                code = self.process.poll()
                if code is not None:
                    raise RuntimeError(
                        f"instance {self.name} exited with {code}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/readyz").status_code == 200:
                        return self
                if time.monotonic() > deadline:
                    raise RuntimeError(f"instance {self.name} is not ready:\n{self.log_tail()}")
                time.sleep(0.05)  # polling for startup, not passing time

    def kill9(self) -> None:
        """SIGKILL the process (and its workers, which would otherwise linger)."""
        assert self.process is not None
        for child in descendants(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        children = descendants(self.process.pid)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill9()
        for child in children:  # workers of a killed master
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)

    def log_tail(self, lines: int = 60) -> str:
        """The end of its output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def client(self, **kwargs: Any) -> httpx.Client:
        """A client for this instance."""
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 30.0), **kwargs)

    def metrics(self) -> str:
        """Its /metrics text (one worker's, with --workers)."""
        r = httpx.get(self.url + "/metrics", timeout=10.0)
        assert r.status_code == 200, r.text
        return r.text


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        with contextlib.suppress(OSError, ValueError):
            for child in Path(f"/proc/{pid}/task/{tid}/children").read_text().split():
                out.append(int(child))
                out.extend(descendants(int(child)))
    return out


def instance_env(
    database: str, *, master_key: str, redis: str | None = None, **extra: str
) -> dict[str, str]:
    """The environment of an instance: this one without AUTHGATE_*, then BASE_ENV, the
    database, Redis and the master key, then ``extra``."""
    env = clean_environ()
    env.update(BASE_ENV)
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "AUTHGATE_DATABASE_URL": database,
            "AUTHGATE_MASTER_KEY": master_key,
            "AUTHGATE_ISSUER": ISSUER,
        }
    )
    if redis is not None:
        env["AUTHGATE_REDIS_URL"] = redis
    env.update(extra)
    return env


@dataclass
class Cluster:
    """Instances sharing one database (and Redis): ``cluster["a"]``, ``cluster["b"]``."""

    database: str
    master_key: str
    redis: str | None
    directory: Path
    instances: dict[str, Instance] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Instance:
        return self.instances[name]

    def env(self, **extra: str) -> dict[str, str]:
        """The environment every instance of this cluster gets."""
        return instance_env(self.database, master_key=self.master_key, redis=self.redis, **extra)

    def start(
        self, names: Sequence[str], *, args: tuple[str, ...] = (), **extra: str
    ) -> list[Instance]:
        """Start instances at once (they migrate concurrently), then wait for each."""
        started = [
            Instance(name, self.env(**extra), self.directory, args).spawn() for name in names
        ]
        for inst in started:
            self.instances[inst.name] = inst
        for inst in started:
            inst.wait_ready()
        return started

    def restart(self, name: str) -> Instance:
        """Start a stopped instance again, on the same port."""
        old = self.instances[name]
        old.stop()
        inst = Instance(name, old.env, self.directory, old.args, port=old.port).spawn()
        self.instances[name] = inst
        return inst.wait_ready()

    def stop(self) -> None:
        """Stop every instance."""
        for inst in self.instances.values():
            inst.stop()

    def cli(self, *args: str, stdin: str | None = None, **extra: str) -> str:
        """Run ``python -m authgate ARGS`` against this cluster's database; its stdout."""
        done = run_cli(self.directory, *args, env=self.env(**extra), stdin=stdin)
        assert done.returncode == 0, f"authgate {' '.join(args)}: {done.stderr}"
        return done.stdout

    def make_admin(self, email: str | None = None) -> str:
        """Create an admin through the CLI (as an operator does); return its email."""
        email = email or new_email("admin")
        self.cli(*add_role("admin", ADMIN_PERMISSION))
        self.cli(*add_user(email, "admin"), stdin=PASSWORD)
        return email

    def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """Rows from the shared database."""
        return pg_fetch(self.database, sql, *args)


@contextlib.contextmanager
def cluster(
    tmp: Path,
    names: Sequence[str] = ("a", "b"),
    *,
    redis: str | None = REDIS_URL,
    database: str | None = None,
    args: tuple[str, ...] = (),
    **extra: str,
) -> Iterator[Cluster]:
    """Instances ``names`` on a fresh database (or ``database``) and ``redis``, sharing one
    master key; stopped (and the database dropped) afterwards."""
    if redis is not None and redis == REDIS_URL:
        require_redis(redis)
    with contextlib.ExitStack() as stack:
        db = database or stack.enter_context(fresh_database())
        tmp.mkdir(parents=True, exist_ok=True)
        group = Cluster(db, new_master_key(), redis, tmp)
        stack.callback(group.stop)
        if names:
            try:
                group.start(names, args=args, **extra)
            except RuntimeError as exc:
                pytest.fail(str(exc), pytrace=False)
        yield group


# --- what the instances expose -----------------------------------------------------------


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
    total = 0.0
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if match is None or match.group(1) != name:
            continue
        have = dict(_LABEL.findall(match.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
    return total


def refresh_digest(token: str) -> str:
    """The stored form of a refresh token (SHA-256, hex), as authgate stores it."""
    import hashlib

    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def family_violations(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """What is wrong with the refresh families in ``rows`` (digest, sid, parent,
    successor, rotated_at): a family with two live heads, two tokens with one parent, or a
    rotated token whose successor is missing or names another parent."""
    problems: list[str] = []
    heads: dict[str, int] = {}
    children: dict[str, int] = {}
    by_digest = {r["digest"]: r for r in rows}
    for r in rows:
        if r["rotated_at"] is None:
            heads[r["sid"]] = heads.get(r["sid"], 0) + 1
        if r["parent"] is not None:
            children[r["parent"]] = children.get(r["parent"], 0) + 1
        if r["successor"] is not None:
            child = by_digest.get(r["successor"])
            if child is None or child["parent"] != r["digest"] or child["sid"] != r["sid"]:
                problems.append(f"rotated token {r['digest'][:12]} has no matching successor")
    problems += [f"family {sid} has {n} live heads" for sid, n in heads.items() if n > 1]
    problems += [f"token {p[:12]} has {n} children" for p, n in children.items() if n > 1]
    return problems


def cleanup_dir(path: Path) -> None:
    """Remove a folder (best effort)."""
    shutil.rmtree(path, ignore_errors=True)
