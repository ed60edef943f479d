"""Account enumeration by timing: ``POST /auth/password/forgot`` for a known and an unknown
address, over HTTP, against a real ``authgate serve``.

Run: ``.venv/bin/python bench/forgot.py [--requests N] [--rounds R] [--mail console|smtp]
[--order abab|shuffled] [--gap S] [--database-url postgresql://...]``

It starts ``python -m authgate serve`` (see ``_harness/servers.py``) on a fresh SQLite file
(or, with ``--database-url``, a fresh schema of that PostgreSQL server, dropped afterwards),
with the default argon2id parameters and the mail limits raised
(``AUTHGATE_MAIL_LIMIT``, ``AUTHGATE_MAIL_IP_LIMIT``) so that no request of the run is
throttled. Mail goes to the console sender (the server's log), or with ``--mail smtp`` to
an aiosmtpd server on loopback that accepts and discards every message, so that the known
address's background job does a real SMTP delivery.

It registers one account (the known address), warms up with a few requests of each kind,
then sends N requests for the known address and N for an unknown one (a new address each
time, so that no per-address state builds up), interleaved known, unknown, known, unknown
(ABAB; or with ``--order shuffled`` in a random order, the same each run, where it also
shows the latencies by the address of the request before: the background work of one
request lands on the next ones), one at a time on one keep-alive connection, ``--gap``
seconds apart (default 0: back to back, as a prober would send them; the background job of
one request then runs while the next ones are answered). Each latency is the client's wall
time of one request.

It prints the median and p90 latency of each kind, the ratio of the medians known/unknown
(OK within 10 %, MISS otherwise; with ``--rounds R`` > 1, the median of the per-round
ratios, each round N + N requests), and whether the answers were the same (status, body, and
headers but ``date``). The exit status is 0 either way: this is reported, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
from _harness.db import fresh_database, is_postgresql, shown
from _harness.report import Column, Table, fmt, load_after, machine_lines, say
from _harness.servers import Server, free_port, serve
from _harness.stats import percentile

PASSWORD = "bench: a long enough passphrase 7"  # a throwaway bench account
KNOWN = "known-bench@example.com"
TOLERANCE = 0.10  # the medians within 10 % of each other
WARMUP = 5  # requests of each kind before the measured ones
VOLATILE_HEADERS = frozenset({"date"})


class DiscardingSink:
    """aiosmtpd's handler: accept every message, keep none."""

    def __init__(self) -> None:
        self.accepted = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.accepted += 1
        return "250 OK"


@contextlib.contextmanager
def mail_env(kind: str) -> Iterator[tuple[dict[str, str], DiscardingSink | None]]:
    """The server's mail settings, and the SMTP sink they point at (``smtp``)."""
    if kind == "console":
        yield {"AUTHGATE_EMAIL": "console"}, None
        return
    from aiosmtpd.controller import Controller

    sink = DiscardingSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield {"AUTHGATE_EMAIL": "smtp", "AUTHGATE_SMTP_URL": f"smtp://127.0.0.1:{port}"}, sink
    finally:
        controller.stop()


def forgot(client: httpx.Client, email: str) -> tuple[float, httpx.Response]:
    """One forgot-password request: its wall time (seconds) and its answer."""
    start = time.perf_counter()
    response = client.post("/auth/password/forgot", json={"email": email})
    elapsed = time.perf_counter() - start
    if response.status_code != 202:
        raise RuntimeError(f"forgot-password answered {response.status_code}: {response.text}")
    return elapsed, response


def shape(response: httpx.Response) -> tuple[int, bytes, tuple[tuple[str, str], ...]]:
    """What must not tell the two addresses apart: status, body, headers but the date."""
    headers = tuple(
        sorted(
            (k.lower(), v) for k, v in response.headers.items() if k.lower() not in VOLATILE_HEADERS
        )
    )
    return response.status_code, response.content, headers


