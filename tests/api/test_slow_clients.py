"""Slow clients: a real ``authgate serve`` (PostgreSQL and Redis) with short deadlines, more
slow-body sockets than its in-flight limit and as many slow-header sockets, all dripping a
byte at a time, while normal logins go on. The logins all succeed; the server closes every
slow-header socket at its header deadline and answers every slow body 408 at its body
deadline."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from _support.http import PASSWORD, new_email
from api._raw import SlowClient, connect, open_slow, request_head
from scaleout._cluster import Instance, cluster

MAX_IN_FLIGHT = 8
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 3.0
SLOW_BODIES = 3 * MAX_IN_FLIGHT
SLOW_HEADERS = 3 * MAX_IN_FLIGHT
DRIP_EVERY = 0.2  # seconds between two bytes of a slow client
READ_EVERY = 0.01
SLACK = 1.5  # seconds a deadline may be late by on a loaded machine
MIN_LOGINS = 5


def _drip(clients: list[SlowClient], stop: threading.Event) -> None:
    """Send each slow client's next byte every DRIP_EVERY, and read what the server sends
    (every READ_EVERY, to time it)."""
    next_drip = 0.0
    while not stop.is_set() and not all(c.done for c in clients):
        now = time.monotonic()
        for client in clients:
            client.read()
            if now >= next_drip:
                client.tick()
        if now >= next_drip:
            next_drip = now + DRIP_EVERY
        stop.wait(READ_EVERY)  # polling non-blocking sockets


def _login(url: str, email: str) -> tuple[int, float]:
    started = time.monotonic()
    # A new connection each time: new connections are accepted while slow ones are open.
    r = httpx.post(f"{url}/auth/login", json={"email": email, "password": PASSWORD}, timeout=30)
    return r.status_code, time.monotonic() - started


def test_slow_clients_hold_no_in_flight_slot_and_meet_their_deadlines(tmp_path: Path) -> None:
    with cluster(
        tmp_path,
        names=("a",),
        AUTHGATE_MAX_IN_FLIGHT=str(MAX_IN_FLIGHT),
        AUTHGATE_HEADER_TIMEOUT=str(HEADER_TIMEOUT),
        AUTHGATE_BODY_TIMEOUT=str(BODY_TIMEOUT),
    ) as group:
        inst: Instance = group["a"]
        email = new_email("slow")
        group.cli("users", "add", email, "--password-stdin", stdin=PASSWORD)
        status, _ = _login(inst.url, email)
        assert status == 200

        body_head = request_head(
            "POST",
            "/auth/login",
            headers={"Content-Type": "application/json", "Content-Length": "1000"},
        )
        bodies = [open_slow(inst.port, body_head + b'{"email": ', b" ") for _ in range(SLOW_BODIES)]
        header_head = request_head("POST", "/auth/login", complete=False) + b"X-Slow: "
        headers = [open_slow(inst.port, header_head, b"a") for _ in range(SLOW_HEADERS)]
        slow = bodies + headers
        stop = threading.Event()
        dripper = threading.Thread(target=_drip, args=(slow, stop), daemon=True)
        dripper.start()
        try:
            # Normal logins while every slow socket is open and dripping.
            results: list[tuple[int, float]] = []
            window_end = min(c.opened_at for c in slow) + HEADER_TIMEOUT - 0.3
            while time.monotonic() < window_end or len(results) < MIN_LOGINS:
                results.append(_login(inst.url, email))
            open_during = sum(1 for c in slow if not c.done)
            dripper.join(timeout=BODY_TIMEOUT + 10 * SLACK)
        finally:
            stop.set()
            dripper.join(timeout=5)
            for client in slow:
                client.close()

        statuses = [s for s, _ in results]
        latencies = sorted(t for _, t in results)
        header_closed = [c.answer.closed_at - c.opened_at for c in headers if c.answer.closed_at]
        body_answered = [
            c.answer.first_byte_at - c.opened_at for c in bodies if c.answer.first_byte_at
        ]
        print(
            f"\n{SLOW_BODIES} slow-body and {SLOW_HEADERS} slow-header sockets "
            f"(in-flight limit {MAX_IN_FLIGHT}; {open_during} still open when the logins "
            f"ended); {statuses.count(200)}/{len(statuses)} logins 200, latency p50 "
            f"{statistics.median(latencies) * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms; "
            f"{len(header_closed)} slow-header sockets closed by the server after "
            f"{min(header_closed, default=0):.2f}-{max(header_closed, default=0):.2f} s "
            f"(deadline {HEADER_TIMEOUT} s); {len(body_answered)} slow bodies answered after "
            f"{min(body_answered, default=0):.2f}-{max(body_answered, default=0):.2f} s "
            f"(deadline {BODY_TIMEOUT} s)"
        )

        assert statuses == [200] * len(statuses), statuses
        assert open_during == SLOW_BODIES + SLOW_HEADERS  # the logins really ran beside them
        # Every slow-header socket closed by the server at its deadline, without an answer.
        for client in headers:
            assert client.answer.closed_at is not None, "a slow-header socket is still open"
            assert client.answer.data == b""
            took = client.answer.closed_at - client.opened_at
            assert HEADER_TIMEOUT - 0.05 <= took <= HEADER_TIMEOUT + SLACK, took
        # Every slow body answered 408 request_timeout at its deadline, and closed.
        for client in bodies:
            assert client.answer.response() is not None, "a slow-body socket got no answer"
            assert client.answer.problem(408, "request_timeout")["connection"] == "close"
            assert client.answer.closed_at is not None
            assert client.answer.first_byte_at is not None
            took = client.answer.first_byte_at - client.opened_at
            assert BODY_TIMEOUT - 0.05 <= took <= BODY_TIMEOUT + SLACK, took
        # The server is healthy afterwards, and nothing was logged as an error.
        assert _login(inst.url, email)[0] == 200
        log = inst.log_path.read_text(errors="replace")
        assert "Exception in ASGI application" not in log


PROTOCOL_HEADER_TIMEOUT = 0.5
PROTOCOLS = {"h11": "H11RuntimeProtocol", "httptools": "HttpToolsRuntimeProtocol"}


async def _slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers ``/slow`` after twice the header deadline, anything else at once."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(2 * PROTOCOL_HEADER_TIMEOUT)  # a request that takes its time
    headers = [(b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


@contextlib.contextmanager
def _protocol_server(protocol: type[asyncio.Protocol]) -> Iterator[int]:
    """uvicorn with authgate's runtime ``protocol``, in a thread; yields its port."""
    from authgate.server import runtime

    config = runtime.RuntimeConfig(
        _slow_app,
        host="127.0.0.1",
        port=0,
        http=protocol,
        ws="none",
        lifespan="off",
        log_level="warning",
        header_timeout=PROTOCOL_HEADER_TIMEOUT,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        assert time.monotonic() < deadline, "the server did not start in time"
        time.sleep(0.005)  # waiting for startup, not for time to pass
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)


