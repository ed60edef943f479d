"""A real authgate server for the OAuth2 interop suite: uvicorn in a background thread on a
socket bound before the app is built (so the issuer is the server's real URL, as Authlib's
private_key_jwt audience and the metadata's endpoints need), over a temporary SQLite file.

Third-party clients (Authlib's assertions, PyJWT, Node's jose) read the real clock, so the
server's clock is the real time plus an offset that a test may move forward: never a sleep.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Coroutine, Iterator, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

from authgate.server.app import create_app
from authgate.settings import Settings
from authgate.wiring import Services, new_master_key

T = TypeVar("T")

STARTUP_TIMEOUT = 30.0
PASSWORD = "correct horse battery staple 42"
ADMIN_PERMISSION = "authgate:admin"
FIRST_PARTY = "authgate"
AUDIENCE = "authgate"
# Cheap argon2 for speed: the hash is still argon2id.
FAST_ARGON2 = {"AUTHGATE_ARGON2_MEMORY_KIB": "1024", "AUTHGATE_ARGON2_TIME_COST": "1"}


class OffsetClock:
    """The real time plus an offset that only moves forward when told to."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        """The real time, shifted."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the server's time forward by ``seconds``."""
        self.offset += seconds


async def _no_sleep(seconds: float) -> None:
    return None


class LiveServer:
    """One running server. ``http`` talks to it; ``call`` runs a coroutine on its loop."""

    def __init__(self, folder: Path, env: Mapping[str, str] | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.db_path = folder / "authgate.db"
        full = {
            "AUTHGATE_MASTER_KEY": new_master_key(),
            "AUTHGATE_DATABASE_URL": f"sqlite:///{self.db_path}",
            "AUTHGATE_ISSUER": self.url,
            "AUTHGATE_AUDIENCE": AUDIENCE,
            **FAST_ARGON2,
            **(env or {}),
        }
        self.settings = Settings.from_env(full, config_dir=folder)
        self.clock = OffsetClock()
        self.app = create_app(self.settings, clock=self.clock, sleep=_no_sleep)
        config = uvicorn.Config(
            self.app,
            lifespan="on",
            log_level="warning",
            loop="asyncio",
            access_log=False,
            proxy_headers=False,
        )
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="authgate-oauth2", daemon=True)
        self._http: httpx.Client | None = None
        self.admin_token = ""  # set by the suite's fixtures

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        try:
            loop.run_until_complete(self.server.serve(sockets=[self.sock]))
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
        self._http = httpx.Client(base_url=self.url, timeout=30.0)
        return self

    def stop(self) -> None:
        """Stop the server and wait for its thread."""
        if self._http is not None:
            self._http.close()
            self._http = None
        self.server.should_exit = True
        self._thread.join(timeout=STARTUP_TIMEOUT)
        self.sock.close()
        assert not self._thread.is_alive(), "the server thread did not stop"

    @property
    def http(self) -> httpx.Client:
        """A plain HTTP client bound to this server."""
        assert self._http is not None, "the server is not running"
        return self._http

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

    def db(self) -> sqlite3.Connection:
        """A read-only connection to the SQLite file."""
        return sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)

    @property
    def token_endpoint(self) -> str:
        return f"{self.url}/oauth2/token"

    @property
    def revocation_endpoint(self) -> str:
        return f"{self.url}/oauth2/revoke"

    @property
    def introspection_endpoint(self) -> str:
        return f"{self.url}/oauth2/introspect"

    # --- set-up through the services and the API -----------------------------------------

    def make_admin(self, email: str = "admin@example.com") -> str:
        """An admin (role ``admin`` with ``authgate:admin``); its access token from a login."""

        async def create() -> None:
            svc = self.services
            await svc.directory.put_role("admin", [ADMIN_PERMISSION])
            await svc.accounts.create_user(email, PASSWORD, roles=["admin"])

        self.call(create())
        return str(self.login(email)["access_token"])

    def login(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        """A real /auth/login; the token response (client_id ``authgate``)."""
        r = self.http.post("/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def register(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        """A real /auth/register; the token response."""
        r = self.http.post("/auth/register", json={"email": email, "password": password})
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body


@contextlib.contextmanager
def running_server(folder: Path, env: Mapping[str, str] | None = None) -> Iterator[LiveServer]:
    """A started server on ``folder/authgate.db``."""
    live = LiveServer(folder, env).start()
    try:
        yield live
    finally:
        live.stop()


def bearer(token: str) -> dict[str, str]:
    """An Authorization: Bearer header."""
    return {"Authorization": f"Bearer {token}"}


def basic(client_id: str, secret: str) -> dict[str, str]:
    """An RFC 6749 2.3.1 Basic header (both parts form-urlencoded first, as the RFC says;
    our ids and secrets are URL-safe, so that is the identity)."""
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a JWS, unverified."""
    part = token.split(".")[1]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return data


def header_of(token: str) -> dict[str, Any]:
    """The protected header of a JWS, unverified."""
    part = token.split(".")[0]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return data


def assert_oauth_error(
    response: httpx.Response, status: int, error: str, *, basic_challenge: bool = False
) -> dict[str, Any]:
    """An RFC 6749 section 5.2 error: this status, this ``error``, a JSON body with only the
    RFC's members, ``Cache-Control: no-store``, and for a failed Basic attempt a
    ``WWW-Authenticate: Basic`` challenge."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].split(";")[0].strip() == "application/json"
    body: dict[str, Any] = response.json()
    assert body.get("error") == error, body
    assert set(body) <= {"error", "error_description", "error_uri"}, body
    assert "no-store" in response.headers.get("cache-control", ""), response.headers
    if basic_challenge:
        challenge = response.headers.get("www-authenticate", "")
        assert challenge.split(" ", 1)[0].lower() == "basic", response.headers
    return body


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """An RFC 9457 problem with this status and stable code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    return body
