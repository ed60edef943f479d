"""Prometheus metrics, in a registry of the app's own (never the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """Every metric authgate exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Histogram(
            "authgate_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["method", "route", "status"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

        def counter(name: str, documentation: str, *labels: str) -> Counter:
            return Counter(name, documentation, labels, registry=r)

        self.logins = counter("authgate_logins_total", "Login attempts by result.", "result")
        self.refreshes = counter(
            "authgate_refreshes_total", "Refresh attempts by result.", "result"
        )
        self.reuse = counter(
            "authgate_refresh_reuse_detected_total", "Refresh-token reuse detections."
        )
        self.revocations = counter(
            "authgate_revocations_total", "Revocation events written, by kind.", "kind"
        )
        self.grants = counter(
            "authgate_oauth2_grants_total", "Tokens issued at /oauth2/token.", "grant_type"
        )
        self.redis_fallbacks = counter(
            "authgate_redis_fallbacks_total",
            "Operations that fell back from Redis to the database or to polling.",
            "part",
        )
        self.shed = counter(
            "authgate_requests_shed_total", "Requests answered 503 by the in-flight limit."
        )
        self.registrations = counter("authgate_registrations_total", "Accounts registered.")
        self.mail_sent = counter("authgate_mail_sent_total", "Mails handed to the mail server.")
        self.mail_failures = counter(
            "authgate_mail_failures_total",
            "Mails not sent, by reason (failed after every attempt, or dropped).",
            "reason",
        )
        self.hash_in_flight = Gauge(
            "authgate_password_hashes_in_flight", "argon2 hashes running or queued.", registry=r
        )

    def on_audit(self, event: str) -> None:
        """Count security events that have a metric of their own."""
        if event == "refresh_reuse":
            self.reuse.inc()
            self.revocations.labels("sid").inc()
        elif event in ("session_revoked", "sessions_revoked"):
            self.revocations.labels("sid").inc()
        elif event == "tokens_revoked":
            self.revocations.labels("user").inc()

    def on_mail(self, outcome: str) -> None:
        """Count one mail outcome of the send queue: sent, failed or dropped."""
        if outcome == "sent":
            self.mail_sent.inc()
        else:
            self.mail_failures.labels(outcome).inc()

    def on_redis_fallback(self, part: str) -> None:
        """Count one fallback from Redis."""
        self.redis_fallbacks.labels(part).inc()

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one request."""
        self.requests.labels(method, route, str(status)).observe(seconds)

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)
