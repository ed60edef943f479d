"""The guard: verifies access tokens for a resource server, at near-zero cost per request.

``Guard(issuer=..., audience=..., client_id=..., client_secret=...)`` discovers the
server's RFC 8414 metadata, fetches its JWKS and follows its revocation feed;
``Guard(keys=KeySet, audience=...)`` works offline with local keys. ``verify(token)`` runs
the strict token core once per token (a bounded LRU cache, keyed by the exact token string,
keeps the result) and checks expiry and revocation in memory on every call.

The network side is :mod:`authgate.guard.runtime`. The adapters import this module, and it
imports each of them only when its adapter method is called.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from authgate.clock import Clock, SystemClock
from authgate.errors import (
    AlgorithmNotAllowed,
    InvalidToken,
    TokenExpired,
    TokenNotYetValid,
    TokenRevoked,
    UnknownKey,
)
from authgate.guard.cache import CacheInfo, TokenCache
from authgate.guard.feed import REVOKED_BECAUSE
from authgate.guard.options import GuardOptions
from authgate.guard.principal import Principal, Requirement
from authgate.guard.runtime import GuardRuntime
from authgate.jose import Key, KeySet, decode

if TYPE_CHECKING:
    import ssl

    import httpx
    from prometheus_client import CollectorRegistry
    from starlette.requests import Request
    from starlette.types import ASGIApp

    from authgate.guard.feed import FeedFollower
    from authgate.guard.jwks import JWKSCache

_View = Callable[..., Any]


class Guard:
    """Verifies authgate access tokens (RFC 9068) for a resource server.

    Every option is keyword-only; :class:`GuardOptions` (``guard.options``) describes and
    checks them (ConfigurationError for a contradictory configuration). ``metrics`` is a
    prometheus ``CollectorRegistry`` to register the guard's metrics in. At start, metadata
    that names an endpoint off the allowed origins (or over plain http off loopback) fails
    the start with ConfigurationError, context ``condition='endpoint_not_allowed'``, before
    any request goes there.
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
        csrf_cookie: str | None = None,
        realm: str | None = None,
        metadata_url: str | None = None,
        allowed_origins: Collection[str] = (),
        startup_timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        tls_verify: ssl.SSLContext | str | bool = True,
        allow_insecure_http: bool = False,
        metrics: CollectorRegistry | None = None,
    ) -> None:
        options = GuardOptions(
            audience=audience,
            issuer=issuer,
            keys=keys,
            client_id=client_id,
            client_secret=client_secret,
            revocation=revocation,
            algorithms=algorithms,
            leeway=leeway,
            max_lifetime=max_lifetime,
            clock=clock or SystemClock(),
            cache_size=cache_size,
            jwks_cooldown=jwks_cooldown,
            jwks_max_age=jwks_max_age,
            jwks_stale_for=jwks_stale_for,
            feed_wait=feed_wait,
            feed_interval=feed_interval,
            fail_closed_after=fail_closed_after,
            cookie=cookie,
            csrf_cookie=csrf_cookie,
            realm=realm,
            metadata_url=metadata_url,
            allowed_origins=allowed_origins,
            startup_timeout=startup_timeout,
            transport=transport,
            tls_verify=tls_verify,
            allow_insecure_http=allow_insecure_http,
        )
        self.options = options
        self.issuer = options.issuer
        self.audience = options.audience
        self.realm = options.realm
        self.cookie = options.cookie
        self.csrf_cookie = options.csrf_cookie
        self.algorithms = options.allowed_algorithms
        self.policy = options.policy
        self._clock = options.clock
        self._leeway = float(options.leeway)
        self._fail_closed_after = options.fail_closed_after
        self._local = (options.local_keys, options.local_algorithms)
        self._cache = TokenCache(options.cache_size)
        self._runtime = GuardRuntime(options, on_keys_removed=self._cache.clear)
        self.revoked = self._runtime.revoked
        if metrics is not None:
            from authgate.guard._metrics import register

            register(self, metrics)

    # --- the hot path -----------------------------------------------------------------------

    def _authenticate(self, token: str) -> Principal:
        """Verify ``token`` against the keys at hand; raise an InvalidToken subclass
        (UnknownKey when its kid is not among them)."""
        now = self._clock.now()
        cache = self._cache
        entries = cache.entries
        principal = entries.get(token)
        if principal is None:
            principal = self._decode(token, now)
        else:
            cache.hits += 1
            try:  # noqa: SIM105 (the hot path: no context manager)
                entries.move_to_end(token)
            except KeyError:  # evicted or cleared by another thread meanwhile
                pass
            leeway = self._leeway
            if now >= principal.exp + leeway:
                entries.pop(token, None)
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
                raise TokenRevoked(REVOKED_BECAUSE[why], by=why)
            limit = self._fail_closed_after
            feed = self._runtime.feed
            if limit is not None and (feed is None or now - feed.synced_at > limit):
                raise InvalidToken(
                    "the revocation feed is stale; refusing every token",
                    condition="revocation_unavailable",
                    staleness=math.inf if feed is None else now - feed.synced_at,
                )
        return principal

    def _decode(self, token: str, now: float) -> Principal:
        jwks = self._runtime.jwks
        keys, algorithms = self._local if jwks is None else jwks.state
        if keys is None:
            raise InvalidToken("the issuer's keys are not available", condition="keys_unavailable")
        claims = decode(token, keys, algorithms=algorithms, policy=self.policy, now=now)
        principal = Principal.from_claims(claims, token)
        self._cache.put(token, principal)
        return principal

    def verify_cached(self, token: str) -> Principal | None:
        """Verify ``token`` synchronously, with no I/O and no waiting: against the cache
        (or the strict token core and the keys at hand on a miss), expiry, and the
        revocation state in memory. Returns None when only I/O can decide (the guard has
        not started in this process, or the token names a key a JWKS refetch may bring):
        then call :meth:`verify` or :meth:`verify_sync`. Raises what :meth:`verify` raises
        for a refusal."""
        runtime = self._runtime
        if not runtime.live:
            return None
        try:
            return self._authenticate(token)
        except (UnknownKey, AlgorithmNotAllowed) as exc:
            if runtime.refetchable_kid(exc, token) is None:
                raise
            return None

    async def verify(self, token: str) -> Principal:
        """Verify an access token and check it is not revoked; return its Principal.

        Raises an :class:`authgate.errors.InvalidToken` subclass for every refusal
        (``TokenRevoked`` when revoked; ``InvalidToken`` with
        ``context['condition'] == 'revocation_unavailable'`` once the feed is staler than
        ``fail_closed_after``). Starts the guard on first use.
        """
        if not self._runtime.live:
            await self.start()
        try:
            return self._authenticate(token)
        except (UnknownKey, AlgorithmNotAllowed) as exc:
            if not await self._runtime.refetched(exc, token):
                raise
        return self._authenticate(token)

    def verify_sync(self, token: str, *, timeout: float = 15.0) -> Principal:
        """:meth:`verify` for threads (WSGI): blocks at most ``timeout`` s on a key refetch."""
        if not self._runtime.live:
            self.start_sync()
        try:
            return self._authenticate(token)
        except (UnknownKey, AlgorithmNotAllowed) as exc:
            if not self._runtime.refetched_sync(exc, token, timeout=timeout):
                raise
        return self._authenticate(token)

    # --- adapters (each imported on first use: the adapters import this module) ------------

    def requirement(
        self,
        permissions: Collection[str],
        *,
        roles: Collection[str] = (),
        any_of: Collection[str] = (),
        verified: bool = False,
        mfa: bool = False,
        max_auth_age: int | None = None,
    ) -> Requirement:
        """A route's demand (what :meth:`require` and the adapters check), on this guard's
        clock for ``max_auth_age``."""
        return Requirement.of(
            permissions,
            roles=roles,
            any_of=any_of,
            verified=verified,
            mfa=mfa,
            max_auth_age=max_auth_age,
            clock=self._clock,
        )

    def require(
        self,
        *permissions: str,
        roles: Collection[str] = (),
        any_of: Collection[str] = (),
        verified: bool = False,
        mfa: bool = False,
        max_auth_age: int | None = None,
    ) -> Callable[[Request], Awaitable[Principal]]:
        """A FastAPI dependency that answers the Principal, or 401/403 per RFC 6750; it
        shows in the OpenAPI security schemes. Demands every permission of
        ``permissions``, every role of ``roles``, if given one permission of ``any_of``,
        with ``verified`` a verified email address (403 ``email_not_verified``), with
        ``mfa`` a login with a second factor and with ``max_auth_age`` a login at most that
        many seconds ago (401 ``insufficient_user_authentication``, RFC 9470)."""
        from authgate.guard.fastapi import GuardDependency

        return GuardDependency(
            self,
            self.requirement(
                permissions,
                roles=roles,
                any_of=any_of,
                verified=verified,
                mfa=mfa,
                max_auth_age=max_auth_age,
            ),
        )

    def asgi_middleware(self, app: ASGIApp) -> ASGIApp:
        """A pure-ASGI middleware factory: ``app.add_middleware(guard.asgi_middleware)``.
        It sets ``scope["user"]`` and ``scope["auth"]`` and starts/stops the guard with the
        app's lifespan."""
        from authgate.guard.asgi import GuardMiddleware

        return GuardMiddleware(app, guard=self)

    def starlette_required(
        self,
        *permissions: str,
        roles: Collection[str] = (),
        any_of: Collection[str] = (),
        verified: bool = False,
        mfa: bool = False,
        max_auth_age: int | None = None,
    ) -> Callable[[_View], _View]:
        """A decorator for Starlette endpoints: 401/403 per RFC 6750 unless the request's
        token meets the requirement; ``request.user`` is then the Principal. It also fits
        FastAPI endpoints that take ``request: Request``, where it costs less than a
        dependency (FastAPI's dependency machinery is most of a dependency's cost)."""
        from authgate.guard.asgi import required

        return required(
            self,
            self.requirement(
                permissions,
                roles=roles,
                any_of=any_of,
                verified=verified,
                mfa=mfa,
                max_auth_age=max_auth_age,
            ),
        )

    def flask_required(
        self,
        *permissions: str,
        roles: Collection[str] = (),
        any_of: Collection[str] = (),
        verified: bool = False,
        mfa: bool = False,
        max_auth_age: int | None = None,
    ) -> Callable[[_View], _View]:
        """A decorator for Flask views (``flask`` extra); ``flask.g.principal`` is set."""
        from authgate.guard.flask import required

        return required(
            self,
            self.requirement(
                permissions,
                roles=roles,
                any_of=any_of,
                verified=verified,
                mfa=mfa,
                max_auth_age=max_auth_age,
            ),
        )

    def django_required(
        self,
        *permissions: str,
        roles: Collection[str] = (),
        any_of: Collection[str] = (),
        verified: bool = False,
        mfa: bool = False,
        max_auth_age: int | None = None,
    ) -> Callable[[_View], _View]:
        """A decorator for Django views (``django`` extra); ``request.principal`` is set."""
        from authgate.guard.django import required

        return required(
            self,
            self.requirement(
                permissions,
                roles=roles,
                any_of=any_of,
                verified=verified,
                mfa=mfa,
                max_auth_age=max_auth_age,
            ),
        )

    # --- state ------------------------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any] | None:
        """The authorization server's metadata, once discovered."""
        return self._runtime.metadata

    @property
    def jwks(self) -> JWKSCache | None:
        """The remote JWKS, while running (None with local keys)."""
        return self._runtime.jwks

    @property
    def feed(self) -> FeedFollower | None:
        """The revocation feed follower, while running (None with revocation off)."""
        return self._runtime.feed

    @property
    def ready(self) -> bool:
        """True once keys are at hand and, with the feed, its first answer has come."""
        return self._runtime.ready

    @property
    def revocation_staleness(self) -> float | None:
        """Seconds since the revocation feed last answered (infinite before its first
        answer); None when revocation is off."""
        return self._runtime.staleness()

    def cache_info(self) -> CacheInfo:
        """The verified-token cache, with an estimate of its memory (O(entries))."""
        return self._cache.info()

    def cache_stats(self) -> tuple[int, int, int]:
        """``(entries, hits, misses)`` of the verified-token cache, in O(1)."""
        return self._cache.stats()

    def clear_cache(self) -> None:
        """Forget every verified token (each is verified again on its next use)."""
        self._cache.clear()

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Discover the server, fetch its keys and make the first feed sync (waiting up to
        ``startup_timeout``; after that it goes on in the background, and tokens are
        refused until it is done). ConfigurationError when the server refuses the
        configuration (a wrong issuer, refused client credentials). Idempotent."""
        await asyncio.wrap_future(self._runtime.start())

    def start_sync(self, timeout: float | None = None) -> None:
        """:meth:`start` for threads."""
        self._runtime.start().result(timeout)

    async def close(self) -> None:
        """Stop following the feed and close connections. The guard may start again."""
        await asyncio.to_thread(self.close_sync)

    def close_sync(self) -> None:
        """:meth:`close` for threads."""
        self._runtime.close()

    async def sync(self) -> int:
        """Poll the revocation feed now (not waiting for the follower); return how many
        events came. A no-op returning 0 when revocation is off."""
        return await self._runtime.sync()

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


__all__ = ["CacheInfo", "Guard"]
