"""Shutdown drains: on SIGTERM a real ``authgate serve`` (PostgreSQL and Redis) answers the
revocation feed's long polls at once with the current cursor, answers an unfinished upload
503 with Retry-After, and exits within a second or two, instead of waiting out the grace
period and cutting them off with 500s."""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from api._raw import SlowClient, open_slow, request_head, server_has_read
from scaleout._cluster import Instance, cluster

REVOCATIONS = "authgate:revocations"
ANSWER_BOUND = 2.0  # seconds from SIGTERM to the answers (uvicorn's grace period is 10 s)
EXIT_BOUND = 3.0  # seconds from SIGTERM to the end of the process


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)  # polling for a condition, not passing time


def _collect(clients: list[SlowClient], timeout: float) -> None:
    """Read every socket until the server closes it (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(c.done for c in clients):
        for client in clients:
            if not client.done:
                client.read()
        time.sleep(0.005)  # polling non-blocking sockets


@pytest.mark.parametrize("workers", [1, 2])
def test_shutdown_drain_answers_long_polls_and_uploads_and_exits_fast(
    tmp_path: Path, workers: int
) -> None:
    with (
        cluster(tmp_path, names=("a",), args=("--workers", str(workers))) as group,
        contextlib.ExitStack() as sockets,
    ):
        inst: Instance = group["a"]
        creds = json.loads(group.cli("clients", "add", "guard", "--scope", REVOCATIONS))
        basic = base64.b64encode(f"{creds['client_id']}:{creds['client_secret']}".encode())
        auth = {"Authorization": "Basic " + basic.decode(), "Connection": "close"}
        with inst.client() as http:
            first = http.get("/auth/revocations", headers=auth)
            assert first.status_code == 200, first.text
            cursor = first.json()["cursor"]

        # A long poll (wait=30) and an upload that stops half-way, both held by the server.
        poll = open_slow(
            inst.port,
            request_head("GET", f"/auth/revocations?after={cursor}&wait=30", headers=auth),
            b"",
        )
        upload = open_slow(
            inst.port,
            request_head(
                "POST",
                "/auth/login",
                headers={"Content-Type": "application/json", "Content-Length": "200"},
            )
            + b'{"email": ',
            b"",
        )
        idle = open_slow(inst.port, b"", b"")  # and a connection that never sends a thing
        for client in (poll, upload, idle):
            sockets.callback(client.close)
        _wait_until(lambda: server_has_read(inst.port, poll.sock), 10, "the poll to be read")
        _wait_until(lambda: server_has_read(inst.port, upload.sock), 10, "the upload's headers")
        poll.read()
        assert not poll.answer.data, "the long poll answered before the shutdown"

        assert inst.process is not None
        sent = time.monotonic()
        inst.process.send_signal(signal.SIGTERM)
        _collect([poll, upload, idle], timeout=15)
        code = inst.process.wait(timeout=15)
        exited = time.monotonic() - sent

        polled = poll.answer.response()
        assert polled is not None, f"the long poll got no answer:\n{inst.log_tail()}"
        status, headers, body = polled
        assert status == 200, body
        assert json.loads(body) == {"cursor": cursor, "events": []}
        assert headers["connection"] == "close"
        assert poll.answer.first_byte_at is not None
        poll_latency = poll.answer.first_byte_at - sent

        uploaded = upload.answer.response()
        assert uploaded is not None, f"the upload got no answer:\n{inst.log_tail()}"
        assert upload.answer.problem(503, "overloaded")["retry-after"] == "1"
        assert upload.answer.first_byte_at is not None
        upload_latency = upload.answer.first_byte_at - sent

        print(
            f"\nworkers={workers}: long poll answered {poll_latency * 1000:.0f} ms after "
            f"SIGTERM, upload {upload_latency * 1000:.0f} ms, process exited after "
            f"{exited * 1000:.0f} ms (exit code {code})"
        )
        assert poll_latency < ANSWER_BOUND
        assert upload_latency < ANSWER_BOUND
        assert exited < EXIT_BOUND, inst.log_tail()
        assert code in (0, -signal.SIGTERM), inst.log_tail()
        log = inst.log_path.read_text(errors="replace")
        assert "Exception in ASGI application" not in log
        assert "timeout graceful shutdown exceeded" not in log
        assert idle.done
        assert idle.answer.data == b""
