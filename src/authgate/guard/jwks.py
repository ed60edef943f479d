"""The issuer's JWKS, cached.

* The cache honours ``Cache-Control: max-age`` (floored at the cooldown, capped at
  ``max_age``) and refreshes in the background: requests never wait for a scheduled refresh.
* An unknown ``kid`` triggers a refetch at most once per ``cooldown`` seconds, so that a
  flood of random kids cannot turn the guard into a fetch amplifier.
* Fetches are single-flight: one at a time, however many requests wait for it.
* When the server cannot be reached, the last good key set is kept for ``stale_for``
  seconds past its expiry, and dropped after that.
* Only keys of allowed algorithms are kept; from a remote JWKS, never an HMAC key.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import httpx

from authgate.clock import Clock
from authgate.errors import InvalidKey
from authgate.guard._http import FetchError, get_json
from authgate.jose import Key, KeySet

_log = logging.getLogger("authgate.guard")

ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
DEFAULT_AGE = 300.0
_MAX_AGE_RE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d{1,10})\"?", re.IGNORECASE)
_NO_CACHE_RE = re.compile(r"(?:^|[,\s])(?:no-store|no-cache)(?:$|[,\s=])", re.IGNORECASE)
_KeyState = tuple[KeySet | None, frozenset[str]]


def cache_age(cache_control: str | None, *, default: float) -> float:
    """The freshness lifetime a ``Cache-Control`` value gives: ``max-age``, 0 for
    ``no-store``/``no-cache``, ``default`` when it says neither."""
    if not cache_control:
        return default
    if _NO_CACHE_RE.search(cache_control):
        return 0.0
    match = _MAX_AGE_RE.search(cache_control)
    return float(match.group(1)) if match else default


def keyset_from_jwks(
    doc: Mapping[str, Any], *, allowed: Collection[str], remote: bool = True
) -> KeySet:
    """The usable keys of a JWKS document: each key loads on its own (one odd key does not
    spoil the set), keys of other algorithms and, from a remote set, HMAC keys are dropped,
    private parts are ignored, and a kid that appears twice is dropped altogether.
    InvalidKey when no usable key is left."""
    entries = doc.get("keys")
    if not isinstance(entries, list):
        raise InvalidKey("the JWKS has no 'keys' array")
    loaded: list[Key] = []
    for entry in entries:
        try:
            key = Key.from_jwk(entry)
        except (InvalidKey, TypeError, ValueError) as exc:
            _log.debug("skipping a JWKS entry: %s", exc)
            continue
        if key.alg not in allowed or (remote and key.is_symmetric):
            _log.debug("skipping JWKS key %r: algorithm %s is not allowed", key.kid, key.alg)
            continue
        loaded.append(key if key.is_symmetric or not key.can_sign else key.public())
    counts: dict[str, int] = {}
    for key in loaded:
        counts[key.kid] = counts.get(key.kid, 0) + 1
    unique = [k for k in loaded if counts[k.kid] == 1]
    if len(unique) != len(loaded):
        _log.warning("the JWKS repeats a kid; those keys are ignored")
    if not unique:
        raise InvalidKey("the JWKS holds no usable key")
    return KeySet(unique)


@dataclass(eq=False, repr=False)
class JWKSCache:
    """A remote JWKS. ``state`` is read from any thread; everything else runs on the
    guard's loop."""

    url: str
    _: KW_ONLY
    http: Callable[[], httpx.AsyncClient]
    clock: Clock
    allowed: frozenset[str]
    cooldown: float = 30.0
    max_age: float = 3600.0
    stale_for: float = 3600.0
    retry: float = 5.0
    on_change: Callable[[KeySet | None, KeySet | None], None] | None = None
    state: _KeyState = field(init=False, default=(None, frozenset()))
    fetched_at: float = field(init=False, default=-math.inf)  # the last good answer (clock time)
    ttl: float = field(init=False, default=0.0)
    last_attempt: float = field(init=False, default=-math.inf)  # a fetch's start, good or not
    fetches: int = field(init=False, default=0)
    failures: int = field(init=False, default=0)
    _inflight: asyncio.Future[bool] | None = field(init=False, default=None)

    # --- reads (any thread) ---------------------------------------------------------------

    @property
    def keys(self) -> KeySet | None:
        """The current key set, or None if there is none (never fetched, or dropped)."""
        return self.state[0]

    @property
    def fetching(self) -> bool:
        """True while a fetch is in flight."""
        return self._inflight is not None

    def may_refetch(self, now: float) -> bool:
        """True if an unknown kid may cause a fetch now (the cooldown has passed)."""
        return now - self.last_attempt >= self.cooldown

    def expires_at(self) -> float:
        """When the last good set goes stale."""
        return self.fetched_at + self.ttl

    # --- fetching (the guard's loop) ------------------------------------------------------

    async def refresh(self) -> bool:
        """Fetch now, or join the fetch in flight; True if it succeeded."""
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._fetch())
        return await asyncio.shield(self._inflight)

    async def refetch_for(self, kid: str) -> bool:
        """An unknown ``kid`` was seen: refetch unless the cooldown forbids it (or join the
        fetch in flight). True if ``kid`` is known afterwards."""
        if self._inflight is None and not self.may_refetch(self.clock.now()):
            return False
        await self.refresh()
        keys = self.keys
        return keys is not None and kid in keys

    async def maintain(self) -> None:
        """Refresh a stale set (with a pause between failed tries); drop a set that stayed
        stale past ``stale_for``."""
        now = self.clock.now()
        if (
            now >= self.fetched_at + self.ttl
            and now - self.last_attempt >= min(self.retry, self.cooldown)
            and self._inflight is None
        ):
            await self.refresh()
        now = self.clock.now()
        if self.keys is not None and now >= self.fetched_at + self.ttl + self.stale_for:
            _log.error(
                "dropping the JWKS of %s: no good answer for %.0f s",
                self.url,
                now - self.fetched_at,
            )
            self._set(None)

    async def _fetch(self) -> bool:
        try:
            return await self._fetch_once()
        finally:
            self._inflight = None

    async def _fetch_once(self) -> bool:
        self.last_attempt = self.clock.now()
        self.fetches += 1
        try:
            answer = await get_json(self.http(), self.url, timeout=10.0)
            keys = keyset_from_jwks(answer.data, allowed=self.allowed)
        except (FetchError, InvalidKey) as exc:
            self.failures += 1
            _log.warning("JWKS fetch from %s failed: %s", self.url, exc)
            return False
        age = cache_age(answer.headers.get("cache-control"), default=DEFAULT_AGE)
        self.ttl = min(max(age, self.cooldown), self.max_age)
        self.fetched_at = self.clock.now()
        self._set(keys)
        return True

    def _set(self, keys: KeySet | None) -> None:
        old = self.keys
        algorithms = frozenset(k.alg for k in keys) if keys is not None else frozenset()
        self.state = (keys, algorithms)
        if self.on_change is not None:
            self.on_change(old, keys)


__all__ = ["ASYMMETRIC_ALGORITHMS", "DEFAULT_AGE", "JWKSCache", "cache_age", "keyset_from_jwks"]