def measure(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    """Register the known account, warm up, then ``args.rounds`` rounds of interleaved
    requests; the latencies of each round."""
    rounds: list[dict[str, list[float]]] = []
    shapes: dict[str, set[Any]] = {"known": set(), "unknown": set()}
    after: dict[str, list[float]] = {"known": [], "unknown": []}  # by the request before
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx.Client(base_url=server.base_url, limits=limits, timeout=60.0) as client:
        registered = client.post("/auth/register", json={"email": KNOWN, "password": PASSWORD})
        if registered.status_code != 201:
            raise RuntimeError(f"register answered {registered.status_code}: {registered.text}")
        for i in range(WARMUP):
            forgot(client, KNOWN)
            forgot(client, f"warmup-{i}@example.com")
        time.sleep(0.5)  # let the warm-up's mail go out
        previous = "unknown"  # the warm-up's last request
        for r in range(args.rounds):
            latencies: dict[str, list[float]] = {"known": [], "unknown": []}
            kinds = ["known", "unknown"] * args.requests  # ABAB
            if args.order == "shuffled":
                random.Random(r).shuffle(kinds)
            for i, kind in enumerate(kinds):
                email = KNOWN if kind == "known" else f"nobody-{r}-{i}@example.com"
                elapsed, response = forgot(client, email)
                latencies[kind].append(elapsed)
                after[previous].append(elapsed)
                shapes[kind].add(shape(response))
                previous = kind
                if args.gap:
                    time.sleep(args.gap)
            rounds.append(latencies)
    return {"rounds": rounds, "shapes": shapes, "after": after}


def ratio_of(latencies: dict[str, list[float]]) -> float:
    """The median latency of the known address over the unknown one's."""
    return statistics.median(latencies["known"]) / statistics.median(latencies["unknown"])


def latency_table(title: str, latencies: dict[str, list[float]]) -> str:
    """Requests, median, p90, min and max (ms) of each kind."""
    table = Table(
        Column(title, left=True),
        Column("requests"),
        Column("median ms"),
        Column("p90 ms"),
        Column("min ms"),
        Column("max ms"),
    )
    rows = []
    for kind in ("known", "unknown"):
        values = [v * 1000 for v in latencies[kind]]
        rows.append(
            [
                kind,
                str(len(values)),
                fmt(statistics.median(values), 2),
                fmt(percentile(values, 0.90), 2),
                fmt(min(values), 2),
                fmt(max(values), 2),
            ]
        )
    return table.render(rows)


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    rounds: list[dict[str, list[float]]] = result["rounds"]
    latencies = {kind: [v for r in rounds for v in r[kind]] for kind in ("known", "unknown")}
    say(latency_table("address", latencies))
    say()
    if len(rounds) > 1:
        per_round = [ratio_of(r) for r in rounds]
        say("per-round median ratios known / unknown: " + ", ".join(f"{x:.3f}" for x in per_round))
        ratio = statistics.median(per_round)
        say("the ratio below is the median of the per-round ratios")
    else:
        ratio = ratio_of(latencies)
    within = abs(ratio - 1.0) <= TOLERANCE
    say(
        f"median known / unknown: {ratio:.3f}  (target within {TOLERANCE:.0%} of 1): "
        f"{'OK' if within else 'MISS'}"
    )
    shapes: dict[str, set[Any]] = result["shapes"]
    same = len(shapes["known"]) == 1 and shapes["known"] == shapes["unknown"]
    say(f"answers (status, body, headers but date): {'identical' if same else 'DIFFERENT'}")
    if not same:
        for kind in ("known", "unknown"):
            for status, body, headers in shapes[kind]:
                say(f"  {kind}: {status} {body[:120]!r} {dict(headers)}")
    if args.order == "shuffled":
        say()
        say("the same requests by the address of the request before (its background work):")
        say(latency_table("before", result["after"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50, help="requests of each kind")
    parser.add_argument(
        "--mail",
        choices=("console", "smtp"),
        default="console",
        help="the console sender (default) or a discarding SMTP server on loopback",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="rounds of N + N requests (default 1)"
    )
    parser.add_argument(
        "--order",
        choices=("abab", "shuffled"),
        default="abab",
        help="known and unknown alternating (default), or shuffled (the same seed each run)",
    )
    parser.add_argument(
        "--gap", type=float, default=0.0, help="seconds between requests (default 0)"
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server (postgresql://...): a fresh schema on it, dropped "
        "afterwards (default: a fresh SQLite file)",
    )
    args = parser.parse_args()
    if args.requests < 1 or args.rounds < 1 or args.gap < 0:
        parser.error("--requests and --rounds must be positive, --gap not negative")
    if args.database_url is not None and not is_postgresql(args.database_url):
        parser.error("--database-url takes a PostgreSQL URL (postgresql://...)")

    for line in machine_lines("uvicorn", "sqlalchemy", "argon2-cffi"):
        say(line)
    say(
        f"forgot-password timing: {args.rounds} x ({args.requests} known + {args.requests} "
        f"unknown), {args.order}, gap {args.gap:g} s, mail {args.mail}"
    )
    with contextlib.ExitStack() as stack:
        url = None
        if args.database_url is not None:
            url = stack.enter_context(_fresh_postgres(args.database_url))
            say(f"database: {shown(url)}")
        else:
            say("database: a fresh SQLite file")
        env, sink = stack.enter_context(mail_env(args.mail))
        env = {
            **env,
            "AUTHGATE_MAIL_LIMIT": str(10 * (args.rounds * args.requests + WARMUP)),
            "AUTHGATE_MAIL_IP_LIMIT": str(10 * (2 * (args.rounds * args.requests + WARMUP) + 10)),
        }
        server = stack.enter_context(serve(env=env, database_url=url))
        result = measure(server, args)
        if sink is not None:
            time.sleep(1.0)
            say(f"SMTP sink: {sink.accepted} messages accepted (and discarded)")
    say()
    report(result, args)
    say(load_after())
    return 0


@contextlib.contextmanager
def _fresh_postgres(url: str) -> Iterator[str]:
    """A fresh schema on ``url`` for this run, dropped afterwards."""
    runner = asyncio.Runner()
    manager = fresh_database(url)
    try:
        fresh = runner.run(manager.__aenter__())
        assert fresh is not None
        yield fresh
    finally:
        runner.run(manager.__aexit__(None, None, None))
        runner.close()


if __name__ == "__main__":
    sys.exit(main())
