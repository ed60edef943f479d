"""Throttling of every secret check: per subject (an account, a client id) and per IP, in
shared counters, unlocking by time only.

A counter holds the failures of its window plus the checks in flight. An attempt is counted
(reserved) by one atomic increment-and-read in the shared store BEFORE its secret is
checked, so that parallel attempts, on one instance or many, each see their own place in
the window and no more than the limit ever reach the check. A refused attempt, a success,
and an attempt whose check never ran (an error) give their reservation back; a failure
keeps it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass
from typing import ClassVar, Literal, TypeVar

from authgate.clock import Clock
from authgate.errors import InvalidClient, InvalidCredentials, Throttled
from authgate.storage.base import Counters, CounterState

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class ThrottlePolicy:
    """Per subject: a growing delay from the ``delay_after``-th failure in ``window``, then
    429 from the ``lock_after``-th attempt until the window passes. Per IP: 429 after
    ``ip_limit`` failures."""

    window: float
    delay_after: int
    lock_after: int
    ip_limit: int
    base_delay: float
    max_delay: float = 4.0  # the growing delay's cap (not a setting)


@dataclass(frozen=True, slots=True)
class Reservation:
    """One attempt, counted before its check: the keys and the windows it was counted in."""

    subject_key: str
    subject: CounterState
    ip_key: str | None
    ip: CounterState | None


def _retry_after(state: CounterState, window: float, now: float) -> int:
    return max(1, int(state.window_start + window - now) + 1)


@dataclass(frozen=True, eq=False, repr=False)
class _Throttle:
    """The reserve / release primitives shared by the login and client throttles."""

    prefixes: ClassVar[tuple[str, str]]  # the counters' key prefixes: (subject, IP)
    counters: Counters
    _: KW_ONLY
    policy: ThrottlePolicy
    clock: Clock

    def _keys(self, subject: str, ip: str | None) -> tuple[str, str | None]:
        by_subject, by_ip = self.prefixes
        return f"{by_subject}:{subject}", (f"{by_ip}:{ip}" if ip else None)

    async def _reserve(
        self, subject: str, ip: str | None, *, what: str, ip_seen: CounterState | None = None
    ) -> Reservation:
        """Count one attempt on the IP, then on the subject, in one atomic step; Throttled
        (with nothing left counted) when the IP is over its limit. ``ip_seen`` is the IP's
        window when the caller has read it already. The subject's lock is the caller's call.
        """
        p = self.policy
        now = self.clock.now()
        subject_key, ip_key = self._keys(subject, ip)
        if ip_key is None:
            state = await self.counters.hit(subject_key, now=now, window=p.window)
            return Reservation(subject_key, state, None, None)
        if ip_seen is None:
            # A read first, so that a flood from a locked address costs no write.
            ip_seen = await self.counters.peek(ip_key, now=now, window=p.window)
        if ip_seen.count >= p.ip_limit:
            raise Throttled(
                f"too many failed {what} from this address",
                retry_after=_retry_after(ip_seen, p.window, now),
            )
        # Cancelled once it ran, both hits stay counted: the safe side.
        ip_state, counted = await self.counters.hit_guarded(
            ip_key, subject_key, limit=p.ip_limit, now=now, window=p.window
        )
        if counted is None:  # over the IP's limit: the IP's hit was taken back
            raise Throttled(
                f"too many failed {what} from this address",
                retry_after=_retry_after(ip_state, p.window, now),
            )
        return Reservation(subject_key, counted, ip_key, ip_state)

    def _settle(self, r: Reservation, *, subject: Literal["release", "reset"]) -> Awaitable[None]:
        """Give a reservation's IP part back, then ``release`` or ``reset`` the subject's, in
        one step. The IP first, as ``hit_guarded`` counts, so that two PostgreSQL
        transactions never wait on each other's rows."""
        release: list[tuple[str, float]] = []
        if r.ip_key is not None and r.ip is not None:
            release.append((r.ip_key, r.ip.window_start))
        if subject == "release":
            release.append((r.subject_key, r.subject.window_start))
        reset = (r.subject_key,) if subject == "reset" else ()
        return self.counters.settle(release=release, reset=reset)

    async def _release(self, r: Reservation) -> None:
        """Give a reservation back, whole."""
        await self._settle(r, subject="release")

    def _locked(self, r: Reservation) -> bool:
        # The attempt after lock_after - 1 failures is the lock_after-th: refused.
        return r.subject.count >= self.policy.lock_after

    def _delay(self, failures: int) -> float:
        p = self.policy
        if p.delay_after <= failures < p.lock_after:
            return float(min(p.max_delay, p.base_delay * 2 ** (failures - p.delay_after)))
        return 0.0


