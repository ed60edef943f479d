"""A running authgate server for the API fuzzer: uvicorn in a background thread, on a free
loopback port, a temporary SQLite file, a FixedClock and a sleep that returns at once."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

from authgate.clock import FixedClock
from authgate.errors import NotFound
from authgate.server.app import create_app
from authgate.settings import Settings
from authgate.wiring import Services, new_master_key

T = TypeVar("T")

START = 1_700_000_000.0
STARTUP_TIMEOUT = 30.0
ADMIN_PERMISSION = "authgate:admin"
ADMIN_EMAIL = "fuzz-admin@example.com"
ADMIN_PASSWORD = "fuzzing is believing 9731"


async def _no_sleep(seconds: float) -> None:
    """Throttling delays return at once: the fuzzer must not pay them in wall time."""


def settings_for(folder: Path) -> Settings:
    """Settings of a fuzzing server: a fresh master key, SQLite in ``folder``, cheap argon2."""
    env = {
        "AUTHGATE_MASTER_KEY": new_master_key(),
        "AUTHGATE_DATABASE_URL": f"sqlite:///{folder / 'authgate.db'}",
        "AUTHGATE_ARGON2_MEMORY_KIB": "1024",
        "AUTHGATE_ARGON2_TIME_COST": "1",
        # Every fuzzed login comes from 127.0.0.1: with the default per-address limit, all
        # but the first hundred would stop at the throttle (tests/api covers throttling).
        "AUTHGATE_THROTTLE_IP_LIMIT": "1000000",
    }
    return Settings.from_env(env, config_dir=folder)


class LiveServer:
    """One server. ``url`` is its base URL; ``call`` runs a coroutine on its event loop."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings, clock=FixedClock(START), sleep=_no_sleep)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            lifespan="on",
            log_level="critical",
            loop="asyncio",
            access_log=False,
            proxy_headers=False,
        )
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="authgate-fuzz-server", daemon=True)
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
        """Start and wait until the server listens."""
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
        return self

    def stop(self) -> None:
        """Stop the server and wait for its thread."""
        self.server.should_exit = True
        self._thread.join(timeout=STARTUP_TIMEOUT)
        assert not self._thread.is_alive(), "the server thread did not stop"

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

    def bootstrap_admin(self) -> str:
        """Create a role with ``authgate:admin`` and a user holding it through the services,
        then log in over HTTP; return the access token."""

        async def create() -> None:
            svc = self.services
            try:
                await svc.accounts.get_role("admin")
            except NotFound:
                await svc.directory.put_role("admin", [ADMIN_PERMISSION])
            await svc.accounts.create_user(ADMIN_EMAIL, ADMIN_PASSWORD, roles=["admin"])

        self.call(create())
        r = httpx.post(
            f"{self.url}/auth/login",
            json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
            timeout=STARTUP_TIMEOUT,
        )
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        me = httpx.get(
            f"{self.url}/auth/me", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert me.status_code == 200, me.text
        assert ADMIN_PERMISSION in me.json()["permissions"], me.text
        return str(token)

    def fresh_admin_token(self) -> str:
        """A new admin session (what a login gives), opened through the services: fuzzed
        logouts end sessions, and fuzzed logins lock the loopback address out of /auth/login."""

        async def issue() -> str:
            svc = self.services
            user = await svc.accounts.by_email(ADMIN_EMAIL)
            pair = await svc.sessions.start(user, ip=None, user_agent="authgate-fuzz")
            return pair.access_token

        return self.call(issue())


@contextlib.contextmanager
def running_server(folder: Path) -> Iterator[LiveServer]:
    """A started server on ``folder/authgate.db``."""
    live = LiveServer(settings_for(folder)).start()
    try:
        yield live
    finally:
        live.stop()


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of an app built with fuzzing settings; building the app opens
    nothing (the database opens in the lifespan), so this is safe at collection time."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        doc: dict[str, Any] = create_app(settings_for(Path(folder))).openapi()
    return doc
