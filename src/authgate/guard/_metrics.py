"""Prometheus metrics of a guard, read when scraped (nothing is updated per request)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from authgate.guard.feed import FeedFollower, RevocationState
    from authgate.guard.jwks import JWKSCache


class Observed(Protocol):
    """What the collector reads of a guard."""

    revoked: RevocationState | None

    @property
    def revocation_staleness(self) -> float | None: ...

    @property
    def feed(self) -> FeedFollower | None: ...

    @property
    def jwks(self) -> JWKSCache | None: ...

    def cache_stats(self) -> tuple[int, int, int]: ...


# The guard's counters: name, help text, and the part of the guard and its attribute that
# count them (a part that is off, a feed or JWKS the guard does not use, has none).
_COUNTERS = (
    ("authgate_guard_feed_polls", "Revocation feed polls.", "feed", "polls"),
    ("authgate_guard_feed_failures", "Revocation feed polls that failed.", "feed", "failures"),
    ("authgate_guard_jwks_fetches", "JWKS fetches.", "jwks", "fetches"),
    ("authgate_guard_jwks_fetch_failures", "JWKS fetches that failed.", "jwks", "failures"),
)


class GuardCollector(Collector):
    """Staleness of the revocation feed, revoked entries, the token cache, JWKS fetches."""

    def __init__(self, guard: Observed) -> None:
        self._guard = guard

    def collect(self) -> Iterator[Metric]:
        """One sample of each metric."""
        g = self._guard
        staleness = g.revocation_staleness
        if staleness is not None:
            yield GaugeMetricFamily(
                "authgate_guard_revocation_staleness_seconds",
                "Seconds since the revocation feed last answered (+Inf before its first).",
                value=staleness if math.isfinite(staleness) else math.inf,
            )
        if g.revoked is not None:
            entries = GaugeMetricFamily(
                "authgate_guard_revoked_entries",
                "Revocation entries held in memory, by kind.",
                labels=["kind"],
            )
            entries.add_metric(["jti"], len(g.revoked.jti))
            entries.add_metric(["sid"], len(g.revoked.sid))
            entries.add_metric(["user"], g.revoked.users)
            yield entries
        info = g.cache_stats()
        yield GaugeMetricFamily(
            "authgate_guard_token_cache_entries", "Verified tokens cached.", value=info[0]
        )
        hits, misses = info[1], info[2]
        yield CounterMetricFamily(
            "authgate_guard_token_cache_hits", "Verifications served by the cache.", value=hits
        )
        yield CounterMetricFamily(
            "authgate_guard_token_cache_misses",
            "Verifications that ran the token core.",
            value=misses,
        )
        for name, documentation, part, attribute in _COUNTERS:
            counted = getattr(g, part)
            if counted is not None:
                yield CounterMetricFamily(name, documentation, value=getattr(counted, attribute))


def register(guard: Observed, registry: CollectorRegistry) -> GuardCollector:
    """Register the guard's metrics in ``registry``."""
    collector = GuardCollector(guard)
    registry.register(collector)
    return collector


__all__ = ["GuardCollector", "Observed", "register"]
