"""The guard: verifies access tokens for a resource server, at near-zero cost per request.

``Guard(issuer=..., audience=..., client_id=..., client_secret=...)`` discovers the
server's RFC 8414 metadata, fetches its JWKS and follows its revocation feed;
``Guard(keys=KeySet, audience=...)`` works offline with local keys. ``verify(token)`` runs
the strict token core once per token (a bounded LRU cache, keyed by the exact token string,
keeps the result) and checks expiry and revocation in memory on every call.

Network I/O (discovery, JWKS, the feed) runs on a private event loop in a daemon thread,
so the same guard serves asyncio apps (``verify``) and WSGI apps (``verify_sync``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import os
import ssl
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Collection, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import httpx

from authgate.clock import Clock, SystemClock
from authgate.errors import (
    AlgorithmNotAllowed,
    ConfigurationError,
    InvalidToken,
    TokenExpired,
    TokenNotYetValid,
    TokenRevoked,
    UnknownKey,
)
from authgate.guard._http import FetchError, get_json
from authgate.guard._loop import BackgroundLoop
from authgate.guard._origins import EndpointPolicy
from authgate.guard.feed import FeedFollower, RevocationState
from authgate.guard.jwks import ASYMMETRIC_ALGORITHMS, JWKSCache
from authgate.guard.principal import Principal, Requirement
from authgate.jose import ALGORITHMS, DEFAULT_REQUIRED, ClaimsPolicy, Key, KeySet, decode, jws

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from starlette.types import ASGIApp

    from authgate.guard.asgi import GuardMiddleware
    from authgate.guard.fastapi import GuardDependency

_log = logging.getLogger("authgate.guard")
_T = TypeVar("_T")

_METADATA_PATH = "/.well-known/oauth-authorization-server"
_FEED_METADATA = "authgate_revocation_feed_endpoint"
_REVOKED = {
    "jti": "token was revoked",
    "sid": "token's session has ended",
    "user": "token's user was revoked (an older privilege version, or issued before the epoch)",
}
_LIVE_GUARDS: weakref.WeakSet[Guard] = weakref.WeakSet()
_FORK_HOOK = False


def _after_fork() -> None:
    for guard in list(_LIVE_GUARDS):
        guard._live = False


@dataclass(frozen=True, slots=True)
class CacheInfo:
    """The verified-token cache: entries, bound, hits, misses and an estimate of the
    memory it holds (tokens, principals and their claims)."""

    entries: int
    max_entries: int
    hits: int
    misses: int
    approx_bytes: int


class Guard:
    """Verifies authgate access tokens (RFC 9068) for a resource server.

    Every option is keyword-only:

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
      header (off by default; the query string is never read); ``realm`` for the
      ``WWW-Authenticate`` challenges.
    * ``allowed_origins``: origins (``"https://keys.example.com"``) besides the issuer's
      that the metadata may point the guard to. Every URL the guard fetches or sends its
      client credentials to (``metadata_url``, and the ``jwks_uri`` and feed endpoint the
      metadata names) must be https (plain http only on loopback) and on one of these
      origins or the issuer's; redirects are never followed.
    * ``startup_timeout``, ``transport`` (an httpx transport), ``tls_verify``,
      ``allow_insecure_http`` (plain http is refused off loopback otherwise) and
      ``metrics`` (a prometheus ``CollectorRegistry`` to register the guard's metrics in).

    Raises ConfigurationError for a contradictory configuration: no issuer and no keys;
    ``revocation="feed"`` without an issuer or client credentials (pass
    ``revocation="off"`` to go without, explicitly); HMAC algorithms with a remote JWKS;
    a plain-http issuer that is not on loopback (unless ``allow_insecure_http``); a
    ``metadata_url`` off the allowed origins; an ``allowed_origins`` entry that is not an
    origin. At start, metadata that names an endpoint off the allowed origins (or over plain
    http off loopback) fails the start with ConfigurationError, context
    ``condition='endpoint_not_allowed'``, before any request goes there.
    """

    def __init__(
        self,
        *,
        audience: str,
        issuer: str | None = None,
        keys: KeySet | Key | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        revocation: Literal["feed", "off"] = "feed",
        algorithms: Collection[str] | None = None,
        leeway: float = 0.0,
        max_lifetime: float = 86400.0,
        clock: Clock | None = None,
        cache_size: int = 10_000,
        jwks_cooldown: float = 30.0,
        jwks_max_age: float = 3600.0,
        jwks_stale_for: float = 3600.0,
        feed_wait: float = 10.0,
        feed_interval: float = 1.0,
        fail_closed_after: float | None = 30.0,
        cookie: str | None = None,
        realm: str | None = None,
        metadata_url: str | None = None,
        allowed_origins: Collection[str] = (),
        startup_timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        tls_verify: ssl.SSLContext | str | bool = True,
        allow_insecure_http: bool = False,
        metrics: CollectorRegistry | None = None,
    ) -> None:
        if not isinstance(audience, str) or not audience:
            raise ConfigurationError("the guard needs an audience")
        if issuer is not None and (not isinstance(issuer, str) or not issuer):
            raise ConfigurationError("issuer must be a non-empty string")
        if issuer is None and keys is None:
            raise ConfigurationError("the guard needs an issuer (remote keys) or keys=")
        if revocation not in ("feed", "off"):
            raise ConfigurationError("revocation must be 'feed' or 'off'")
        if revocation == "feed" and (issuer is None or not client_id or not client_secret):
            raise ConfigurationError(
                "following the revocation feed needs issuer, client_id and client_secret "
                "(a client with the authgate:revocations scope); pass revocation='off' to "
                "run without revocation, explicitly"
            )
        if fail_closed_after is not None and not fail_closed_after > 0:
            raise ConfigurationError("fail_closed_after must be positive (or None)")
        if not isinstance(cache_size, int) or cache_size < 0:
            raise ConfigurationError("cache_size must be a non-negative integer")
        if jwks_cooldown < 0 or jwks_max_age <= 0 or jwks_stale_for < 0:
            raise ConfigurationError("the JWKS cache durations must be positive")
        if not 0 <= feed_wait <= 30 or feed_interval <= 0:
            raise ConfigurationError("feed_wait must be 0..30 s and feed_interval positive")
        endpoints: EndpointPolicy | None = None
        if issuer is not None:
            endpoints = EndpointPolicy.for_issuer(
                issuer, allowed_origins=allowed_origins, allow_insecure_http=allow_insecure_http
            )
            endpoints.check(issuer, what="issuer")
            if metadata_url is not None:
                endpoints.check(metadata_url, what="metadata_url")
        elif metadata_url is not None or allowed_origins:
            raise ConfigurationError("metadata_url and allowed_origins need an issuer")

        local: KeySet | None
        if keys is None:
            local = None
        elif isinstance(keys, Key):
            local = KeySet([keys])
        elif isinstance(keys, KeySet):
            local = keys
        else:
            raise ConfigurationError("keys must be a Key or a KeySet")

        if algorithms is None:
            allowed = (
                frozenset(k.alg for k in local) if local is not None else ASYMMETRIC_ALGORITHMS
            )
        else:
            if isinstance(algorithms, str):
                raise ConfigurationError("algorithms must be a collection of names")
            allowed = frozenset(algorithms)
            unknown = allowed - ALGORITHMS
            if unknown or not allowed:
                raise ConfigurationError(f"unsupported algorithms {sorted(unknown)}")
            if local is None and allowed - ASYMMETRIC_ALGORITHMS:
                raise ConfigurationError("HMAC algorithms are never taken from a remote JWKS")
        if local is not None:
            usable = frozenset(k.alg for k in local) & allowed
            if not usable:
                raise ConfigurationError("no local key has an allowed algorithm")
            local_state: tuple[KeySet | None, frozenset[str]] = (local, usable)
        else:
            local_state = (None, frozenset())

        self.issuer = issuer
        self.audience = audience
        self.realm = realm
        self.cookie = cookie
        self.algorithms = allowed
        self._clock: Clock = clock or SystemClock()
        self._leeway = float(leeway)
        if issuer is not None:
            policy = ClaimsPolicy.access_token(
                issuer=issuer, audience=audience, leeway=leeway, max_lifetime=max_lifetime
            )
        else:
            policy = ClaimsPolicy(
                issuer=None,
                audience=audience,
                typ="at+jwt",
                required=DEFAULT_REQUIRED - {"iss"},
                leeway=leeway,
                max_lifetime=max_lifetime,
            )
        self.policy = policy
        self._local_state = local_state
        self._client_id = client_id
        self._client_secret = client_secret
        self._revocation_mode = revocation
        self._fail_closed_after = fail_closed_after
        self._cache_size = cache_size
        self._cache: OrderedDict[str, Principal] = OrderedDict()
        self._hits = 0
        self._misses = 0
        self._jwks_options = {
            "cooldown": float(jwks_cooldown),
            "max_age": float(jwks_max_age),
            "stale_for": float(jwks_stale_for),
        }
        self._feed_wait = float(feed_wait)
        self._feed_interval = float(feed_interval)
        self._metadata_url = metadata_url or (
            issuer.rstrip("/") + _METADATA_PATH if issuer is not None else None
        )
        self._endpoints = endpoints
        self._startup_timeout = startup_timeout
        self._transport = transport
        self._tls_verify = tls_verify

        self.metadata: dict[str, Any] | None = None
        self.jwks: JWKSCache | None = None
        self.revoked: RevocationState | None = RevocationState() if revocation == "feed" else None
        self.feed: FeedFollower | None = None
        self._http: httpx.AsyncClient | None = None
        self._runner: BackgroundLoop | None = None
        self._startup: concurrent.futures.Future[None] | None = None
        self._main: asyncio.Future[None] | None = None
        self._ready: asyncio.Event | None = None
        self._start_lock = threading.Lock()
        self._needs_loop = local is None or revocation == "feed"
        self._live = not self._needs_loop
        self._stale_logged = False
        if metrics is not None:
            from authgate.guard._metrics import register

            register(self, metrics)

    # --- the hot path -----------------------------------------------------------------------

    def _authenticate(self, token: str) -> Principal:
        """Verify ``token`` against the keys at hand; raise an InvalidToken subclass
        (UnknownKey when its kid is not among them)."""
        now = self._clock.now()
        cache = self._cache
        principal = cache.get(token)
        if principal is None:
            principal = self._decode(token, now)
        else:
            self._hits += 1
            try:  # noqa: SIM105 (the hot path: no context manager)
                cache.move_to_end(token)
            except KeyError:  # evicted or cleared by another thread meanwhile
                pass
            leeway = self._leeway
            if now >= principal.exp + leeway:
                cache.pop(token, None)
                raise TokenExpired("token has expired", exp=principal.exp)
            nbf = principal.nbf
            if nbf is not None and now + leeway < nbf:
                raise TokenNotYetValid("token is not valid yet", nbf=nbf)
        revoked = self.revoked
        if revoked is not None:
            # After the cache, on every call: a cached token dies with its revocation.
            why = revoked.reason(
                jti=principal.jti,
                sid=principal.sid,
                sub=principal.sub,
                iat=principal.iat,
                ver=principal.ver,
            )
            if why is not None:
                raise TokenRevoked(_REVOKED[why], by=why)
            limit = self._fail_closed_after
            feed = self.feed
            if limit is not None and (feed is None or now - feed.synced_at > limit):
                raise InvalidToken(
                    "the revocation feed is stale; refusing every token",
                    condition="revocation_unavailable",
                    staleness=math.inf if feed is None else now - feed.synced_at,
                )
        return principal

    def _decode(self, token: str, now: float) -> Principal:
        keys, algorithms = self._local_state if self.jwks is None else self.jwks.state
        if keys is None:
            raise InvalidToken("the issuer's keys are not available", condition="keys_unavailable")
        claims = decode(token, keys, algorithms=algorithms, policy=self.policy, now=now)
        principal = Principal.from_claims(claims, token)
        self._misses += 1
        size = self._cache_size
        if size:
            cache = self._cache
            cache[token] = principal
            if len(cache) > size:
                try:  # noqa: SIM105 (the hot path: no context manager)
                    cache.popitem(last=False)
                except KeyError:  # emptied by another thread meanwhile
                    pass
        return principal

    async def verify(self, token: str) -> Principal:
        """Verify an access token and check it is not revoked; return its Principal.

        Raises an :class:`authgate.errors.InvalidToken` subclass for every refusal
        (``TokenRevoked`` when revoked; ``InvalidToken`` with
        ``context['condition'] == 'revocation_unavailable'`` once the feed is staler than
        ``fail_closed_after``). Starts the guard on first use.
        """
        if not self._live:
            await self.start()
        try:
            return self._authenticate(token)
        except (UnknownKey, AlgorithmNotAllowed) as exc:
            kid = self._refetchable_kid(exc, token)
            if kid is None:
                raise
            assert self.jwks is not None
            if not await asyncio.wrap_future(self._submit(self.jwks.refetch_for(kid))):
                raise
        return self._authenticate(token)

    def verify_sync(self, token: str, *, timeout: float = 15.0) -> Principal:
        """:meth:`verify` for threads (WSGI): blocks at most ``timeout`` s on a key refetch."""
        if not self._live:
            self.start_sync()
        try:
            return self._authenticate(token)
        except (UnknownKey, AlgorithmNotAllowed) as exc:
            kid = self._refetchable_kid(exc, token)
            if kid is None:
                raise
            assert self.jwks is not None
            try:
                found = self._submit(self.jwks.refetch_for(kid)).result(timeout)
            except concurrent.futures.TimeoutError:
                found = False
            if not found:
                raise
        return self._authenticate(token)

    def _refetchable_kid(self, exc: InvalidToken, token: str) -> str | None:
        """The kid to refetch the JWKS for, or None: an unknown kid, or (a key rotated to
        another allowed algorithm) an allowed algorithm that no fetched key has yet with
        an unknown kid; and only when the cooldown allows a fetch or one is in flight."""
        jwks = self.jwks
        if jwks is None:
            return None
        kid: object
        if isinstance(exc, UnknownKey):
            kid = exc.context.get("kid")
        elif exc.context.get("alg") in self.algorithms and "kid" not in exc.context:
            try:
                kid = jws.split(token)[0].kid
            except InvalidToken:
                return None
            keys = jwks.keys
            if keys is not None and kid in keys:
                return None
        else:
            return None
        if not isinstance(kid, str):
            return None
        if not (jwks.fetching or jwks.may_refetch(self._clock.now())):
            return None
        return kid

    def require(
        self, *permissions: str, roles: Collection[str] = (), any_of: Collection[str] = ()
    ) -> GuardDependency:
        """A FastAPI dependency that answers the Principal, or 401/403 per RFC 6750; it
        shows in the OpenAPI security schemes. Demands every permission of
        ``permissions``, every role of ``roles`` and, if given, one permission of ``any_of``."""
        from authgate.guard.fastapi import GuardDependency

        return GuardDependency(self, Requirement.of(permissions, roles=roles, any_of=any_of))

    def asgi_middleware(self, app: ASGIApp) -> GuardMiddleware:
        """A pure-ASGI middleware factory: ``app.add_middleware(guard.asgi_middleware)``.
        It sets ``scope["user"]`` and ``scope["auth"]`` and starts/stops the guard with the
        app's lifespan."""
        from authgate.guard.asgi import GuardMiddleware

        return GuardMiddleware(app, guard=self)

    def starlette_required(
        self, *permissions: str, roles: Collection[str] = (), any_of: Collection[str] = ()
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A decorator for Starlette endpoints: 401/403 per RFC 6750 unless the request's
        token meets the requirement; ``request.user`` is then the Principal. It also fits
        FastAPI endpoints that take ``request: Request``, where it costs less than a
        dependency (FastAPI's dependency machinery is most of a dependency's cost)."""
        from authgate.guard.asgi import required

        return required(self, Requirement.of(permissions, roles=roles, any_of=any_of))

    def flask_required(
        self, *permissions: str, roles: Collection[str] = (), any_of: Collection[str] = ()
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A decorator for Flask views (``flask`` extra); ``flask.g.principal`` is set."""
        from authgate.guard.flask import required

        return required(self, Requirement.of(permissions, roles=roles, any_of=any_of))

    def django_required(
        self, *permissions: str, roles: Collection[str] = (), any_of: Collection[str] = ()
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A decorator for Django views (``django`` extra); ``request.principal`` is set."""
        from authgate.guard.django import required

        return required(self, Requirement.of(permissions, roles=roles, any_of=any_of))

    # --- state ------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once keys are at hand and, with the feed, its first answer has come."""
        if self._needs_loop and not self._live:
            return False
        if self._local_state[0] is None and (self.jwks is None or self.jwks.keys is None):
            return False
        feed = self.feed
        return self.revoked is None or (feed is not None and feed.synced_at > -math.inf)

    @property
    def revocation_staleness(self) -> float | None:
        """Seconds since the revocation feed last answered (infinite before its first
        answer); None when revocation is off."""
        if self.revoked is None:
            return None
        feed = self.feed
        return math.inf if feed is None else max(0.0, feed.staleness(self._clock.now()))

    def cache_info(self) -> CacheInfo:
        """The verified-token cache, with an estimate of its memory (O(entries))."""
        size = sys.getsizeof
        total = size(self._cache)
        for token, p in list(self._cache.items()):
            claims = dict(p.claims)
            total += size(token) + size(p) + size(p.claims) + size(claims)
            total += sum(size(v) for v in claims.values())  # claim names are shared
            total += size(p.permissions) + sum(size(x) for x in p.permissions)
            total += size(p.roles)
        return CacheInfo(len(self._cache), self._cache_size, self._hits, self._misses, total)

    def cache_stats(self) -> tuple[int, int, int]:
        """``(entries, hits, misses)`` of the verified-token cache, in O(1)."""
        return len(self._cache), self._hits, self._misses

    def clear_cache(self) -> None:
        """Forget every verified token (each is verified again on its next use)."""
        self._cache.clear()

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Discover the server, fetch its keys and make the first feed sync (waiting up to
        ``startup_timeout``; after that it goes on in the background, and tokens are
        refused until it is done). ConfigurationError when the server refuses the
        configuration (a wrong issuer, refused client credentials). Idempotent."""
        await asyncio.wrap_future(self._ensure_started())

    def start_sync(self, timeout: float | None = None) -> None:
        """:meth:`start` for threads."""
        self._ensure_started().result(timeout)

    async def close(self) -> None:
        """Stop following the feed and close connections. The guard may start again."""
        await asyncio.to_thread(self.close_sync)

    def close_sync(self) -> None:
        """:meth:`close` for threads."""
        with self._start_lock:
            runner, self._runner = self._runner, None
            self._startup = None
            self._live = not self._needs_loop
            if runner is None or not runner.running:
                return
            try:
                runner.submit(self._shutdown()).result(10.0)
            except (concurrent.futures.TimeoutError, RuntimeError):
                _log.warning("the guard did not shut down cleanly")
            finally:
                runner.stop()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """An ASGI lifespan that starts and closes the guard: ``FastAPI(lifespan=guard.lifespan)``
        (for apps that use the dependency without the middleware)."""
        await self.start()
        try:
            yield
        finally:
            await self.close()

    async def __aenter__(self) -> Guard:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __enter__(self) -> Guard:
        self.start_sync()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close_sync()

    async def sync(self) -> int:
        """Poll the revocation feed now (not waiting for the follower); return how many
        events came. A no-op returning 0 when revocation is off."""
        if self.revoked is None:
            return 0
        if not self._live:
            await self.start()
        feed = self.feed
        if feed is None:
            raise InvalidToken("the guard has not reached the feed yet")
        try:
            return await asyncio.wrap_future(self._submit(feed.sync()))
        except FetchError as exc:
            raise InvalidToken(f"the revocation feed failed: {exc}") from exc

    def _submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        runner = self._runner
        if runner is None or not runner.running:
            coro.close()
            raise InvalidToken("the guard is not running", condition="guard_stopped")
        return runner.submit(coro)

    def _ensure_started(self) -> concurrent.futures.Future[None]:
        global _FORK_HOOK
        with self._start_lock:
            if not self._needs_loop:
                done: concurrent.futures.Future[None] = concurrent.futures.Future()
                done.set_result(None)
                return done
            runner = self._runner
            if runner is not None and runner.running and self._startup is not None:
                return self._startup
            if not _FORK_HOOK:
                os.register_at_fork(after_in_child=_after_fork)
                _FORK_HOOK = True
            _LIVE_GUARDS.add(self)
            runner = BackgroundLoop("authgate-guard")
            runner.start()
            self._runner = runner
            startup = runner.submit(self._bootstrap())
            self._startup = startup
            return startup

    # --- the background loop ------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        assert self._http is not None
        return self._http

    async def _bootstrap(self) -> None:
        self._http = httpx.AsyncClient(
            transport=self._transport,
            verify=self._tls_verify,
            # A redirect could take the client secret elsewhere: never followed (a 30x fails).
            follow_redirects=False,
            timeout=httpx.Timeout(15.0, connect=5.0),
            headers={"User-Agent": "authgate-guard"},
            # Every request, whatever code path builds it, passes the endpoint policy.
            event_hooks={"request": [self._outbound]},
        )
        self._ready = asyncio.Event()
        main = asyncio.ensure_future(self._run())
        self._main = main
        ready = asyncio.ensure_future(self._ready.wait())
        try:
            await asyncio.wait(
                {main, ready},
                timeout=self._startup_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            ready.cancel()
        if main.done():
            main.result()  # raises ConfigurationError
        self._live = True
        if not self._ready.is_set():
            _log.warning(
                "the guard is not ready after %.0f s (authorization server unreachable?); "
                "retrying in the background, refusing tokens meanwhile",
                self._startup_timeout,
            )

    async def _outbound(self, request: httpx.Request) -> None:
        """The request hook of the guard's client: refuse, before anything is sent, a
        request to a URL the endpoint policy does not allow."""
        policy = self._endpoints
        why = "the guard has no issuer" if policy is None else policy.refusal(request.url)
        if why is not None:
            raise FetchError(
                f"refused to send {request.method} to an endpoint that {why}",
                permanent=True,
                condition="endpoint_not_allowed",
            )

    async def _retrying(self, what: str, attempt: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        delay = 0.25
        failures = 0
        while True:
            try:
                return await attempt()
            except FetchError as exc:
                if exc.permanent:
                    context: dict[str, Any] = {"status": exc.status}
                    if exc.condition is not None:
                        context["condition"] = exc.condition
                    raise ConfigurationError(f"{what}: {exc}", **context) from exc
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    _log.warning("%s failed (%d tries so far): %s", what, failures, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _discover(self) -> dict[str, Any]:
        assert self._metadata_url is not None
        answer = await get_json(self._client(), self._metadata_url, timeout=10.0)
        doc = answer.data
        if doc.get("issuer") != self.issuer:
            raise FetchError(
                f"the metadata names issuer {doc.get('issuer')!r}, not {self.issuer!r}",
                permanent=True,
            )
        assert self._endpoints is not None
        for name in self._metadata_endpoints():
            value = doc.get(name)
            if not isinstance(value, str) or not value:
                raise FetchError(f"the metadata has no usable {name}", permanent=True)
            # Checked as it is taken from the metadata, before anything is sent to it.
            self._endpoints.check(value, what=f"the metadata's {name}")
        return doc

    def _metadata_endpoints(self) -> tuple[str, ...]:
        """The metadata members naming URLs this guard will use."""
        names: tuple[str, ...] = ()
        if self._local_state[0] is None:
            names += ("jwks_uri",)
        if self.revoked is not None:
            names += (_FEED_METADATA,)
        return names

    async def _first_jwks(self) -> None:
        assert self.jwks is not None
        if not await self.jwks.refresh():
            raise FetchError("the JWKS could not be fetched")

    async def _first_sync(self) -> None:
        assert self.feed is not None
        await self.feed.sync()

    async def _run(self) -> None:
        assert self._ready is not None
        if self.issuer is not None and (self._local_state[0] is None or self.revoked is not None):
            self.metadata = await self._retrying("authorization server discovery", self._discover)
        if self._local_state[0] is None:
            assert self.metadata is not None
            self.jwks = JWKSCache(
                self.metadata["jwks_uri"],
                http=self._client,
                clock=self._clock,
                allowed=self.algorithms,
                on_change=self._keys_changed,
                **self._jwks_options,
            )
            await self._retrying("fetching the JWKS", self._first_jwks)
        if self.revoked is not None:
            assert self.metadata is not None
            assert self._client_id
            assert self._client_secret
            self.feed = FeedFollower(
                self.metadata[_FEED_METADATA],
                http=self._client,
                client_id=self._client_id,
                client_secret=self._client_secret,
                clock=self._clock,
                state=self.revoked,
                wait=self._feed_wait,
                interval=self._feed_interval,
            )
            await self._retrying("the first revocation feed sync", self._first_sync)
        self._ready.set()
        tasks = [asyncio.ensure_future(self._maintain())]
        if self.feed is not None:
            tasks.append(asyncio.ensure_future(self.feed.run()))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    def _keys_changed(self, old: KeySet | None, new: KeySet | None) -> None:
        if old is None:
            return
        kept = set() if new is None else {k.kid for k in new}
        removed = [k.kid for k in old if k.kid not in kept]
        if removed:
            # A token signed by a key that is no longer published must not live on here.
            _log.info("keys %s left the JWKS; clearing the token cache", removed)
            self._cache.clear()

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = self._clock.now()
            if self.jwks is not None:
                await self.jwks.maintain()
            if self.revoked is not None:
                self.revoked.purge(now)
                self._log_staleness(now)

    def _log_staleness(self, now: float) -> None:
        limit = self._fail_closed_after
        feed = self.feed
        if limit is None or feed is None:
            return
        stale = now - feed.synced_at > limit
        if stale and not self._stale_logged:
            _log.error(
                "the revocation feed has not answered for %.0f s: refusing every token "
                "(fail_closed_after=%.0f s); last error: %s",
                now - feed.synced_at,
                limit,
                feed.last_error,
            )
        elif not stale and self._stale_logged:
            _log.warning("the revocation feed answers again; accepting tokens")
        self._stale_logged = stale

    async def _shutdown(self) -> None:
        main = self._main
        if main is not None:
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await main
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        self.jwks = None if self._local_state[0] is None else self.jwks
        self.feed = None


__all__ = ["CacheInfo", "Guard"]
