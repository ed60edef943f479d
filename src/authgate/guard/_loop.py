"""A private event loop in a daemon thread: where the guard does its network I/O (discovery,
JWKS, the revocation feed), whatever the app runs on (asyncio, WSGI threads)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class BackgroundLoop:
    """One event loop in one daemon thread; ``submit`` runs a coroutine there."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.pid: int | None = None

    @property
    def running(self) -> bool:
        """True while the thread runs in this process (False in a forked child)."""
        return self._thread is not None and self._thread.is_alive() and self.pid == os.getpid()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop (only while running)."""
        assert self._loop is not None, "the background loop is not running"
        return self._loop

    def start(self) -> None:
        """Start the thread and wait until its loop runs."""
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=self._name, daemon=True)
        self.pid = os.getpid()
        self._thread.start()
        ready.wait()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; a thread-safe future of its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop and join the thread (a no-op if it is not running)."""
        thread, loop = self._thread, self._loop
        self._thread = self._loop = None
        if thread is None or loop is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            thread.join(timeout)


__all__ = ["BackgroundLoop"]
