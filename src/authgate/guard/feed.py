"""Follows the server's revocation feed, and holds what it says in memory.

``GET {feed}?after=CURSOR&wait=SECONDS`` (HTTP Basic, a client with the
``authgate:revocations`` scope) answers ``{cursor, events: [{id, kind, value, ver?,
not_before?, expires_at}]}``; without ``after``, every live event. A server that does not long-poll
answers at once, and the follower then polls every ``interval`` seconds instead.

Staleness is the time since the feed last answered: with long polling it rises to about
``wait`` between answers in normal operation, and keeps rising when the server cannot be
reached. The guard refuses every token once it passes ``fail_closed_after``.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import httpx

from authgate.clock import Clock
from authgate.guard._http import FetchError, get_json

_log = logging.getLogger("authgate.guard")

KINDS = ("jti", "sid", "user")
REVOKED_BECAUSE = {
    "jti": "token was revoked",
    "sid": "token's session has ended",
    "user": "token's user was revoked (an older privilege version, or issued before the epoch)",
}
"""Why a token is refused, by the kind that :meth:`RevocationState.reason` answers."""
_MAX_VALUE = 512
_ABSENT: Any = object()


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
class Event:
    """One revocation: ``jti`` kills one token, ``sid`` every token of a session, and
    ``user`` every token of ``sub == value`` whose ``ver`` claim is below the event's
    ``ver`` (or, from a server that sends no ``ver``, issued before ``not_before``). It
    matters until ``expires_at``, when every token it could kill has expired."""

    id: int
    kind: str
    value: str
    expires_at: float
    not_before: float | None = None
    ver: int | None = None

    @classmethod
    def parse(cls, raw: Any) -> Event:
        """Validate one event of a feed page; ValueError if it is malformed."""
        if not isinstance(raw, Mapping):
            raise ValueError("an event must be an object")
        ev_id, kind, value = raw.get("id"), raw.get("kind"), raw.get("value")
        expires_at: Any = raw.get("expires_at")
        not_before: Any = raw.get("not_before")
        ver: Any = raw.get("ver", _ABSENT)
        if type(ev_id) is not int or ev_id < 0:
            raise ValueError("event id must be a non-negative integer")
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        if type(value) is not str or not value or len(value) > _MAX_VALUE:
            raise ValueError("event value must be a short non-empty string")
        if not _is_number(expires_at):
            raise ValueError("event expires_at must be a number")
        if not_before is not None and not _is_number(not_before):
            raise ValueError("event not_before must be a number")
        if ver is not _ABSENT and (type(ver) is not int or ver < 0):
            raise ValueError("event ver must be a non-negative integer")
        if ver is _ABSENT:
            ver = None
        if kind == "user" and ver is None and not_before is None:
            raise ValueError("a user event needs ver or not_before")
        return cls(ev_id, kind, value, float(expires_at), _float_or_none(not_before), ver)


MAX_PAGES = 10_000  # a bound on reading the whole feed, against a misbehaving server


def _advancing(events: list[Event], *, after: int, cursor: int) -> None:
    """A page after ``after`` must move forward: every event id above ``after``, and the
    cursor above it when there are events. Otherwise the feed would be read forever."""
    if events and (cursor <= after or min(ev.id for ev in events) <= after):
        raise FetchError("the revocation feed answered a page that does not advance")


class RevocationState:
    """Revoked jtis and sids, and user versions and epochs, each kept until it expires.

    A user event with ``ver`` is decided by the token's ``ver`` claim only; one without
    (from an older server) by ``iat < not_before``. The highest of each is kept per user,
    whatever order events come in. :meth:`reason` is the one rule; the guard's hot path
    calls it on every verification, cached tokens included.

    Written by one thread (the follower), read by any: readers only do dict lookups.
    """

    __slots__ = ("_heap", "_leeway", "_user_expires", "jti", "sid", "user", "user_ver")

    def __init__(self, *, leeway: float = 0.0) -> None:
        # A verifier with leeway accepts a token until exp + leeway: every event is kept
        # that much longer than the server says, or a revoked token would come back.
        self._leeway = leeway
        self.jti: dict[str, float] = {}  # jti -> expires_at
        self.sid: dict[str, float] = {}  # sid -> expires_at
        self.user_ver: dict[str, int] = {}  # sub -> ver (tokens with a lower ver are dead)
        self.user: dict[str, float] = {}  # sub -> not_before (tokens with iat < it are dead)
        self._user_expires: dict[str, float] = {}
        self._heap: list[tuple[float, str, str]] = []

    def __len__(self) -> int:
        return len(self.jti) + len(self.sid) + len(self._user_expires)

    @property
    def users(self) -> int:
        """How many users have a version or an epoch held."""
        return len(self._user_expires)

    def apply(self, events: Iterable[Event], *, now: float) -> int:
        """Record events (idempotent; an event already expired is skipped); return how
        many were recorded."""
        count = 0
        for ev in events:
            expires_at = ev.expires_at + self._leeway
            if expires_at <= now:
                continue
            if ev.kind == "jti":
                table = self.jti
            elif ev.kind == "sid":
                table = self.sid
            else:
                table = self._user_expires
                if ev.ver is not None:
                    # Decided by ver alone: not_before is never used when ver is present.
                    self.user_ver[ev.value] = max(self.user_ver.get(ev.value, -1), ev.ver)
                else:
                    assert ev.not_before is not None
                    epoch = max(self.user.get(ev.value, -math.inf), ev.not_before)
                    self.user[ev.value] = epoch
            previous = table.get(ev.value)
            if previous is None or expires_at > previous:
                table[ev.value] = expires_at
                heapq.heappush(self._heap, (expires_at, ev.kind, ev.value))
            count += 1
        return count

    def purge(self, now: float) -> int:
        """Drop entries whose tokens have all expired; return how many."""
        heap = self._heap
        dropped = 0
        while heap and heap[0][0] <= now:
            _, kind, value = heapq.heappop(heap)
            table = self._user_expires if kind == "user" else getattr(self, kind)
            current = table.get(value)
            if current is not None and current <= now:
                del table[value]
                if kind == "user":
                    self.user.pop(value, None)
                    self.user_ver.pop(value, None)
                dropped += 1
        return dropped

    def reason(
        self, *, jti: str, sid: str | None, sub: str, iat: float, ver: int | None = None
    ) -> str | None:
        """Why a token with these claims is revoked (``"jti"``, ``"sid"`` or ``"user"``),
        or None. ``ver`` is the token's ``ver`` claim (None when it has no integer one: such
        a token is dead once its user has a version)."""
        if jti in self.jti:
            return "jti"
        if sid is not None and sid in self.sid:
            return "sid"
        floor = self.user_ver.get(sub)
        if floor is not None and (ver is None or ver < floor):
            return "user"
        epoch = self.user.get(sub)
        if epoch is not None and iat < epoch:
            return "user"
        return None

    def approx_bytes(self) -> int:
        """An estimate of the memory held (dicts, keys, the expiry heap)."""
        size = sys.getsizeof
        total = size(self.jti) + size(self.sid) + size(self.user) + size(self._user_expires)
        total += size(self.user_ver) + sum(size(v) for v in self.user_ver.values())
        total += size(self._heap) + len(self._heap) * (size((0.0, "", "")) + size(0.0))
        for table in (self.jti, self.sid, self._user_expires):
            total += sum(size(k) + size(0.0) for k in table)
        total += len(self.user) * size(0.0)
        return total


class FeedFollower:
    """Polls the feed and applies its events to a RevocationState."""

    def __init__(
        self,
        url: str,
        *,
        http: Callable[[], httpx.AsyncClient],
        client_id: str,
        client_secret: str,
        clock: Clock,
        state: RevocationState | None = None,
        wait: float = 10.0,
        interval: float = 1.0,
        max_backoff: float = 5.0,
        on_events: Callable[[list[Event]], None] | None = None,
    ) -> None:
        self.url = url
        self._http = http
        self._auth = httpx.BasicAuth(quote_plus(client_id), quote_plus(client_secret))
        self._clock = clock
        self.state = state if state is not None else RevocationState()
        self.wait = wait
        self.interval = interval
        self.max_backoff = max_backoff
        self._on_events = on_events
        self.cursor: int | None = None
        # When the follower last held every live event (an answer with nothing more, or
        # any answer once it had caught up). A first sync or a resync that is still paging
        # leaves it at -inf: the guard is not ready, and fails closed, until it completes.
        self.synced_at = -math.inf
        self.caught_up = False
        self.polls = 0
        self.failures = 0
        self.last_error: str | None = None
        self._lock = asyncio.Lock()

    def staleness(self, now: float) -> float:
        """Seconds since the feed last answered (infinite before its first answer)."""
        return now - self.synced_at

    async def sync(self, *, wait: float = 0.0) -> int:
        """Poll once (long-poll up to ``wait`` s) and apply the answer; return how many
        events came. FetchError on failure (``permanent`` for refused credentials)."""
        params: dict[str, Any] = {}
        cursor = self.cursor
        if cursor is not None:
            params["after"] = cursor
            if wait > 0:
                params["wait"] = f"{min(wait, 30.0):g}"  # the server takes 0..30
        self.polls += 1
        try:
            answer = await get_json(
                self._http(), self.url, params=params, auth=self._auth, timeout=wait + 10.0
            )
            page_cursor, events = self._parse(answer.data)
            if cursor is not None and page_cursor >= cursor:
                _advancing(events, after=cursor, cursor=page_cursor)
        except FetchError as exc:
            self.failures += 1
            self.last_error = str(exc)
            raise
        async with self._lock:  # a forced sync and the follower may overlap
            now = self._clock.now()
            if cursor is not None and page_cursor < cursor:
                # The feed went backwards (a new database): start over from every live event.
                _log.warning("the revocation feed cursor went back; resyncing from the start")
                self.cursor = None
                return await self._resync()
            self.state.apply(events, now=now)
            if self.cursor is None or page_cursor > self.cursor:
                self.cursor = page_cursor
            if not events:
                self.caught_up = True  # nothing more: every live event is held
            if self.caught_up:
                self.synced_at = now
            self.last_error = None
        if events and self._on_events is not None:
            self._on_events(events)
        return len(events)

    async def _resync(self) -> int:
        """Read every live event again, page after page, until a page comes back empty.
        Until then the follower is not caught up (the guard fails closed); a feed whose
        cursor does not advance is a FetchError, and so is one that never runs dry."""
        self.caught_up, self.synced_at = False, -math.inf
        params: dict[str, Any] = {}
        total = 0
        for _ in range(MAX_PAGES):
            answer = await get_json(
                self._http(), self.url, params=params, auth=self._auth, timeout=10.0
            )
            page_cursor, events = self._parse(answer.data)
            after = params.get("after")
            if after is not None:
                _advancing(events, after=after, cursor=page_cursor)
            self.state.apply(events, now=self._clock.now())
            self.cursor = page_cursor
            total += len(events)
            if not events:
                self.caught_up, self.synced_at = True, self._clock.now()
                return total
            params = {"after": page_cursor}
        raise FetchError(f"the revocation feed did not run dry in {MAX_PAGES} pages")

    @staticmethod
    def _parse(data: Mapping[str, Any]) -> tuple[int, list[Event]]:
        cursor, raw_events = data.get("cursor"), data.get("events")
        if type(cursor) is not int or cursor < 0 or not isinstance(raw_events, list):
            raise FetchError("the revocation feed answered a malformed page")
        try:
            return cursor, [Event.parse(e) for e in raw_events]
        except ValueError as exc:
            raise FetchError(f"the revocation feed answered a malformed event: {exc}") from exc

    async def run(self) -> None:
        """Follow the feed until cancelled: long polls back to back, short polls every
        ``interval`` when the server answers at once, backoff after failures."""
        backoff = self.interval
        while True:
            started = self._clock.now()
            try:
                count = await self.sync(wait=self.wait)
            except FetchError as exc:
                if self.failures == 1 or self.failures % 30 == 0:
                    _log.warning("revocation feed poll failed (%d so far): %s", self.failures, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            backoff = self.interval
            if count:
                continue
            # Judged on the injected clock: an answer that took no time on it did not long-poll.
            if self._clock.now() - started < min(self.wait / 2, 1.0) or self.wait <= 0:
                await asyncio.sleep(self.interval)


__all__ = ["KINDS", "REVOKED_BECAUSE", "Event", "FeedFollower", "RevocationState"]
