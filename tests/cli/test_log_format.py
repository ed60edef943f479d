"""Log output: a real ``authgate serve`` writes JSON lines free of terminal escapes (no
uvicorn ``color_message``), and chooses its format by whether stderr is a terminal (a pty
here) unless AUTHGATE_LOG_FORMAT says."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import httpx
import pytest

from _support.cli import AUTHGATE
from _support.live import free_port
from _support.services import clean_environ
from authgate import logs
from authgate.wiring import new_master_key

READY = "Application startup complete"
CONSOLE_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")
ESCAPES = ("\x1b", "\\u001b", "\x9b", "\\u009b")


def _read_until(fd: int, text: bytearray, *, stop: str | None, timeout: float) -> None:
    """Append what ``fd`` gives to ``text`` until ``stop`` appears, EOF, or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stop is not None and stop.encode() in text:
            return
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError as exc:  # a pty's reader gets EIO once the child side is gone
            if exc.errno != errno.EIO:
                raise
            return
        if not chunk:
            return
        text += chunk


def _serve_output(home: Path, *, tty: bool, fmt: str | None) -> str:
    """Everything ``authgate serve`` writes to stderr from start to SIGTERM, with stderr a
    pty (``tty``) or a pipe; it answers a few requests meanwhile."""
    env = clean_environ()
    env.update(
        {
            "AUTHGATE_MASTER_KEY": new_master_key(),
            "AUTHGATE_DATABASE_URL": f"sqlite:///{home / 'authgate.db'}",
            "AUTHGATE_ARGON2_MEMORY_KIB": "1024",
            "AUTHGATE_ARGON2_TIME_COST": "1",
        }
    )
    if fmt is not None:
        env["AUTHGATE_LOG_FORMAT"] = fmt
    port = free_port()
    if tty:
        reader, writer = os.openpty()
    else:
        reader, writer = os.pipe()
    text = bytearray()
    try:
        proc = subprocess.Popen(
            [*AUTHGATE, "serve", "--port", str(port)],
            cwd=home,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=writer,
        )
        os.close(writer)
        writer = -1
        try:
            _read_until(reader, text, stop=READY, timeout=60)
            assert READY.encode() in text, text.decode(errors="replace")
            url = f"http://127.0.0.1:{port}"
            assert httpx.get(f"{url}/healthz").status_code == 200
            login = {"email": "nobody@example.com", "password": "wrong password \x1b[31m"}
            assert httpx.post(f"{url}/auth/login", json=login).status_code == 401
            proc.send_signal(signal.SIGTERM)
            _read_until(reader, text, stop=None, timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
    finally:
        os.close(reader)
        if writer != -1:
            os.close(writer)
    return text.decode("utf-8", errors="replace").replace("\r\n", "\n")


def _log_lines(output: str) -> list[str]:
    # The CLI's own messages ("authgate listening on ...") are plain text on purpose.
    return [line for line in output.splitlines() if line and not line.startswith("authgate ")]


def _is_json(line: str) -> bool:
    with contextlib.suppress(ValueError):
        return isinstance(json.loads(line), dict)
    return False


def test_log_injection_json_lines_of_serve_carry_no_terminal_escapes(tmp_path: Path) -> None:
    output = _serve_output(tmp_path, tty=False, fmt="json")
    lines = _log_lines(output)
    assert len(lines) >= 4, output  # started, running, startup complete, shutting down
    for line in lines:
        assert _is_json(line), line
        record = json.loads(line)
        assert "color_message" not in record, line
        for escape in ESCAPES:
            assert escape not in line, line
    assert any(READY in json.loads(line)["msg"] for line in lines)


@pytest.mark.parametrize(
    ("tty", "fmt", "expected"),
    [
        (True, None, "console"),
        (False, None, "json"),
        (True, "json", "json"),
        (False, "console", "console"),
    ],
)
def test_log_format_follows_the_terminal_unless_set(
    tmp_path: Path, tty: bool, fmt: str | None, expected: str
) -> None:
    output = _serve_output(tmp_path, tty=tty, fmt=fmt)
    lines = _log_lines(output)
    assert any(READY in line for line in lines), output
    for line in lines:
        if expected == "json":
            assert _is_json(line), line
        else:
            assert CONSOLE_LINE.match(line), line
        for escape in ESCAPES:
            assert escape not in line, line


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put authgate's and uvicorn's loggers back as they were."""
    names = ("authgate", "uvicorn", "uvicorn.error")
    saved = [(logging.getLogger(n), logging.getLogger(n).handlers[:]) for n in names]
    states = [(lg.level, lg.propagate) for lg, _ in saved]
    yield
    for (logger, handlers), (level, propagate) in zip(saved, states, strict=True):
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("fmt", ["json", "console"])
def test_log_injection_escapes_are_stripped_from_every_field(
    fmt: Literal["json", "console"],
) -> None:
    stream = io.StringIO()
    assert logs.configure(fmt, stream=stream) == fmt
    logging.getLogger("authgate.test").warning(
        "user agent %s",
        "curl\x1b[2J\x1b]0;pwned\x07\x9b31m/8",
        extra={"color_message": "\x1b[36mcolored\x1b[0m", "client": "\x1b[31mred"},
    )
    line = stream.getvalue()
    for escape in ESCAPES:
        assert escape not in line, line
    assert "user agent curl/8" in line
    assert "pwned" not in line
    if fmt == "json":
        record = json.loads(line)
        assert "color_message" not in record
        assert record["client"] == "red"


def test_log_format_unset_is_console_on_a_terminal_and_json_elsewhere() -> None:
    reader, writer = os.openpty()
    try:
        with os.fdopen(os.dup(writer), "w") as terminal:
            assert logs.resolve_format(None, stream=terminal) == "console"
            assert logs.resolve_format("json", stream=terminal) == "json"
    finally:
        os.close(reader)
        os.close(writer)
    assert logs.resolve_format(None, stream=io.StringIO()) == "json"
    assert logs.resolve_format("console", stream=io.StringIO()) == "console"
