"""Raw sockets against a real server: requests that stop half-way, and what the server does
with them. For the slow-client and shutdown tests."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path


def connect(port: int) -> socket.socket:
    """A connected TCP socket to 127.0.0.1:``port``."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request_head(
    method: str, path: str, *, headers: dict[str, str] | None = None, complete: bool = True
) -> bytes:
    """A request line and headers; without ``complete``, the blank line that ends the
    headers is missing (the server waits for more)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n" + ("\r\n" if complete else "")).encode()


@dataclass
class Answer:
    """What came back on a raw socket: the parsed response (if any) and when the server
    closed the connection."""

    data: bytes = b""
    closed_at: float | None = None
    first_byte_at: float | None = None

    def response(self) -> tuple[int, dict[str, str], bytes] | None:
        """(status, headers, body) of the first response, or None if nothing came."""
        if not self.data:
            return None
        resp = http.client.HTTPResponse(_BytesSocket(self.data))  # type: ignore[arg-type]
        resp.begin()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()

    def problem(self, status: int, code: str) -> dict[str, str]:
        """The headers of the first response, which must be an RFC 9457 problem with this
        status and stable code."""
        response = self.response()
        assert response is not None, "no answer"
        got, headers, body = response
        assert got == status, body
        assert headers["content-type"] == "application/problem+json"
        assert json.loads(body)["code"] == code
        return headers


class _BytesSocket:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(self._data))


@dataclass
class SlowClient:
    """A socket that sends ``opening`` and then one byte of ``drip`` every tick, until the
    server answers or closes it."""

    sock: socket.socket
    drip: bytes
    opened_at: float
    answer: Answer = field(default_factory=Answer)

    @property
    def done(self) -> bool:
        """The server closed the connection."""
        return self.answer.closed_at is not None

    def tick(self) -> None:
        """Send one more byte (unless the server answered or closed)."""
        if self.done or self.answer.data:
            return
        try:
            self.sock.send(self.drip)
        except OSError:
            self._closed()

    def read(self) -> None:
        """Read what the server sent; notes when it closed."""
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            if self.answer.first_byte_at is None:
                self.answer.first_byte_at = time.monotonic()
            self.answer.data += chunk
        else:
            self._closed()

    def close(self) -> None:
        """Close our end (once the test is done with it)."""
        with contextlib.suppress(OSError):
            self.sock.close()

    def _closed(self) -> None:
        if self.answer.closed_at is None:
            self.answer.closed_at = time.monotonic()
        self.close()


def open_slow(port: int, opening: bytes, drip: bytes) -> SlowClient:
    """Connect, send ``opening``, and return the slow client (non-blocking from now on)."""
    sock = connect(port)
    opened = time.monotonic()
    sock.sendall(opening)
    sock.setblocking(False)
    return SlowClient(sock, drip, opened)


def server_has_read(server_port: int, client: socket.socket) -> bool:
    """Whether the server side of ``client``'s connection has read everything sent to it
    (its receive queue in /proc/net/tcp is empty): the server holds the request now."""
    client_port = client.getsockname()[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, queues = fields[1], fields[2], fields[4]
        if int(local.split(":")[1], 16) == server_port and (
            int(remote.split(":")[1], 16) == client_port
        ):
            return int(queues.split(":")[1], 16) == 0
    return False
