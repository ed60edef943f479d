"""A real authgate server for the API tests: uvicorn in a background thread, on a free port,
a temporary SQLite file, an injected FixedClock and a sleep that only records its delays."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from _support.live import FAST_ARGON2, AuthgateServer
from authgate.clock import FixedClock
from authgate.settings import Settings
from authgate.wiring import new_master_key

START = 1_700_000_000.0


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


class LiveServer(AuthgateServer):
    """One running server on a FixedClock. ``http`` talks HTTP to it; ``call`` runs a
    coroutine on the server's own event loop (the database engine is bound to it)."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: FixedClock,
        sleeps: SleepRecorder,
        maintenance_interval: float = 3600.0,
    ) -> None:
        super().__init__(
            settings, clock=clock, sleep=sleeps, maintenance_interval=maintenance_interval
        )
        self.clock = clock
        self.sleeps = sleeps


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
