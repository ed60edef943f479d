"""Real servers for the guard suite: the authgate server (issuer = its own URL), any ASGI app
on uvicorn, and any WSGI app on werkzeug, each in a background thread on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn
from werkzeug.serving import BaseWSGIServer, make_server

from api.server import LiveServer, SleepRecorder, base_env
from authgate.clock import FixedClock
from authgate.guard import Guard
from authgate.settings import Settings

T = TypeVar("T")

AUDIENCE = "api"
REVOCATIONS = "authgate:revocations"
PROPAGATION_BOUND = 5.0  # seconds; the bench measures the real figure (milliseconds)
JWKS_ROUTE = "/.well-known/jwks.json"


def free_port() -> int:
    """A TCP port that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class AuthServer(LiveServer):
    """The authgate server, listening on the port its issuer names (so that the RFC 8414
    metadata, the JWKS URL and the feed URL are all right)."""

    def __init__(self, settings: Settings, *, clock: FixedClock, port: int) -> None:
        super().__init__(settings, clock=clock, sleeps=SleepRecorder())
        self.server.config.port = port
        # A guard's long poll keeps its handler busy after the guard is gone: do not wait.
        self.server.config.timeout_graceful_shutdown = 0.5

    def new_client(self, scopes: list[str] | None = None) -> tuple[str, str]:
        """A service client (``authgate:revocations`` by default): ``(id, secret)``."""
        record, secret = self.call(
            self.services.clients.create("guard", [REVOCATIONS] if scopes is None else scopes)
        )
        assert secret is not None
        return record.client_id, secret

    def jwks_fetches(self) -> int:
        """How many times the JWKS was served, from the server's request histogram."""
        text = self.http.get("/metrics").text
        total = 0
        pattern = re.compile(
            r"^authgate_http_request_duration_seconds_count\{([^}]*)\} ([0-9.e+]+)$", re.M
        )
        for labels, value in pattern.findall(text):
            if f'route="{JWKS_ROUTE}"' in labels:
                total += int(float(value))
        return total


@contextlib.contextmanager
def auth_server(
    folder: Path,
    *,
    clock: FixedClock,
    env: dict[str, str] | None = None,
    port: int | None = None,
    master_key: str | None = None,
) -> Iterator[AuthServer]:
    """A running authgate server whose issuer is its own URL; audience ``api``. With the
    same folder, port and master key, it is the same server started again."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    full = {
        **base_env(folder, master_key=master_key),
        "AUTHGATE_ISSUER": url,
        "AUTHGATE_AUDIENCE": AUDIENCE,
    }
    full.update(env or {})
    settings = Settings.from_env(full, config_dir=folder)
    live = AuthServer(settings, clock=clock, port=port)
    live.start()
    assert live.url == url
    try:
        yield live
    finally:
        live.stop()


class AppServer:
    """Any ASGI app on uvicorn (lifespan on) in a background thread."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            lifespan="on",
            log_level="warning",
            loop="asyncio",
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="guard-test-app", daemon=True)
        self.url = ""
        self.http: httpx.Client | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve())
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> httpx.Client:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the app server did not start") from self.error
            assert time.monotonic() < deadline, "the app server did not start in time"
            time.sleep(0.005)  # waiting for startup, not for time to pass
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.url, timeout=30.0)
        return self.http

    def __exit__(self, *exc: object) -> None:
        if self.http is not None:
            self.http.close()
        self.server.should_exit = True
        self._thread.join(30)
        assert not self._thread.is_alive(), "the app server did not stop"


class WsgiServer:
    """Any WSGI app on werkzeug's threaded server, in a background thread."""

    def __init__(self, app: Any) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="guard-test-wsgi", daemon=True
        )
        self.http: httpx.Client | None = None

    def __enter__(self) -> httpx.Client:
        self._thread.start()
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.server.port}", timeout=30.0)
        return self.http

    def __exit__(self, *exc: object) -> None:
        if self.http is not None:
            self.http.close()
        self.server.shutdown()
        self._thread.join(30)


def make_guard(auth: AuthServer, client: tuple[str, str], **options: Any) -> Guard:
    """A guard on ``auth``'s issuer, sharing its clock. Its long polls are short (2 s): a
    server stopping at the end of a module waits for the long polls in flight."""
    options.setdefault("feed_wait", 2.0)
    return Guard(
        issuer=auth.url,
        audience=AUDIENCE,
        client_id=client[0],
        client_secret=client[1],
        clock=auth.clock,
        **options,
    )


def eventually(check: Callable[[], T], *, bound: float = PROPAGATION_BOUND) -> T:
    """Poll ``check`` until it returns a truthy value or ``bound`` seconds pass (waiting for
    another thread to act, not for time to pass: the clocks are fixed)."""
    deadline = time.monotonic() + bound
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"not within {bound} s"
        time.sleep(0.01)


def bearer(token: str) -> dict[str, str]:
    """An Authorization header."""
    return {"Authorization": f"Bearer {token}"}
