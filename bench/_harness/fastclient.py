"""A small HTTP/1.1 keep-alive client on asyncio and httptools, for open-loop load.

A load generator that shares the cores with the servers it loads must cost little: httpx
spends a few milliseconds of CPU per request when hundreds are in flight (its pool
bookkeeping grows with the number of connections), which would make the generator, not the
server, the bottleneck of a burst. This client does only what such a load needs: one request
per connection at a time, ``Content-Length`` bodies (JSON), idle connections reused
last-in first-out, a per-request timeout that covers connecting, sending and the whole
answer, and one retry on a fresh connection when a reused idle one turns out closed before
any byte of an answer came (the server closes idle keep-alive connections after 5 s; a
request written into such a connection was never read by the server, so sending it again is
safe).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, cast

import httptools

IDLE_MAX = 4.0  # s: an idle connection older than this is closed rather than reused


class Response:
    """Status, headers (lower-case names) and body of one answer."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: dict[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class StaleConnection(ConnectionError):
    """A reused connection closed before any byte of the answer arrived."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Response] | None = None
        self.closed = False
        self.reused = False
        self.got_bytes = False
        self.idle_since = 0.0
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"bad HTTP answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.reused and not self.got_bytes:
            self._fail(StaleConnection("the idle connection was closed"))
        else:
            self._fail(ConnectionError(f"connection lost: {exc or 'closed by the server'}"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._headers = {}
        self._body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        response = Response(self.parser.get_status_code(), self._headers, b"".join(self._body))
        if not self.parser.should_keep_alive():
            self.close()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class Client:
    """Keep-alive connections to one ``http://host:port``."""

    def __init__(self, base_url: str, *, timeout: float) -> None:
        rest = base_url.removeprefix("http://").rstrip("/")
        host, _, port = rest.partition(":")
        self.host = host
        self.port = int(port or 80)
        self.base_url = base_url
        self.timeout = timeout
        self._idle: list[_Connection] = []
        self._host_header = f"Host: {rest}\r\n"

    async def _connection(self) -> _Connection:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < IDLE_MAX:
                conn.reused = True
                conn.got_bytes = False
                return conn
            conn.close()
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(_Connection, self.host, self.port)
        return proto

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,  # as httpx names it
        headers: dict[str, str] | None = None,
    ) -> Response:
        body = b"" if json is None else _dumps(json)
        head = [f"{method} {path} HTTP/1.1\r\n", self._host_header]
        if json is not None:
            head.append("Content-Type: application/json\r\n")
        if body or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body)}\r\n")
        for name, value in (headers or {}).items():
            head.append(f"{name}: {value}\r\n")
        head.append("\r\n")
        data = "".join(head).encode("latin-1") + body
        async with asyncio.timeout(self.timeout):
            for attempt in range(2):
                conn = await self._connection()
                fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
                conn.waiter = fut
                assert conn.transport is not None
                conn.transport.write(data)
                try:
                    response = await fut
                except StaleConnection:
                    if attempt == 0:
                        continue
                    raise
                except BaseException:
                    conn.abort()
                    raise
                if not conn.closed:
                    conn.idle_since = time.monotonic()
                    self._idle.append(conn)
                return response
        raise ConnectionError("unreachable")

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


__all__ = ["Client", "Response", "StaleConnection"]
