"""Servers in a background thread: uvicorn on an event loop of its own, on a free loopback
port (or on a socket bound beforehand), for any ASGI app and for authgate itself."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx
import uvicorn
from fastapi import FastAPI

from _support.http import ADMIN_PERMISSION, PASSWORD, login, register
from authgate.clock import Clock
from authgate.errors import NotFound
from authgate.server.app import create_app
from authgate.settings import Settings
from authgate.wiring import Services

T = TypeVar("T")

STARTUP_TIMEOUT = 30.0
# Cheap argon2 for speed (the hash is still argon2id); one test checks that the defaults
# are used when these are absent.
FAST_ARGON2 = {"AUTHGATE_ARGON2_MEMORY_KIB": "1024", "AUTHGATE_ARGON2_TIME_COST": "1"}


async def no_sleep(seconds: float) -> None:
    """An injected sleep that returns at once: throttling delays cost no wall time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def bound_socket() -> socket.socket:
    """A TCP socket bound to a free loopback port, for a server whose URL must be known
    before its app is built. It names its protocol (IPPROTO_TCP): asyncio sets TCP_NODELAY
    only on the connections of such a socket, and without it every response written in
    two parts waited out the client's delayed ACK (40 ms a request)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class ThreadedServer:
    """An ASGI app on uvicorn (lifespan on) in a daemon thread with its own event loop.
    ``http`` talks to it; ``call`` runs a coroutine on its loop."""

    def __init__(
        self,
        app: Any,
        *,
        name: str,
        sock: socket.socket | None = None,
        log_level: str = "warning",
    ) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            lifespan="on",
            log_level=log_level,
            loop="asyncio",
            access_log=False,
            proxy_headers=False,  # as `authgate serve`: the app decides whom to believe
        )
        self.server = uvicorn.Server(config)
        self.sock = sock
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.client: httpx.Client | None = None
        self.url = ""

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        sockets = None if self.sock is None else [self.sock]
        try:
            loop.run_until_complete(self.server.serve(sockets=sockets))
        except BaseException as exc:  # SystemExit on a failed startup, too
            self.error = exc
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def start(self) -> Self:
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
        """Stop the server and wait for its thread (a second call does nothing more)."""
        if self.client is not None:
            self.client.close()
            self.client = None
        self.server.should_exit = True
        self._thread.join(timeout=STARTUP_TIMEOUT)
        if self.sock is not None:
            self.sock.close()
        assert not self._thread.is_alive(), "the server thread did not stop"

    @property
    def http(self) -> httpx.Client:
        """The HTTP client bound to this server."""
        assert self.client is not None, "the server is not running"
        return self.client

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop and return its result."""
        assert self.loop is not None
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout=STARTUP_TIMEOUT)


class AuthgateServer(ThreadedServer):
    """A running authgate built by ``create_app(settings, clock=..., sleep=...)``, with the
    set-up every suite does: its services, its SQLite file, accounts through the API."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]] = no_sleep,
        name: str = "authgate-test-server",
        sock: socket.socket | None = None,
        log_level: str = "warning",
        **app_options: Any,
    ) -> None:
        self.settings = settings
        self.app: FastAPI = create_app(settings, clock=clock, sleep=sleep, **app_options)
        super().__init__(self.app, name=name, sock=sock, log_level=log_level)

    @property
    def services(self) -> Services:
        """The app's services (only while running)."""
        svc: Services = self.app.state.services
        return svc

    @property
    def db_path(self) -> Path:
        """The SQLite file."""
        return Path(self.settings.database_url.split(":///", 1)[1])

    def db(self) -> sqlite3.Connection:
        """A direct, read-only connection to the database file."""
        return sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)

    def register(self, email: str, password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
        """Register an account through the API; return the token response."""
        body: dict[str, Any] = register(self.http, email, password, **extra)
        return body

    def login(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        """Log in through the API; return the token response (client_id ``authgate``)."""
        body: dict[str, Any] = login(self.http, email, password)
        return body

    def make_admin(self, email: str = "admin@example.com", password: str = PASSWORD) -> str:
        """Bootstrap an admin (role ``admin`` with ``authgate:admin``) through the services
        (no admin exists yet); return its access token from a real login."""

        async def create() -> None:
            svc = self.services
            try:
                await svc.accounts.get_role("admin")
            except NotFound:
                await svc.directory.put_role("admin", [ADMIN_PERMISSION])
            await svc.accounts.create_user(email, password, roles=["admin"])

        self.call(create())
        return str(self.login(email, password)["access_token"])
