"""A real authgate server for the API tests: uvicorn in a background thread, on a free port,
a temporary SQLite file, an injected FixedClock and a sleep that only records its delays."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn
from fastapi import FastAPI

from authgate.clock import FixedClock
from authgate.errors import NotFound
from authgate.server.app import create_app
from authgate.settings import Settings
from authgate.wiring import Services, new_master_key

T = TypeVar("T")

START = 1_700_000_000.0
STARTUP_TIMEOUT = 30.0
ADMIN_PERMISSION = "authgate:admin"
PASSWORD = "correct horse battery staple 42"

# Cheap argon2 for speed; one test checks that the defaults are used when these are absent.
FAST_ARGON2 = {"AUTHGATE_ARGON2_MEMORY_KIB": "1024", "AUTHGATE_ARGON2_TIME_COST": "1"}


@dataclass
class SleepRecorder:
    """The injected sleep: records the delays asked for and returns at once."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def base_env(tmp_path: Path, *, master_key: str | None = None) -> dict[str, str]:
    """The environment of a test server: a fresh master key and a database in tmp_path."""
    return {
        "AUTHGATE_MASTER_KEY": master_key or new_master_key(),
        "AUTHGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'authgate.db'}",
        **FAST_ARGON2,
    }


class LiveServer:
    """One running server. ``client`` talks HTTP to it; ``call`` runs a coroutine on the
    server's own event loop (the database engine is bound to it)."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: FixedClock,
        sleeps: SleepRecorder,
        maintenance_interval: float = 3600.0,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.sleeps = sleeps
        self.app: FastAPI = create_app(
            settings, clock=clock, sleep=sleeps, maintenance_interval=maintenance_interval
        )
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            lifespan="on",
            log_level="warning",
            loop="asyncio",
            access_log=False,
            proxy_headers=False,  # as `authgate serve`: the app decides whom to believe
        )
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="authgate-test-server", daemon=True)
        self.client: httpx.Client | None = None
        self.url = ""

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        try:
            loop.run_until_complete(self.server.serve())
        except BaseException as exc:  # SystemExit on a failed startup, too
            self.error = exc
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def start(self) -> LiveServer:
        """Start and wait until the server listens (or its startup failed)."""
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server did not start") from self.error
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the server did not start in time")
            time.sleep(0.005)  # waiting for startup, not for time to pass
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(base_url=self.url, timeout=30.0)
        return self

    def stop(self) -> None:
        """Stop the server and wait for its thread."""
        if self.client is not None:
            self.client.close()
            self.client = None
        self.server.should_exit = True
        self._thread.join(timeout=STARTUP_TIMEOUT)
        assert not self._thread.is_alive(), "the server thread did not stop"

    @property
    def http(self) -> httpx.Client:
        """The HTTP client bound to this server."""
        assert self.client is not None, "the server is not running"
        return self.client

    @property
    def services(self) -> Services:
        """The app's services (only while running)."""
        svc: Services = self.app.state.services
        return svc

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop and return its result."""
        assert self.loop is not None
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout=STARTUP_TIMEOUT)

    @property
    def db_path(self) -> Path:
        """The SQLite file."""
        url = self.settings.database_url
        return Path(url.split(":///", 1)[1])

    def db(self) -> sqlite3.Connection:
        """A direct, read-only connection to the database file."""
        return sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)

    # --- helpers ------------------------------------------------------------------------

    def register(self, email: str, password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
        """Register an account through the API; return the token response."""
        r = self.http.post("/auth/register", json={"email": email, "password": password, **extra})
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body

    def login(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        """Log in through the API; return the token response."""
        r = self.http.post("/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def make_admin(self, email: str = "admin@example.com", password: str = PASSWORD) -> str:
        """Bootstrap an admin through the services (no admin exists yet); return its
        access token from a real login."""

        async def create() -> None:
            svc = self.services
            try:
                await svc.accounts.get_role("admin")
            except NotFound:
                await svc.directory.put_role("admin", [ADMIN_PERMISSION])
            await svc.accounts.create_user(email, password, roles=["admin"])

        self.call(create())
        return str(self.login(email, password)["access_token"])


def bearer(token: str) -> dict[str, str]:
    """An Authorization header."""
    return {"Authorization": f"Bearer {token}"}


@contextlib.contextmanager
def running_server(
    tmp_path: Path,
    env: Mapping[str, str] | None = None,
    *,
    clock: FixedClock | None = None,
    master_key: str | None = None,
    replace_env: bool = False,
) -> Iterator[LiveServer]:
    """A started server on ``tmp_path/authgate.db``; ``env`` adds to (or, with
    ``replace_env``, replaces) the test environment."""
    full = (
        dict(env or {})
        if replace_env
        else {**base_env(tmp_path, master_key=master_key), **(env or {})}
    )
    settings = Settings.from_env(full, config_dir=tmp_path)
    live = LiveServer(settings, clock=clock or FixedClock(START), sleeps=SleepRecorder())
    live.start()
    try:
        yield live
    finally:
        live.stop()


def _segment(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return data


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a JWS, unverified (for reading sid, jti, ...)."""
    return _segment(token, 1)


def header_of(token: str) -> dict[str, Any]:
    """The protected header of a JWS, unverified."""
    return _segment(token, 0)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """An RFC 9457 problem with this status and stable code; returns the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["type"] == "about:blank"
    return body


def new_email(prefix: str = "user") -> str:
    """A unique email, for tests that share a server."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"
