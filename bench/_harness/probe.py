"""A /healthz prober: a separate process, so that a busy load generator cannot delay (or hide)
what the server's event loop does. It imports nothing but the standard library.

Run: ``python bench/_harness/probe.py OUTFILE INTERVAL_S TIMEOUT_S URL [URL...]``

One thread per URL keeps one keep-alive connection (``http.client``) and sends
``GET /healthz`` every INTERVAL_S seconds (fixed rate: a late probe is not followed by a
catch-up burst). Each probe is one line in OUTFILE: ``start latency status index``, where
``start`` is ``time.monotonic()`` (CLOCK_MONOTONIC, the same clock in every process of the
machine) when the request was sent, ``latency`` is in seconds, ``status`` the HTTP status or
0 for a transport error or a timeout, and ``index`` the URL's position. It stops on SIGTERM,
SIGINT or when its standard input closes, and after 6 hours in any case.
"""

from __future__ import annotations

import contextlib
import http.client
import signal
import sys
import threading
import time
from urllib.parse import urlsplit

MAX_SECONDS = 6 * 3600.0


def probe(
    index: int,
    url: str,
    interval: float,
    timeout: float,
    stop: threading.Event,
    out: list[str],
    lock: threading.Lock,
) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    conn: http.client.HTTPConnection | None = None
    deadline = time.monotonic() + MAX_SECONDS
    next_at = time.monotonic()
    while not stop.is_set() and time.monotonic() < deadline:
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        start = time.monotonic()
        status = 0
        try:
            conn.request("GET", "/healthz", headers={"Connection": "keep-alive"})
            response = conn.getresponse()
            response.read()
            status = response.status
            if response.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            with contextlib.suppress(OSError):
                conn.close()
            conn = None
        latency = time.monotonic() - start
        with lock:
            out.append(f"{start:.6f} {latency:.6f} {status} {index}\n")
        next_at += interval
        now = time.monotonic()
        if next_at < now:  # late: keep the rate, skip the missed slots
            next_at = now
        stop.wait(next_at - now)
    if conn is not None:
        conn.close()


def main() -> int:
    if len(sys.argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    path, interval, timeout = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    urls = sys.argv[4:]
    stop = threading.Event()
    lock = threading.Lock()
    lines: list[str] = []

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watch_stdin() -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    threads = [
        threading.Thread(
            target=probe, args=(i, url, interval, timeout, stop, lines, lock), daemon=True
        )
        for i, url in enumerate(urls)
    ]
    for t in threads:
        t.start()
    with open(path, "w") as fh:
        while not stop.wait(1.0):
            with lock:
                chunk, lines[:] = lines[:], []
            fh.writelines(chunk)
            fh.flush()
        for t in threads:
            t.join(timeout + 1.0)
        with lock:
            fh.writelines(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
