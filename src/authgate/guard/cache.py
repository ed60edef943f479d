"""The guard's verified-token cache: a bounded LRU keyed by the exact token string."""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from authgate.guard.principal import Principal


@dataclass(frozen=True, slots=True)
class CacheInfo:
    """The verified-token cache: entries, bound, hits, misses and an estimate of the
    memory it holds (tokens, principals and their claims)."""

    entries: int
    max_entries: int
    hits: int
    misses: int
    approx_bytes: int


class TokenCache:
    """Verified principals by token in ``entries``, least recently used first. The guard
    reads ``entries`` on its hot path (``get``, ``move_to_end``) and counts ``hits``;
    :meth:`put` counts misses. It tolerates another thread evicting or clearing entries
    meanwhile."""

    __slots__ = ("entries", "hits", "max_entries", "misses")

    def __init__(self, max_entries: int) -> None:
        self.entries: OrderedDict[str, Principal] = OrderedDict()
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def put(self, token: str, principal: Principal) -> None:
        """Record a freshly verified token (a miss), evicting the least recently used
        entry past ``max_entries`` (0 keeps nothing)."""
        self.misses += 1
        if self.max_entries:
            entries = self.entries
            entries[token] = principal
            if len(entries) > self.max_entries:
                try:  # noqa: SIM105 (the hot path: no context manager)
                    entries.popitem(last=False)
                except KeyError:  # emptied by another thread meanwhile
                    pass

    def clear(self) -> None:
        """Forget every entry (the counters stay)."""
        self.entries.clear()

    def stats(self) -> tuple[int, int, int]:
        """``(entries, hits, misses)``, in O(1)."""
        return len(self.entries), self.hits, self.misses

    def info(self) -> CacheInfo:
        """The counters, with an estimate of the memory held (O(entries))."""
        size = sys.getsizeof
        entries = self.entries
        total = size(entries)
        for token, p in list(entries.items()):
            claims = dict(p.claims)
            total += size(token) + size(p) + size(p.claims) + size(claims)
            total += sum(size(v) for v in claims.values())  # claim names are shared
            total += size(p.permissions) + sum(size(x) for x in p.permissions)
            total += size(p.roles)
        return CacheInfo(len(entries), self.max_entries, self.hits, self.misses, total)


__all__ = ["CacheInfo", "TokenCache"]
