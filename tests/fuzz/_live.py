"""A running authgate server for the API fuzzer: uvicorn in a background thread, on a free
loopback port, a temporary SQLite file, a FixedClock and a sleep that returns at once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _support.http import ADMIN_PERMISSION, bearer
from _support.live import FAST_ARGON2, AuthgateServer
from authgate.clock import FixedClock
from authgate.server.app import create_app
from authgate.settings import Settings
from authgate.wiring import new_master_key

START = 1_700_000_000.0
ADMIN_EMAIL = "fuzz-admin@example.com"
ADMIN_PASSWORD = "fuzzing is believing 9731"


def settings_for(folder: Path) -> Settings:
    """Settings of a fuzzing server: a fresh master key, SQLite in ``folder``, cheap argon2."""
    env = {
        "AUTHGATE_MASTER_KEY": new_master_key(),
        "AUTHGATE_DATABASE_URL": f"sqlite:///{folder / 'authgate.db'}",
        **FAST_ARGON2,
        # Every fuzzed login comes from 127.0.0.1: with the default per-address limit, all
        # but the first hundred would stop at the throttle (tests/api covers throttling).
        "AUTHGATE_THROTTLE_IP_LIMIT": "1000000",
        # The same for the requests that send mail (registrations among them).
        "AUTHGATE_MAIL_IP_LIMIT": "1000000",
        # The browser-session cookie mode, so that its answers are checked too.
        "AUTHGATE_COOKIE_MODE": "on",
    }
    return Settings.from_env(env, config_dir=folder)


class LiveServer(AuthgateServer):
    """One server. ``url`` is its base URL; ``call`` runs a coroutine on its event loop.
    Throttling delays return at once: the fuzzer must not pay them in wall time."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            settings, clock=FixedClock(START), name="authgate-fuzz-server", log_level="critical"
        )

    def bootstrap_admin(self) -> str:
        """Create a role with ``authgate:admin`` and a user holding it through the services,
        then log in over HTTP; return the access token."""
        token = self.make_admin(ADMIN_EMAIL, ADMIN_PASSWORD)
        me = self.http.get("/auth/me", headers=bearer(token))
        assert me.status_code == 200, me.text
        assert ADMIN_PERMISSION in me.json()["permissions"], me.text
        return token

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
