"""Start a real ``authgate serve`` for a benchmark, and stop it afterwards.

``serve()`` runs ``python -m authgate serve`` as a subprocess in a fresh temporary folder (so
``init`` runs first: a new config, master key, SQLite database and signing key), on a free
loopback port, waits until ``GET /healthz`` answers 200, yields a :class:`Server`, then stops
it with SIGTERM (uvicorn's graceful shutdown) and SIGKILL if it lingers. The server's output
goes to ``server.log`` in that folder; its tail is shown if the server fails to start.

``Server.cpu_seconds()`` reads the user + system CPU time of the server process and its live
descendants (``--workers N`` forks) from ``/proc``, so a benchmark can report work per
CPU-second rather than per wall-second.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _stat_cpu(path: str) -> float | None:
    """utime + stime, in seconds, from a /proc/.../stat file; None if it is gone."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    # After the name: state(3) ppid(4) ... utime(14) stime(15), so indexes 11 and 12 here.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        with contextlib.suppress(OSError, ValueError):
            out.extend(int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split())
    return out


def process_cpu_seconds(pid: int, *, tree: bool = True) -> float:
    """utime + stime of ``pid`` (all its threads), plus its live descendants if ``tree``."""
    total = _stat_cpu(f"/proc/{pid}/stat")
    if total is None:
        return 0.0
    if tree:
        total += sum(process_cpu_seconds(child) for child in _children(pid))
    return total


@dataclass(frozen=True, slots=True)
class Server:
    """A running server: where it listens and how to observe it."""

    process: subprocess.Popen[bytes]
    base_url: str
    port: int
    directory: Path
    log_path: Path

    @property
    def pid(self) -> int:
        """The server process id."""
        return self.process.pid

    @property
    def database_path(self) -> Path:
        """The SQLite file the server uses."""
        return self.directory / "authgate.db"

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) the server process tree has used so far."""
        return process_cpu_seconds(self.pid)

    def main_thread_cpu_seconds(self) -> float:
        """CPU seconds of the server process's main thread alone (with one worker: the thread
        that runs the event loop, as opposed to the hashing and database threads)."""
        return _stat_cpu(f"/proc/{self.pid}/task/{self.pid}/stat") or 0.0

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _wait_healthy(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.base_url, timeout=2.0) as client:
        while True:
            code = server.process.poll()
            if code is not None:
                raise RuntimeError(
                    f"authgate serve exited with status {code} before answering /healthz:\n"
                    f"{server.log_tail()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if client.get("/healthz").status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"authgate serve did not answer /healthz within {timeout:.0f} s:\n"
                    f"{server.log_tail()}"
                )
            time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes], grace: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def serve(
    *,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
    host: str = "127.0.0.1",
    ready_timeout: float = 60.0,
    stop_grace: float = 15.0,
    keep_dir: bool = False,
) -> Iterator[Server]:
    """Run ``authgate serve`` in a fresh temporary folder on a free port.

    The server gets the current environment without any ``AUTHGATE_*`` variable, then
    ``AUTHGATE_LOG_FORMAT=console``, ``AUTHGATE_ISSUER`` set to its own URL and a SQLite
    database in the folder, then ``env`` over those. ``args`` go after ``serve`` (for
    example ``("--workers", "2")``). With ``keep_dir`` the folder is left in place.
    """
    directory = Path(tempfile.mkdtemp(prefix="authgate-bench-"))
    port = free_port(host)
    base_url = f"http://{host}:{port}"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGATE_")}
    child_env.update(
        {
            "AUTHGATE_LOG_FORMAT": "console",
            "AUTHGATE_ISSUER": base_url,
            "AUTHGATE_DATABASE_URL": f"sqlite:///{directory / 'authgate.db'}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    child_env.update(env or {})
    log_path = directory / "server.log"
    try:
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "authgate",
                    "serve",
                    "--host",
                    host,
                    "--port",
                    str(port),
                    *args,
                ],
                cwd=directory,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = Server(process, base_url, port, directory, log_path)
        try:
            _wait_healthy(server, ready_timeout)
            yield server
        finally:
            _stop(process, stop_grace)
    finally:
        if not keep_dir:
            shutil.rmtree(directory, ignore_errors=True)


__all__ = ["Server", "free_port", "process_cpu_seconds", "serve"]
