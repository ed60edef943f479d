"""Injected time: every component that needs 'now' takes a Clock."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A source of the current time, in seconds since the epoch."""

    def now(self) -> float:
        """Return the current time as a POSIX timestamp."""
        ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> float:
        """Return ``time.time()``."""
        return time.time()


class FixedClock:
    """A clock that only moves when told to; for tests."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        """Return the frozen time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self._now += seconds

    def set(self, when: float) -> None:
        """Jump the clock to ``when``."""
        self._now = float(when)


__all__ = ["Clock", "FixedClock", "SystemClock"]
