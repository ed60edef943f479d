"""Load loops: closed (N clients back to back, or N threads in this process) and open
(Poisson arrivals), and the window of counts, latencies and CPU that a closed loop yields."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import httpx

from .procs import CpuMeter, Usage
from .stats import K, Rounds, T, percentile


@dataclass(frozen=True, slots=True)
class Window:
    """What one or more measured slices counted (slices add up with ``+``)."""

    count: int = 0
    usage: Usage = field(default_factory=Usage)
    latencies: tuple[float, ...] = ()

    def __add__(self, other: Window) -> Window:
        return Window(
            self.count + other.count, self.usage + other.usage, self.latencies + other.latencies
        )

    @property
    def elapsed(self) -> float:
        """Wall seconds."""
        return self.usage.wall

    @property
    def rate(self) -> float:
        """Operations per wall second."""
        return self.count / self.elapsed if self.elapsed else float("nan")

    def ms(self, q: float) -> float:
        """Nearest-rank percentile of the latencies (``q`` in 0..1), in milliseconds."""
        return percentile(list(self.latencies), q) * 1000.0

    def cpu(self, name: str) -> float:
        """CPU seconds of one source of the meter."""
        return self.usage.cpu.get(name, float("nan"))

    def per_cpu_second(self, name: str) -> float:
        """Operations per CPU-second of one source."""
        cpu = self.cpu(name)
        return self.count / cpu if cpu > 0 else float("inf")

    def per_op_ms(self, name: str) -> float:
        """CPU milliseconds of one source per operation."""
        return self.cpu(name) / self.count * 1000.0 if self.count else float("nan")

    def cores(self, name: str) -> float:
        """CPU time over wall time of one source."""
        return self.usage.cores(name)


Step = Callable[[int], Awaitable[object]]


async def closed_loop(
    step: Step, *, workers: int, duration: float, meter: CpuMeter | None = None
) -> Window:
    """Run ``step(i)`` back to back on ``workers`` tasks (i = 0..workers-1) for ``duration``
    seconds. A worker starts no step after the deadline, and stops when a step returns
    False; the window ends when the last step returns, and counts every step started in it.
    """
    meter = meter or CpuMeter()
    latencies: list[list[float]] = [[] for _ in range(workers)]
    clock = time.perf_counter
    before = meter.read()
    deadline = before.wall + duration

    async def worker(i: int) -> None:
        own = latencies[i]
        while clock() < deadline:
            t0 = clock()
            if await step(i) is False:
                return
            own.append(clock() - t0)

    await asyncio.gather(*(worker(i) for i in range(workers)))
    flat = tuple(x for own in latencies for x in own)
    return Window(len(flat), meter.read() - before, flat)


def thread_loop(
    fn: Callable[[], object], *, threads: int, duration: float, meter: CpuMeter | None = None
) -> Window:
    """Run ``fn()`` back to back in ``threads`` threads of this process for ``duration``
    seconds (blocking); the window counts every call started before the deadline."""
    meter = meter or CpuMeter()
    clock = time.perf_counter
    deadline = 0.0

    def loop() -> list[float]:
        own: list[float] = []
        while clock() < deadline:
            t0 = clock()
            fn()
            own.append(clock() - t0)
        return own

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bench-loop") as pool:
        before = meter.read()
        deadline = before.wall + duration
        results = [f.result() for f in [pool.submit(loop) for _ in range(threads)]]
        flat = tuple(x for own in results for x in own)
        return Window(len(flat), meter.read() - before, flat)


async def open_loop(
    arrive: Callable[[float], bool], *, rate: float, duration: float, rng: random.Random
) -> None:
    """Poisson arrivals at ``rate`` per second for ``duration`` seconds: ``arrive(lag)`` at
    each, ``lag`` being how late this process is for it; it returns False to stop the
    arrivals. Returns at the end of ``duration`` in any case (whatever ``arrive`` started
    goes on)."""
    start = time.monotonic()
    end = start + duration
    t = start
    while True:
        t += rng.expovariate(rate)
        if t >= end:
            break
        await asyncio.sleep(max(0.0, t - time.monotonic()))
        if not arrive(max(0.0, time.monotonic() - t)):
            break
    await asyncio.sleep(max(0.0, end - time.monotonic()))


async def measure_rounds(
    one_round: Callable[[float], Awaitable[dict[K, T]]],
    progress: Callable[[int, dict[K, T]], str],
    *,
    rounds: int,
    duration: float,
    warmup: float,
) -> Rounds[K, T]:
    """``one_round(warmup)``, discarded, then ``rounds`` rounds of ``one_round(duration)``
    (a sample per row); after each, the line ``progress(n, samples)`` is printed."""
    await one_round(warmup)
    out: Rounds[K, T] = Rounds()
    for n in range(1, rounds + 1):
        samples = await one_round(duration)
        out.record(samples)
        print(progress(n, samples), flush=True)
    return out


# --- HTTP clients ----------------------------------------------------------------------------


class Unexpected(RuntimeError):
    """The server answered something a bench request should never get."""


def expect(response: httpx.Response, status: int = 200) -> httpx.Response:
    """``response`` if it has ``status``; raises Unexpected otherwise."""
    if response.status_code != status:
        raise Unexpected(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:300]}"
        )
    return response


@asynccontextmanager
async def http_clients(base_url: str, count: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """``count`` httpx clients of one keep-alive connection each (one per bench client)."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60.0)
            )
            for _ in range(count)
        ]
