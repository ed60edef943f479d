"""A guard's configuration, each option checked once, when it is built."""

from __future__ import annotations

import ssl
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

import httpx

from authgate.bearer import csrf_cookie_for
from authgate.clock import Clock, SystemClock
from authgate.errors import ConfigurationError
from authgate.guard._origins import EndpointPolicy
from authgate.guard.jwks import ASYMMETRIC_ALGORITHMS
from authgate.jose import ALGORITHMS, DEFAULT_REQUIRED, ClaimsPolicy, Key, KeySet

METADATA_PATH = "/.well-known/oauth-authorization-server"


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardOptions:
    """How a :class:`authgate.guard.Guard` verifies tokens and where it fetches from.

    * ``audience`` (required) and ``issuer``: exact matches; with ``issuer`` and no ``keys``
      the guard discovers ``{issuer}/.well-known/oauth-authorization-server`` (or
      ``metadata_url``) and fetches its ``jwks_uri``.
    * ``keys``: local keys (a Key or KeySet: HS256 for a single service, or public keys);
      ``algorithms``: the allowlist (default: the local keys' own, or every asymmetric
      algorithm for a remote JWKS, whose HMAC keys are never used).
    * ``client_id`` / ``client_secret``: a client with the ``authgate:revocations``
      scope, to follow the revocation feed (``revocation="feed"``, the default; long polls
      of ``feed_wait`` s, short polls every ``feed_interval`` s when the server does not
      long-poll). ``revocation="off"`` says explicitly that revoked tokens live on until
      they expire. ``fail_closed_after`` (default 30 s): every token is refused once the
      feed has not answered for that long; None keeps accepting (fail open).
    * ``cache_size`` (default 10,000): the verified-token LRU cache; 0 turns it off.
    * ``jwks_cooldown`` (30 s): at most one refetch per cooldown for unknown kids;
      ``jwks_max_age`` (1 h): the longest ``Cache-Control: max-age`` honoured;
      ``jwks_stale_for`` (1 h): how long the last good keys outlive their freshness when
      the server cannot be reached.
    * ``leeway`` (0..300 s) and ``max_lifetime`` (1 day) for the claims; ``clock`` (a
      :class:`authgate.clock.Clock`) for every time decision.
    * ``cookie``: also read the token from this cookie when there is no Authorization
      header (off by default; the query string is never read), such as the
      ``__Host-authgate_access`` cookie of authgate's cookie mode. A request whose token
      came from the cookie with an unsafe method (anything but GET, HEAD, OPTIONS, TRACE)
      must carry ``X-CSRF-Token`` equal to the ``csrf_cookie`` cookie (default: authgate's
      own, ``__Host-authgate_csrf_token``, or ``authgate_csrf_token`` beside an unprefixed
      ``cookie``), or it is refused 403 ``csrf_failed``. ``realm`` for the
      ``WWW-Authenticate`` challenges.
    * ``allowed_origins``: origins (``"https://keys.example.com"``) besides the issuer's
      that the metadata may point the guard to. Every URL the guard fetches or sends its
      client credentials to (``metadata_url``, and the ``jwks_uri`` and feed endpoint the
      metadata names) must be https (plain http only on loopback) and on one of these
      origins or the issuer's; redirects are never followed.
    * ``startup_timeout``, ``transport`` (an httpx transport), ``tls_verify`` and
      ``allow_insecure_http`` (plain http is refused off loopback otherwise).

    What follows from them is computed once: ``local_keys``, ``local_algorithms`` (the
    allowed algorithms of the local keys), ``allowed_algorithms``, ``policy`` (the claims
    policy), ``endpoints`` (where the guard may send a request) and ``discovery_url``.

    Raises ConfigurationError for a contradictory configuration: no issuer and no keys;
    ``revocation="feed"`` without an issuer or client credentials (pass
    ``revocation="off"`` to go without, explicitly); HMAC algorithms with a remote JWKS;
    a plain-http issuer that is not on loopback (unless ``allow_insecure_http``); a
    ``metadata_url`` off the allowed origins; an ``allowed_origins`` entry that is not an
    origin.
    """

    audience: str
    issuer: str | None = None
    keys: KeySet | Key | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    revocation: Literal["feed", "off"] = "feed"
    algorithms: Collection[str] | None = None
    leeway: float = 0.0
    max_lifetime: float = 86400.0
    clock: Clock = field(default_factory=SystemClock)
    cache_size: int = 10_000
    jwks_cooldown: float = 30.0
    jwks_max_age: float = 3600.0
    jwks_stale_for: float = 3600.0
    feed_wait: float = 10.0
    feed_interval: float = 1.0
    fail_closed_after: float | None = 30.0
    cookie: str | None = None
    csrf_cookie: str | None = None
    realm: str | None = None
    metadata_url: str | None = None
    allowed_origins: Collection[str] = ()
    startup_timeout: float = 10.0
    transport: httpx.AsyncBaseTransport | None = None
    tls_verify: ssl.SSLContext | str | bool = True
    allow_insecure_http: bool = False

    # Derived from the options above, once (neither shown nor compared: they follow).
    local_keys: KeySet | None = field(init=False, repr=False, compare=False)
    local_algorithms: frozenset[str] = field(init=False, repr=False, compare=False)
    allowed_algorithms: frozenset[str] = field(init=False, repr=False, compare=False)
    policy: ClaimsPolicy = field(init=False, repr=False, compare=False)
    endpoints: EndpointPolicy | None = field(init=False, repr=False, compare=False)
    discovery_url: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check_scalars()
        if self.csrf_cookie is not None and (not self.cookie or self.csrf_cookie == self.cookie):
            raise ConfigurationError("csrf_cookie needs a cookie, and another one")
        endpoints = self._endpoint_policy()
        local = self._local_keys()
        allowed = self._allowed_algorithms(local)
        usable = frozenset(k.alg for k in local) & allowed if local is not None else frozenset()
        if local is not None and not usable:
            raise ConfigurationError("no local key has an allowed algorithm")
        derived = {
            "endpoints": endpoints,
            "local_keys": local,
            "allowed_algorithms": allowed,
            "local_algorithms": usable,
            "policy": self._claims_policy(),
            "discovery_url": (
                (self.metadata_url or self.issuer.rstrip("/") + METADATA_PATH)
                if self.issuer is not None
                else None
            ),
            "allowed_origins": tuple(self.allowed_origins),
            # Never None beside a cookie: a cookie-authenticated unsafe request is always
            # checked.
            "csrf_cookie": (
                (self.csrf_cookie or csrf_cookie_for(self.cookie)) if self.cookie else None
            ),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)  # a frozen dataclass sets its own fields so

    @property
    def needs_loop(self) -> bool:
        """True when the guard does network I/O: remote keys, or the revocation feed."""
        return self.keys is None or self.revocation == "feed"

    def _check_scalars(self) -> None:
        if not isinstance(self.audience, str) or not self.audience:
            raise ConfigurationError("the guard needs an audience")
        issuer = self.issuer
        if issuer is not None and (not isinstance(issuer, str) or not issuer):
            raise ConfigurationError("issuer must be a non-empty string")
        if issuer is None and self.keys is None:
            raise ConfigurationError("the guard needs an issuer (remote keys) or keys=")
        if self.revocation not in ("feed", "off"):
            raise ConfigurationError("revocation must be 'feed' or 'off'")
        if self.revocation == "feed" and (
            issuer is None or not self.client_id or not self.client_secret
        ):
            raise ConfigurationError(
                "following the revocation feed needs issuer, client_id and client_secret "
                "(a client with the authgate:revocations scope); pass revocation='off' to "
                "run without revocation, explicitly"
            )
        if self.fail_closed_after is not None and not self.fail_closed_after > 0:
            raise ConfigurationError("fail_closed_after must be positive (or None)")
        if not isinstance(self.cache_size, int) or self.cache_size < 0:
            raise ConfigurationError("cache_size must be a non-negative integer")
        if self.jwks_cooldown < 0 or self.jwks_max_age <= 0 or self.jwks_stale_for < 0:
            raise ConfigurationError("the JWKS cache durations must be positive")
        if not 0 <= self.feed_wait <= 30 or self.feed_interval <= 0:
            raise ConfigurationError("feed_wait must be 0..30 s and feed_interval positive")

    def _endpoint_policy(self) -> EndpointPolicy | None:
        if self.issuer is None:
            if self.metadata_url is not None or self.allowed_origins:
                raise ConfigurationError("metadata_url and allowed_origins need an issuer")
            return None
        endpoints = EndpointPolicy.for_issuer(
            self.issuer,
            allowed_origins=self.allowed_origins,
            allow_insecure_http=self.allow_insecure_http,
        )
        endpoints.check(self.issuer, what="issuer")
        if self.metadata_url is not None:
            endpoints.check(self.metadata_url, what="metadata_url")
        return endpoints

    def _local_keys(self) -> KeySet | None:
        keys = self.keys
        if keys is None or isinstance(keys, KeySet):
            return keys
        if isinstance(keys, Key):
            return KeySet([keys])
        raise ConfigurationError("keys must be a Key or a KeySet")

    def _allowed_algorithms(self, local: KeySet | None) -> frozenset[str]:
        if self.algorithms is None:
            return frozenset(k.alg for k in local) if local is not None else ASYMMETRIC_ALGORITHMS
        if isinstance(self.algorithms, str):
            raise ConfigurationError("algorithms must be a collection of names")
        allowed = frozenset(self.algorithms)
        unknown = allowed - ALGORITHMS
        if unknown or not allowed:
            raise ConfigurationError(f"unsupported algorithms {sorted(unknown)}")
        if local is None and allowed - ASYMMETRIC_ALGORITHMS:
            raise ConfigurationError("HMAC algorithms are never taken from a remote JWKS")
        return allowed

    def _claims_policy(self) -> ClaimsPolicy:
        if self.issuer is not None:
            return ClaimsPolicy.access_token(
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
                max_lifetime=self.max_lifetime,
            )
        return ClaimsPolicy(
            issuer=None,
            audience=self.audience,
            typ="at+jwt",
            required=DEFAULT_REQUIRED - {"iss"},
            leeway=self.leeway,
            max_lifetime=self.max_lifetime,
        )


__all__ = ["METADATA_PATH", "GuardOptions"]
