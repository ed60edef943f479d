"""A guard's network side: discovery, the JWKS and the revocation feed, on a private event
loop in a daemon thread, so that the same guard serves asyncio apps and WSGI threads.

A forked child never uses its parent's loop (it is not running there): the guard starts a
loop of its own on its first verification.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import os
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import httpx

from authgate.errors import AlgorithmNotAllowed, ConfigurationError, InvalidToken, UnknownKey
from authgate.guard._http import FetchError, get_json
from authgate.guard._loop import BackgroundLoop
from authgate.guard.feed import MAX_PAGES, FeedFollower, RevocationState
from authgate.guard.jwks import JWKSCache
from authgate.guard.options import GuardOptions
from authgate.jose import KeySet, jws

_log = logging.getLogger("authgate.guard")
_T = TypeVar("_T")

FEED_METADATA = "authgate_revocation_feed_endpoint"
_LIVE: weakref.WeakSet[GuardRuntime] = weakref.WeakSet()
_FORK_HOOK = False


def _after_fork() -> None:
    for runtime in list(_LIVE):
        runtime.live = False


class GuardRuntime:
    """The I/O of one guard. ``live`` is True while the guard may answer from memory: its
    loop runs in this process (or it needs none, with local keys and no feed).
    ``metadata``, ``jwks``, ``revoked`` and ``feed`` are read from any thread."""

    def __init__(self, options: GuardOptions, *, on_keys_removed: Callable[[], None]) -> None:
        self.options = options
        self._clock = options.clock
        self._on_keys_removed = on_keys_removed
        self.metadata: dict[str, Any] | None = None
        self.jwks: JWKSCache | None = None
        self.revoked = (
            RevocationState(leeway=options.leeway) if options.revocation == "feed" else None
        )
        self.feed: FeedFollower | None = None
        self._http: httpx.AsyncClient | None = None
        self._runner: BackgroundLoop | None = None
        self._startup: concurrent.futures.Future[None] | None = None
        self._main: asyncio.Future[None] | None = None
        self._ready: asyncio.Event | None = None
        self._start_lock = threading.Lock()
        self.needs_loop = options.needs_loop
        self.live = not self.needs_loop
        self._stale_logged = False

    # --- reads (any thread) -----------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once keys are at hand and, with the feed, its first answer has come."""
        if self.needs_loop and not self.live:
            return False
        if self.options.local_keys is None and (self.jwks is None or self.jwks.keys is None):
            return False
        feed = self.feed
        return self.revoked is None or (feed is not None and feed.synced_at > -math.inf)

    def staleness(self) -> float | None:
        """Seconds since the feed last answered (infinite before its first answer); None
        when revocation is off."""
        if self.revoked is None:
            return None
        feed = self.feed
        return math.inf if feed is None else max(0.0, feed.staleness(self._clock.now()))

    def refetchable_kid(self, exc: InvalidToken, token: str) -> str | None:
        """The kid to refetch the JWKS for, or None: an unknown kid, or (a key rotated to
        another allowed algorithm) an allowed algorithm that no fetched key has yet with
        an unknown kid; and only when the cooldown allows a fetch or one is in flight."""
        jwks = self.jwks
        if jwks is None or not isinstance(exc, UnknownKey | AlgorithmNotAllowed):
            return None
        kid: object
        if isinstance(exc, UnknownKey):
            kid = exc.context.get("kid")
        elif exc.context.get("alg") in self.options.allowed_algorithms and "kid" not in exc.context:
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

    def _refetch(self, exc: InvalidToken, token: str) -> concurrent.futures.Future[bool] | None:
        kid = self.refetchable_kid(exc, token)
        if kid is None:
            return None
        assert self.jwks is not None
        return self.submit(self.jwks.refetch_for(kid))

    async def refetched(self, exc: InvalidToken, token: str) -> bool:
        """Refetch the JWKS when ``exc`` (from verifying ``token``) says a key may be
        missing; True if the key is known afterwards, False when no fetch can help."""
        future = self._refetch(exc, token)
        return future is not None and await asyncio.wrap_future(future)

    def refetched_sync(self, exc: InvalidToken, token: str, *, timeout: float) -> bool:
        """:meth:`refetched` for threads, waiting at most ``timeout`` s (then False)."""
        future = self._refetch(exc, token)
        if future is None:
            return False
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            return False

    # --- lifecycle (any thread) -------------------------------------------------------------

    def start(self) -> concurrent.futures.Future[None]:
        """Start the loop (once; again after a fork or a close) and bootstrap on it."""
        global _FORK_HOOK
        with self._start_lock:
            if not self.needs_loop:
                done: concurrent.futures.Future[None] = concurrent.futures.Future()
                done.set_result(None)
                return done
            runner = self._runner
            if runner is not None and runner.running and self._startup is not None:
                return self._startup
            if not _FORK_HOOK:
                os.register_at_fork(after_in_child=_after_fork)
                _FORK_HOOK = True
            _LIVE.add(self)
            runner = BackgroundLoop("authgate-guard")
            runner.start()
            self._runner = runner
            startup = runner.submit(self._bootstrap())
            self._startup = startup
            return startup

    def close(self) -> None:
        """Stop following the feed and close connections (it may start again)."""
        with self._start_lock:
            runner, self._runner = self._runner, None
            self._startup = None
            self.live = not self.needs_loop
            if runner is None or not runner.running:
                return
            try:
                runner.submit(self._shutdown()).result(10.0)
            except (concurrent.futures.TimeoutError, RuntimeError):
                _log.warning("the guard did not shut down cleanly")
            finally:
                runner.stop()

    def submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        """Run ``coro`` on the loop; InvalidToken (``guard_stopped``) when it is not running."""
        runner = self._runner
        if runner is None or not runner.running:
            coro.close()
            raise InvalidToken("the guard is not running", condition="guard_stopped")
        return runner.submit(coro)

    async def sync(self) -> int:
        """Poll the feed now; how many events came (0 when revocation is off)."""
        if self.revoked is None:
            return 0
        if not self.live:
            await asyncio.wrap_future(self.start())
        feed = self.feed
        if feed is None:
            raise InvalidToken("the guard has not reached the feed yet")
        try:
            return await asyncio.wrap_future(self.submit(feed.sync()))
        except FetchError as exc:
            raise InvalidToken(f"the revocation feed failed: {exc}") from exc

    # --- the background loop ------------------------------------------------------------------

    def client(self) -> httpx.AsyncClient:
        """The guard's HTTP client (on the loop, while running)."""
        assert self._http is not None
        return self._http

    async def _bootstrap(self) -> None:
        options = self.options
        self._http = httpx.AsyncClient(
            transport=options.transport,
            verify=options.tls_verify,
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
                {main, ready}, timeout=options.startup_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
        if main.done():
            main.result()  # raises ConfigurationError
        self.live = True
        if not self._ready.is_set():
            _log.warning(
                "the guard is not ready after %.0f s (authorization server unreachable?); "
                "retrying in the background, refusing tokens meanwhile",
                options.startup_timeout,
            )

    async def _outbound(self, request: httpx.Request) -> None:
        """The request hook of the guard's client: refuse, before anything is sent, a
        request to a URL the endpoint policy does not allow."""
        policy = self.options.endpoints
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
        options = self.options
        issuer, url, endpoints = options.issuer, options.discovery_url, options.endpoints
        assert url is not None
        assert endpoints is not None
        answer = await get_json(self.client(), url, timeout=10.0)
        doc = answer.data
        if doc.get("issuer") != issuer:
            raise FetchError(
                f"the metadata names issuer {doc.get('issuer')!r}, not {issuer!r}",
                permanent=True,
            )
        for name in self._metadata_endpoints():
            value = doc.get(name)
            if not isinstance(value, str) or not value:
                raise FetchError(f"the metadata has no usable {name}", permanent=True)
            # Checked as it is taken from the metadata, before anything is sent to it.
            endpoints.check(value, what=f"the metadata's {name}")
        return doc

    def _metadata_endpoints(self) -> tuple[str, ...]:
        """The metadata members naming URLs this guard will use."""
        names: tuple[str, ...] = ()
        if self.options.local_keys is None:
            names += ("jwks_uri",)
        if self.revoked is not None:
            names += (FEED_METADATA,)
        return names

    async def _first_jwks(self) -> None:
        assert self.jwks is not None
        if not await self.jwks.refresh():
            raise FetchError("the JWKS could not be fetched")

    async def _first_sync(self) -> None:
        """Read the feed page after page until a page is empty: the guard is ready only
        once it holds every live event, not the first page of them."""
        assert self.feed is not None
        for _ in range(MAX_PAGES):
            await self.feed.sync()
            if self.feed.caught_up:
                return
        raise FetchError(f"the revocation feed did not run dry in {MAX_PAGES} pages")

    async def _run(self) -> None:
        assert self._ready is not None
        options = self.options
        remote = options.local_keys is None
        if options.issuer is not None and (remote or self.revoked is not None):
            self.metadata = await self._retrying("authorization server discovery", self._discover)
        if remote:
            assert self.metadata is not None
            self.jwks = JWKSCache(
                self.metadata["jwks_uri"],
                http=self.client,
                clock=self._clock,
                allowed=options.allowed_algorithms,
                on_change=self._keys_changed,
                cooldown=float(options.jwks_cooldown),
                max_age=float(options.jwks_max_age),
                stale_for=float(options.jwks_stale_for),
            )
            await self._retrying("fetching the JWKS", self._first_jwks)
        if self.revoked is not None:
            assert self.metadata is not None
            assert options.client_id
            assert options.client_secret
            self.feed = FeedFollower(
                self.metadata[FEED_METADATA],
                http=self.client,
                client_id=options.client_id,
                client_secret=options.client_secret,
                clock=self._clock,
                state=self.revoked,
                wait=float(options.feed_wait),
                interval=float(options.feed_interval),
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
            self._on_keys_removed()

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = self._clock.now()
            if self.jwks is not None:
                await self.jwks.maintain()
            if self.revoked is not None:
                self.revoked.purge(now)
                self.log_staleness(now)

    def log_staleness(self, now: float) -> None:
        """Log once when the feed passes ``fail_closed_after``, and once when it is back."""
        limit = self.options.fail_closed_after
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
        self.jwks = None if self.options.local_keys is None else self.jwks
        self.feed = None


__all__ = ["FEED_METADATA", "GuardRuntime"]
