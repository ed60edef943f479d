"""Child processes for the benches: a real ``authgate serve`` (and its CLI), or any server
command; each started with its own environment, waited for until it answers, and stopped
afterwards (SIGTERM, then SIGKILL if it lingers).

``serve()`` runs ``python -m authgate serve`` in a fresh temporary folder (so ``init`` runs
first: a new config, master key and signing key), on a free loopback port, with a SQLite
database in that folder or the ``database_url`` given, and ``--workers N``. It waits until
``GET /healthz`` answers 200 and yields a :class:`Server`. The server's output goes to
``server.log`` in that folder; its tail is shown if the server fails to start.

``Prober`` runs ``probe.py`` (``GET /healthz`` at a fixed rate) in a process of its own.
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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import httpx

from .procs import children, process_cpu_seconds, thread_cpu_seconds


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def listening(host: str, port: int) -> Callable[[], bool]:
    """A readiness check: something accepts TCP connections on ``host:port``."""

    def check() -> bool:
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
            return True
        return False

    return check


def answers(url: str) -> Callable[[], bool]:
    """A readiness check: ``GET url`` answers 200."""

    def check() -> bool:
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(url, timeout=2.0).status_code == 200
        return False

    return check


def log_tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file ("" if there is none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def stop(process: subprocess.Popen[bytes], *, grace: float = 15.0) -> None:
    """SIGTERM (a graceful shutdown), then SIGKILL after ``grace`` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def child(
    command: list[str],
    *,
    name: str,
    ready: Callable[[], bool],
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    ready_timeout: float = 60.0,
    stop_grace: float = 15.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` (output appended to ``log``) until ``ready()`` is true; stop it after.

    Raises RuntimeError, with the log's tail, if it exits or is not ready in time.
    """
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + ready_timeout
        while not ready():
            code = process.poll()
            if code is not None:
                raise RuntimeError(f"{name} exited with status {code}:\n{log_tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready in {ready_timeout:.0f} s:\n{log_tail(log)}")
            time.sleep(0.05)
        yield process
    finally:
        stop(process, grace=stop_grace)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any ``AUTHGATE_*`` variable, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGATE_")}
    env.update(extra or {})
    return env


@dataclass(frozen=True, slots=True)
class Server:
    """A running ``authgate serve``: where it listens, its settings, how to observe it."""

    process: subprocess.Popen[bytes]
    base_url: str
    directory: Path
    env: Mapping[str, str]  # the server's environment; its CLI runs with the same
    workers: int

    @property
    def pid(self) -> int:
        """The server process id (with several workers: uvicorn's supervisor)."""
        return self.process.pid

    @property
    def database_url(self) -> str:
        """The database the server uses."""
        return self.env["AUTHGATE_DATABASE_URL"]

    @property
    def log_path(self) -> Path:
        """Where the server's output goes."""
        return self.directory / "server.log"

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) the server process tree has used so far."""
        return process_cpu_seconds(self.pid)

    def loop_cpu_seconds(self) -> float:
        """CPU seconds of the threads that run the event loops: the main thread of the
        server process, or with several workers the main thread of each worker (as opposed
        to the hashing and database threads)."""
        if self.workers == 1:
            return thread_cpu_seconds(self.pid)
        return sum(thread_cpu_seconds(pid) for pid in children(self.pid))

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's output."""
        return log_tail(self.log_path, lines)

    def cli(self, *args: str, stdin: str | None = None) -> str:
        """Run ``python -m authgate ARGS`` with the server's folder and environment (its
        config, master key and database); its standard output. Raises RuntimeError."""
        proc = subprocess.run(
            [sys.executable, "-m", "authgate", *args],
            cwd=self.directory,
            env=dict(self.env),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"authgate {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout


@contextlib.contextmanager
def serve(
    *,
    env: Mapping[str, str] | None = None,
    database_url: str | None = None,
    workers: int = 1,
    host: str = "127.0.0.1",
    ready_timeout: float = 60.0,
    stop_grace: float = 15.0,
) -> Iterator[Server]:
    """Run ``authgate serve --workers N`` in a fresh temporary folder on a free port.

    The server gets the current environment without any ``AUTHGATE_*`` variable, then
    ``AUTHGATE_LOG_FORMAT=console``, ``AUTHGATE_ISSUER`` set to its own URL and
    ``AUTHGATE_DATABASE_URL`` (``database_url``, or a SQLite file in the folder), then
    ``env`` over those. The folder is removed afterwards.
    """
    directory = Path(tempfile.mkdtemp(prefix="authgate-bench-"))
    port = free_port(host)
    base_url = f"http://{host}:{port}"
    child_env = clean_env(
        {
            "AUTHGATE_LOG_FORMAT": "console",
            "AUTHGATE_ISSUER": base_url,
            "AUTHGATE_DATABASE_URL": database_url or f"sqlite:///{directory / 'authgate.db'}",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
    )
    command = [sys.executable, "-m", "authgate", "serve", "--host", host, "--port", str(port)]
    try:
        with child(
            [*command, "--workers", str(workers)],
            name="authgate serve",
            ready=answers(f"{base_url}/healthz"),
            log=directory / "server.log",
            env=child_env,
            cwd=directory,
            ready_timeout=ready_timeout,
            stop_grace=stop_grace,
        ) as process:
            yield Server(process, base_url, directory, child_env, workers)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class Probe(NamedTuple):
    """One ``GET /healthz`` of the prober."""

    start: float  # time.monotonic() when it was sent
    latency: float  # seconds
    status: int  # 0 for a transport error or a timeout
    instance: int  # which URL (its index)


class Prober:
    """``probe.py`` in a process of its own: ``GET /healthz`` on each of ``urls`` every
    ``interval`` seconds, on a keep-alive connection each."""

    def __init__(self, urls: list[str], directory: Path, *, interval: float, timeout: float):
        self.path = directory / "healthz.txt"
        self.timeout = timeout
        script = Path(__file__).resolve().parent / "probe.py"
        self.process = subprocess.Popen(
            [sys.executable, str(script), str(self.path), str(interval), str(timeout), *urls],
            stdin=subprocess.PIPE,
        )

    def cpu_seconds(self) -> float:
        """CPU seconds the prober has used so far."""
        return process_cpu_seconds(self.process.pid)

    def stop(self) -> list[Probe]:
        """Stop it (closing its standard input); its probes."""
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                assert self.process.stdin is not None
                self.process.stdin.close()
            try:
                self.process.wait(timeout=self.timeout + 10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        out: list[Probe] = []
        with contextlib.suppress(OSError):
            for line in self.path.read_text().splitlines():
                parts = line.split()
                if len(parts) == 4:
                    out.append(
                        Probe(float(parts[0]), float(parts[1]), int(parts[2]), int(parts[3]))
                    )
        return out