def _closed_after(sock: socket.socket, since: float) -> tuple[bytes, float]:
    """Read until the server closes ``sock``: (what it sent, seconds since ``since``)."""
    data = b""
    sock.settimeout(10)
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - since


@pytest.mark.parametrize("parser", sorted(PROTOCOLS))
def test_slow_headers_deadline_on_each_protocol_and_after_a_keep_alive_response(
    parser: str,
) -> None:
    from authgate.server import runtime

    protocol: type[asyncio.Protocol] | None = getattr(runtime, PROTOCOLS[parser])
    if protocol is None:
        pytest.skip("httptools is not installed")
    with _protocol_server(protocol) as port:
        # Partial headers on a new connection: closed at the deadline, unanswered.
        with connect(port) as sock:
            opened = time.monotonic()
            sock.sendall(request_head("GET", "/", complete=False))
            data, took = _closed_after(sock, opened)
        assert data == b""
        assert PROTOCOL_HEADER_TIMEOUT - 0.05 <= took <= PROTOCOL_HEADER_TIMEOUT + SLACK

        # A request that runs past the deadline is not cut; the next request's headers on
        # the same keep-alive connection get a deadline of their own.
        with connect(port) as sock:
            sock.sendall(request_head("GET", "/slow"))
            first = sock.recv(65536)
            while b"ok" not in first:
                first += sock.recv(65536)
            assert first.startswith(b"HTTP/1.1 200 ")
            answered = time.monotonic()
            sock.sendall(request_head("GET", "/", complete=False))
            data, took = _closed_after(sock, answered)
        assert data == b""
        assert PROTOCOL_HEADER_TIMEOUT - 0.05 <= took <= PROTOCOL_HEADER_TIMEOUT + SLACK
