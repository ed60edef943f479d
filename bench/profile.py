"""Where a real ``authgate serve`` spends its CPU on the hot paths: a sampling profile per path.

Run: ``.venv/bin/python bench/profile.py [--py-spy PATH] [--seconds S] [--out DIR]
[--database-url postgresql://...]``

It starts ``authgate serve`` (one worker, as ``bench/server.py`` does), registers one user
per client, and for each of ``POST /auth/login``, ``POST /auth/refresh`` and ``GET
/auth/me`` drives the server from 4 closed-loop clients while py-spy samples the threads
that hold the GIL (``--gil``: the Python work; argon2, SQLite and every wait release it,
and without it py-spy counts the blocked worker threads as busy). For each path it
writes, under ``--out`` (default ``bench/profiles/``):

* ``PATH.svg``: py-spy's flame graph;
* ``PATH.txt``: the top functions by own samples and by total samples (a function counted
  once per stack however deep it recurses), as a share of every sample of the window.

py-spy is not a dependency of authgate: install it anywhere (``pip install py-spy`` in a
scratch virtual environment) and pass its path, or have it on PATH. It must be allowed to
ptrace the server (the same user, and ``kernel.yama.ptrace_scope`` <= 1 for a child).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
from pathlib import Path

from _harness.db import fresh_database
from _harness.load import closed_loop, expect, http_clients
from _harness.report import say
from _harness.servers import Server, serve

PASSWORD = "bench: a long enough passphrase 7"  # a throwaway bench account
CLIENTS = 4
PATHS = ("login", "refresh", "me")
TOP = 40
_OUTER = (
    *(
        f"({name})"
        for name in (
            "threading.py:1002",
            "threading.py:1045",
            "threading.py:982",
            "concurrent/futures/thread.py:83",
            "concurrent/futures/thread.py:58",
            "<frozen runpy>:198",
            "<frozen runpy>:88",
            "authgate/__main__.py:5",
            "authgate/server/runtime.py:190",
            "authgate/cli/server.py:162",
            "uvicorn/server.py:86",
            "uvicorn/_compat.py:30",
            "asyncio/runners.py:118",
        )
    ),
    "(click/core.py",
    "(click/decorators.py",
)


def top_table(collapsed: str, *, top: int = TOP) -> str:
    """The top functions of py-spy's collapsed stacks (``frame;frame;... count``): by own
    samples (the leaf) and by total samples (anywhere in the stack, once per stack)."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        # py-spy prefixes each stack with the thread ("process ... ;thread (...)"): skip it.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    # The frames under which everything runs (thread start, the CLI, uvicorn's loop) say
    # nothing: the third list leaves them out.
    inner = collections.Counter(
        {
            frame: count
            for frame, count in total.items()
            if not any(outer in frame for outer in _OUTER)
        }
    )
    lines = [
        f"{samples} samples of the threads holding the GIL (the Python work; argon2, "
        "SQLite and the waits release it)",
        "",
    ]
    for title, counter in (
        ("by own samples", own),
        ("by total samples", total),
        ("by total samples, the outer frames left out", inner),
    ):
        lines.append(f"top {top} {title}:")
        for frame, count in counter.most_common(top):
            lines.append(f"  {count / samples:6.1%}  {frame}")
        lines.append("")
    return "\n".join(lines)


async def drive(server: Server, name: str, seconds: int, record: list[str], *, tag: str) -> None:
    """Register the users (``tag`` in their emails), then run ``record`` (py-spy) while the
    clients hit one path."""
    async with http_clients(server.base_url, CLIENTS) as clients:
        bodies = [
            {"email": f"prof-{tag}-{i}@example.com", "password": PASSWORD} for i in range(CLIENTS)
        ]
        chains: list[str] = []
        headers: list[dict[str, str]] = []
        for client, body in zip(clients, bodies, strict=True):
            got = expect(await client.post("/auth/register", json=body), 201).json()
            chains.append(got["refresh_token"])
            headers.append({"authorization": f"Bearer {got['access_token']}"})

        async def login(i: int) -> None:
            expect(await clients[i].post("/auth/login", json=bodies[i]))

        async def refresh(i: int) -> None:
            got = expect(
                await clients[i].post("/auth/refresh", json={"refresh_token": chains[i]})
            ).json()
            chains[i] = got["refresh_token"]

        async def me(i: int) -> None:
            expect(await clients[i].get("/auth/me", headers=headers[i]))

        step = {"login": login, "refresh": refresh, "me": me}[name]
        await closed_loop(step, workers=CLIENTS, duration=1.0)  # warm up
        spy = subprocess.Popen([*record, "--pid", str(server.pid), "--duration", str(seconds)])
        await asyncio.sleep(0.3)  # py-spy attaches
        await closed_loop(step, workers=CLIENTS, duration=seconds + 0.5)
        await asyncio.to_thread(spy.wait)


async def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    async with fresh_database(args.database_url) as url:
        with serve(database_url=url) as server:
            for name in PATHS:
                for fmt, suffix in (("flamegraph", "svg"), ("raw", "collapsed")):
                    target = out / f"{name}.{suffix}"
                    record = [args.py_spy, "record", "--format", fmt, "--output", str(target)]
                    record += ["--rate", str(args.rate), "--gil"]
                    await drive(server, name, args.seconds, record, tag=f"{name}-{fmt}")
                collapsed = out / f"{name}.collapsed"
                (out / f"{name}.txt").write_text(
                    f"{name}: {args.seconds:g} s of {CLIENTS} closed-loop clients\n"
                    + top_table(collapsed.read_text())
                )
                collapsed.unlink()
                say(f"{name}: {out / (name + '.svg')}, {out / (name + '.txt')}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument("--seconds", type=int, default=8, help="sampled seconds per path")
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "profiles"))
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server (default SQLite)")
    args = parser.parse_args()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
