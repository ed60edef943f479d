"""Login throttling: per account and per IP, in shared counters, unlocking by time only."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from authgate.clock import Clock
from authgate.errors import Throttled
from authgate.storage.base import Counters


@dataclass(frozen=True, slots=True, kw_only=True)
class ThrottlePolicy:
    """Per account: a growing delay from the ``delay_after``-th failure in ``window``, then
    429 from the ``lock_after``-th attempt until the window passes. Per IP: 429 after
    ``ip_limit`` failures."""

    window: float = 900.0
    delay_after: int = 5
    lock_after: int = 10
    ip_limit: int = 100
    base_delay: float = 0.25
    max_delay: float = 4.0


class LoginThrottle:
    """Decides whether a login attempt may proceed, and records failures."""

    def __init__(
        self,
        counters: Counters,
        *,
        policy: ThrottlePolicy,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._counters = counters
        self.policy = policy
        self._clock = clock
        self._sleep = sleep

    @staticmethod
    def _keys(account: str, ip: str | None) -> tuple[str, str | None]:
        return f"login:acct:{account}", (f"login:ip:{ip}" if ip else None)

    async def check(self, account: str, ip: str | None) -> int:
        """Raise Throttled while the account or the IP is locked; otherwise return the
        account's failures in the current window."""
        p = self.policy
        now = self._clock.now()
        acct_key, ip_key = self._keys(account, ip)
        if ip_key is not None:
            state = await self._counters.peek(ip_key, now=now, window=p.window)
            if state.count >= p.ip_limit:
                raise Throttled(
                    "too many failed logins from this address",
                    retry_after=max(1, int(state.window_start + p.window - now) + 1),
                )
        state = await self._counters.peek(acct_key, now=now, window=p.window)
        # The attempt after lock_after - 1 failures is the lock_after-th: refused.
        if state.count >= p.lock_after - 1:
            raise Throttled(
                "too many failed logins for this account",
                retry_after=max(1, int(state.window_start + p.window - now) + 1),
            )
        return state.count

    async def failed(self, account: str, ip: str | None) -> None:
        """Count a failure; from ``delay_after`` failures on, wait a growing delay."""
        p = self.policy
        now = self._clock.now()
        acct_key, ip_key = self._keys(account, ip)
        if ip_key is not None:
            await self._counters.hit(ip_key, now=now, window=p.window)
        state = await self._counters.hit(acct_key, now=now, window=p.window)
        if p.delay_after <= state.count < p.lock_after:
            await self._sleep(min(p.max_delay, p.base_delay * 2 ** (state.count - p.delay_after)))

    async def succeeded(self, account: str) -> None:
        """A right password clears the account's failures."""
        await self._counters.reset(self._keys(account, None)[0])
