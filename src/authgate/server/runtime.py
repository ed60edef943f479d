"""The HTTP runtime of ``authgate serve``: uvicorn, with a deadline for each request's
headers, and a shutdown that first wakes every long wait so that it answers.

uvicorn has no deadline for reading a request's headers: a connection that never finishes
them stays open. The protocols here close such a connection ``header_timeout`` seconds
after it opened or after its previous response ended. The body's deadline is enforced in
the ASGI layer (:class:`~authgate.server.middleware.HardeningMiddleware`).

On SIGTERM or SIGINT, uvicorn asks every connection to shut down, then waits for them; the
lifespan's shutdown runs only after that. So the protocols set the
:data:`~authgate.server.middleware.DRAINING` event of the lifespan state as the server asks
the first connection to shut down: the revocation feed's long polls then answer at once
with the current cursor, and slow uploads get a 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.h11_impl import H11Protocol

from authgate.server.middleware import DRAINING

log = logging.getLogger("authgate.server")

HEADER_TIMEOUT = 10.0
GRACEFUL_SHUTDOWN = 10


class RuntimeConfig(uvicorn.Config):
    """uvicorn's configuration plus ``header_timeout``; each worker gets a copy."""

    def __init__(self, app: Any, *, header_timeout: float = HEADER_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.header_timeout = header_timeout


class _HeaderDeadline:
    """One connection's timer: it closes the connection if, when it fires, the connection
    still waits for a request's headers."""

    __slots__ = ("_handle", "_timeout")

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._handle: asyncio.TimerHandle | None = None

    def arm(
        self,
        loop: asyncio.AbstractEventLoop,
        transport: asyncio.BaseTransport,
        waiting: Callable[[], bool],
    ) -> None:
        self.cancel()
        if not transport.is_closing():
            self._handle = loop.call_later(self._timeout, self._expire, transport, waiting)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _expire(self, transport: asyncio.BaseTransport, waiting: Callable[[], bool]) -> None:
        self._handle = None
        if waiting() and not transport.is_closing():
            log.debug("closed a connection: no complete request headers in %.1f s", self._timeout)
            transport.close()


def _header_timeout(config: uvicorn.Config) -> float:
    return config.header_timeout if isinstance(config, RuntimeConfig) else HEADER_TIMEOUT


def _drain(app_state: dict[str, Any]) -> None:
    event = app_state.get(DRAINING)
    if isinstance(event, asyncio.Event) and not event.is_set():
        log.info("shutting down: ending long polls and unfinished uploads now")
        event.set()


if TYPE_CHECKING:

    class _Base(asyncio.Protocol):
        cycle: Any
        loop: asyncio.AbstractEventLoop
        transport: asyncio.Transport
        app_state: dict[str, Any]
        config: uvicorn.Config

        def on_response_complete(self) -> None: ...
        def shutdown(self) -> None: ...

else:
    _Base = object


class _Runtime(_Base):
    """What authgate adds to a uvicorn HTTP protocol: the header deadline and the
    draining event."""

    _headers: _HeaderDeadline

    def _waiting_for_headers(self) -> bool:
        # uvicorn makes a cycle once a request's headers are complete.
        return self.cycle is None or bool(self.cycle.response_complete)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.app_state.setdefault(DRAINING, asyncio.Event())
        self._headers = _HeaderDeadline(_header_timeout(self.config))
        self._headers.arm(self.loop, transport, self._waiting_for_headers)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._headers.arm(self.loop, self.transport, self._waiting_for_headers)

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers.cancel()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        _drain(self.app_state)
        super().shutdown()


class H11RuntimeProtocol(_Runtime, H11Protocol):
    """uvicorn's h11 protocol, with the header deadline and the draining event."""


HttpToolsRuntimeProtocol: type[asyncio.Protocol] | None
try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is optional
    HttpToolsRuntimeProtocol = None
else:

    class _HttpToolsRuntimeProtocol(_Runtime, HttpToolsProtocol):
        """uvicorn's httptools protocol, with the header deadline and the draining event."""

    HttpToolsRuntimeProtocol = _HttpToolsRuntimeProtocol


def build_config(
    app: str,
    *,
    host: str,
    port: int,
    workers: int,
    header_timeout: float,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
) -> RuntimeConfig:
    """The uvicorn configuration of ``authgate serve`` for the app factory at ``app``."""
    return RuntimeConfig(
        app,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http=HttpToolsRuntimeProtocol or H11RuntimeProtocol,
        ws="none",  # no WebSocket routes: an upgrade request is an ordinary request
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        proxy_headers=False,  # the app decides whom to believe (AUTHGATE_TRUSTED_PROXIES)
        server_header=False,
        access_log=False,
        log_config=None,  # authgate.logs has configured logging
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
        header_timeout=header_timeout,
    )


def run(config: RuntimeConfig) -> None:
    """Serve until SIGTERM or SIGINT: in this process, or with ``config.workers`` worker
    processes under uvicorn's supervisor. Exits with uvicorn's startup-failure status
    when the server could not start."""
    from uvicorn.supervisors import Multiprocess

    server = uvicorn.Server(config)
    try:
        if config.workers > 1:
            Multiprocess(config, sockets=[config.bind_socket()]).run()
        else:
            server.run()
    except KeyboardInterrupt:  # pragma: no cover - a second Ctrl+C
        pass
    if config.workers == 1 and not server.started:
        sys.exit(STARTUP_FAILURE)