@dataclass(frozen=True, eq=False, repr=False)
class LoginThrottle(_Throttle):
    """Throttles every password check: per account, a growing delay then a lock that
    refuses even the right password; per IP, a lock. A success clears the account."""

    prefixes = ("login:acct", "login:ip")
    _: KW_ONLY
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def attempt(self, account: str, ip: str | None, check: Callable[[], Awaitable[T]]) -> T:
        """Run ``check`` (the password check of ``account``) as one counted attempt.

        Throttled before the check while the IP or the account is locked. ``check`` says
        no by raising InvalidCredentials: the failure stays counted and, from the
        ``delay_after``-th, waits a growing delay. A success clears the account's failures.
        """
        p = self.policy
        now = self.clock.now()
        subject_key, ip_key = self._keys(account, ip)
        ip_seen: CounterState | None = None
        if ip_key is None:
            seen = await self.counters.peek(subject_key, now=now, window=p.window)
        else:  # both windows in one read
            seen, ip_seen = await self.counters.peek_many(
                (subject_key, ip_key), now=now, window=p.window
            )
        if seen.count >= p.lock_after - 1:  # already locked: refuse without a write
            raise Throttled(
                "too many failed logins for this account",
                retry_after=_retry_after(seen, p.window, now),
            )
        r = await self._reserve(account, ip, what="logins", ip_seen=ip_seen)
        if self._locked(r):
            await self._release(r)
            raise Throttled(
                "too many failed logins for this account",
                retry_after=_retry_after(r.subject, p.window, now),
            )
        try:
            result = await check()
        except InvalidCredentials:
            delay = self._delay(r.subject.count)
            if delay:
                await self.sleep(delay)
            raise
        except Exception:
            await self._release(r)  # the check did not run to a verdict: not a failure
            raise
        await self._settle(r, subject="reset")
        return result


@dataclass(frozen=True, eq=False, repr=False)
class ClientThrottle(_Throttle):
    """Throttles client authentication: per IP, a lock; per client id, failures over the
    limit are answered 429.

    Unlike an account, a client id over its limit is not locked against its right secret:
    a secret of 256 random bits cannot be guessed, and a lock would let anyone who knows a
    client id (it is in every token the client gets) cut that service off. ``check`` is
    told when the client id is over its limit, and must then do no expensive work.
    """

    prefixes = ("client:id", "client:ip")

    async def attempt(
        self, client_id: str, ip: str | None, check: Callable[[bool], Awaitable[T]]
    ) -> T:
        """Run ``check(over_limit)`` as one counted attempt. Throttled before the check while
        the IP is locked. ``check`` says no by raising InvalidClient: the failure stays
        counted, and over the limit it becomes Throttled."""
        r = await self._reserve(client_id, ip, what="client authentications")
        over = self._locked(r)
        try:
            result = await check(over)
        except InvalidClient as exc:
            if over:
                await self._release(r)  # already over: keep the count where it is
                raise Throttled(
                    "too many failed authentications for this client",
                    retry_after=_retry_after(r.subject, self.policy.window, self.clock.now()),
                ) from exc
            raise
        except Exception:
            await self._release(r)
            raise
        await self._release(r)
        return result


__all__ = ["ClientThrottle", "LoginThrottle", "Reservation", "ThrottlePolicy"]
