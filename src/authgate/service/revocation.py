"""Revocation by token (jti), session (sid) and user version, and the feed guards follow."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field

from authgate.clock import Clock
from authgate.storage.base import RevocationEvent, RevocationStore


async def _first_of(events: tuple[asyncio.Event | None, ...], *, timeout: float) -> None:
    """Return once any of ``events`` is set, or after ``timeout`` seconds."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events if event is not None]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class FeedPage:
    """One answer of the feed: the events and the cursor to ask from next."""

    cursor: int
    events: tuple[RevocationEvent, ...]


@dataclass(eq=False)
class Revocations:
    """Writes revocation events; an event expires once no token it could kill is alive.

    ``token_lifetime`` is the longest an access token is accepted (its lifetime plus the
    verifiers' leeway). Every event outlives the tokens it kills by one more such
    lifetime: its expiry is stamped with this process's clock, and the verifiers that drop
    it read their own, so the margin absorbs the clocks' disagreement."""

    store: RevocationStore
    _: KW_ONLY
    clock: Clock
    token_lifetime: float
    poll_interval: float = 1.0
    # Other instances' long polls are woken through these (the Redis fan-out).
    publishers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    def notify(self) -> None:
        """Wake every long-poll waiting here (an event was written, here or elsewhere)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _add(self, *args: object, **kwargs: object) -> RevocationEvent:
        event = await self.store.add_revocation(*args, **kwargs)  # type: ignore[arg-type]
        self.notify()
        for publish in self.publishers:  # other instances' long polls (Redis fan-out)
            await publish()
        return event

    async def revoke_jti(self, jti: str, *, exp: float) -> RevocationEvent:
        """Kill one access token until it expires."""
        now = self.clock.now()
        until = max(exp, now) + self.token_lifetime  # exp + leeway, and the clock margin
        return await self._add("jti", jti, now=now, expires_at=until)

    async def revoke_sid(self, sid: str) -> RevocationEvent:
        """Kill every access token of a session."""
        now = self.clock.now()
        return await self._add("sid", sid, now=now, expires_at=now + 2 * self.token_lifetime)

    async def revoke_user(self, user_id: str, *, ver: int) -> RevocationEvent:
        """Kill every access token of a user whose ``ver`` claim is lower than ``ver``."""
        now = self.clock.now()
        until = now + 2 * self.token_lifetime
        return await self._add("user", user_id, now=now, expires_at=until, ver=ver)

    async def revoke_subject(self, subject: str) -> RevocationEvent:
        """Kill every access token of a subject that carries no ``ver`` (a service client
        that can never be issued a token again): a version floor kills every token without
        a version, so no clock is compared."""
        return await self.revoke_user(subject, ver=1)

    async def is_revoked(self, kind: str, value: str) -> bool:
        """True while a live event of this kind and value exists."""
        return await self.store.is_revoked(kind, value, now=self.clock.now())  # type: ignore[arg-type]

    async def feed(self, after: int | None, *, limit: int = 1000) -> FeedPage:
        """Live events after the cursor, in order, with the next cursor."""
        events = await self.store.revocations_after(after, now=self.clock.now(), limit=limit)
        if events:
            cursor = events[-1].id
        else:
            # Never echo a cursor beyond the newest id: after a restore or a fresh database
            # a follower then sees its cursor go back, and reads everything again.
            latest = await self.store.latest_revocation_id()
            cursor = latest if after is None else min(after, latest)
        return FeedPage(cursor=cursor, events=tuple(events))

    async def wait(
        self,
        after: int | None,
        *,
        timeout: float,
        limit: int = 1000,
        stop: asyncio.Event | None = None,
    ) -> FeedPage:
        """Long poll: the first page with events after ``after``, or an empty page once
        ``timeout`` seconds have passed or ``stop`` is set (the server shuts down: the poll
        ends with the current cursor rather than being cut off). Wakes at once for events
        written by this process, and re-reads the store every ``poll_interval`` for those
        of other instances."""
        changed = self._changed  # taken before the read: a write after it wakes us
        page = await self.feed(after, limit=limit)
        if after is None or page.events or timeout <= 0:
            return page
        loop = asyncio.get_running_loop()  # the waiting is in the event loop's own time
        deadline = loop.time() + timeout
        while not page.events and not (stop is not None and stop.is_set()):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await _first_of((changed, stop), timeout=min(remaining, self.poll_interval))
            changed = self._changed
            page = await self.feed(after, limit=limit)
        return page

    async def purge(self) -> int:
        """Drop expired events."""
        return await self.store.purge_revocations(now=self.clock.now())
