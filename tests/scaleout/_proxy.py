"""A small TCP proxy (asyncio, in a thread of its own) to put between authgate and
PostgreSQL, and cut: it simulates a database outage without touching the shared server.

Modes: ``open`` forwards; ``cut()`` closes the listening socket (new connections are
refused) and aborts every live connection; ``stall()`` keeps accepting but forwards
nothing, on new and live connections alike (a network partition: packets vanish);
``restore()`` forwards again (connections stalled meanwhile are aborted).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class TcpProxy:
    """``127.0.0.1:port`` -> ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int, *, port: int) -> None:
        self.target = (target_host, target_port)
        self.port = port
        self.connections = 0  # accepted so far
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing: asyncio.Event | None = None

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def start(self) -> TcpProxy:
        """Listen and forward."""
        self._thread.start()
        self._call(self._open())
        return self

    async def _open(self) -> None:
        if self._flowing is None:
            self._flowing = asyncio.Event()
        self._flowing.set()
        if self._server is None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", self.port, reuse_address=True
            )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        assert self._flowing is not None
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            await self._flowing.wait()  # a stalled proxy accepts, and answers nothing
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
            self._writers.add(upstream_writer)
            await asyncio.gather(
                self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
            )
        except (ConnectionError, OSError):
            pass
        finally:
            for w in (writer, upstream_writer):
                if w is not None:
                    self._writers.discard(w)
                    w.transport.abort()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while data := await src.read(65536):
                await self._flowing.wait()  # stalled: the bytes go nowhere, for now
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.transport.abort()

    def _abort_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._abort_all()

    def cut(self) -> None:
        """Refuse new connections and drop the live ones."""
        self._call(self._cut())

    async def _stall(self) -> None:
        assert self._flowing is not None
        self._flowing.clear()

    def stall(self) -> None:
        """Accept, but forward nothing (live connections freeze too)."""
        self._call(self._stall())

    async def _restore(self) -> None:
        assert self._flowing is not None
        if not self._flowing.is_set():
            self._abort_all()  # what was held is stale: the peers will reconnect
        await self._open()

    def restore(self) -> None:
        """Forward again."""
        self._call(self._restore())

    def close(self) -> None:
        """Stop the proxy and its thread."""
        with contextlib.suppress(Exception):
            self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
