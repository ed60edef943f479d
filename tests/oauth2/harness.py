"""A real authgate server for the OAuth2 interop suite: uvicorn in a background thread on a
socket bound before the app is built (so the issuer is the server's real URL, as Authlib's
private_key_jwt audience and the metadata's endpoints need), over a temporary SQLite file.

Third-party clients (Authlib's assertions, PyJWT, Node's jose) read the real clock, so the
server's clock is the real time plus an offset that a test may move forward: never a sleep.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from _support.live import FAST_ARGON2, AuthgateServer, bound_socket
from authgate.settings import Settings
from authgate.wiring import new_master_key

FIRST_PARTY = "authgate"
AUDIENCE = "authgate"


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


class LiveServer(AuthgateServer):
    """One running server whose issuer is its own URL. ``http`` talks to it; ``call`` runs
    a coroutine on its loop."""

    def __init__(self, folder: Path, env: Mapping[str, str] | None = None) -> None:
        sock = bound_socket()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        full = {
            "AUTHGATE_MASTER_KEY": new_master_key(),
            "AUTHGATE_DATABASE_URL": f"sqlite:///{folder / 'authgate.db'}",
            "AUTHGATE_ISSUER": url,
            "AUTHGATE_AUDIENCE": AUDIENCE,
            **FAST_ARGON2,
            **(env or {}),
        }
        self.clock = OffsetClock()
        super().__init__(
            Settings.from_env(full, config_dir=folder),
            clock=self.clock,
            name="authgate-oauth2",
            sock=sock,
        )
        self.url = url
        self.admin_token = ""  # set by the suite's fixtures

    @property
    def token_endpoint(self) -> str:
        return f"{self.url}/oauth2/token"

    @property
    def revocation_endpoint(self) -> str:
        return f"{self.url}/oauth2/revoke"

    @property
    def introspection_endpoint(self) -> str:
        return f"{self.url}/oauth2/introspect"


@contextlib.contextmanager
def running_server(folder: Path, env: Mapping[str, str] | None = None) -> Iterator[LiveServer]:
    """A started server on ``folder/authgate.db``."""
    live = LiveServer(folder, env).start()
    try:
        yield live
    finally:
        live.stop()


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
