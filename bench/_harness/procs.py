"""CPU and memory accounting from ``/proc``: per process (with its descendants), per thread,
for the whole machine, and a meter that reads several of them at the edges of a window."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")


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


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (of every thread of it)."""
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
        total += sum(process_cpu_seconds(child) for child in children(pid))
    return total


def thread_cpu_seconds(pid: int, tid: int | None = None) -> float:
    """utime + stime of one thread of ``pid`` (its main thread by default)."""
    return _stat_cpu(f"/proc/{pid}/task/{tid or pid}/stat") or 0.0


def machine_busy_seconds() -> float:
    """CPU seconds every process of the machine has spent busy so far (/proc/stat)."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:9]]
    # user nice system idle iowait irq softirq steal (guest time is already in user/nice)
    busy = values[0] + values[1] + values[2] + values[5] + values[6] + values[7]
    return busy / _CLK_TCK


def waited_cpu_seconds() -> float:
    """CPU seconds of this process and of the children it has waited for (``wrk`` runs)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + done.ru_utime + done.ru_stime


def rss_kib(pid: int) -> int | None:
    """VmRSS of a process, in KiB; None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def pin(pid: int, core: int) -> None:
    """Pin every thread of ``pid`` to ``core``."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(tid), {core})


# --- a meter over a window ------------------------------------------------------------------

MACHINE = "machine"  # the source name of the machine's busy time in a CpuMeter


@dataclass(frozen=True, slots=True)
class Reading:
    """The wall clock and every source's CPU seconds, read at one instant."""

    wall: float
    cpu: Mapping[str, float]

    def __sub__(self, before: Reading) -> Usage:
        return Usage(self.wall - before.wall, {k: v - before.cpu[k] for k, v in self.cpu.items()})


@dataclass(frozen=True, slots=True)
class Usage:
    """CPU seconds per source over a window of ``wall`` seconds (usages add up)."""

    wall: float = 0.0
    cpu: Mapping[str, float] = field(default_factory=dict)

    def __add__(self, other: Usage) -> Usage:
        names = dict.fromkeys([*self.cpu, *other.cpu])
        return Usage(
            self.wall + other.wall,
            {k: self.cpu.get(k, 0.0) + other.cpu.get(k, 0.0) for k in names},
        )

    def cores(self, name: str) -> float:
        """CPU time over wall time of one source."""
        return self.cpu[name] / self.wall if self.wall > 0 else float("nan")

    def others(self, *ours: str) -> float:
        """CPU seconds that the machine spent outside the named sources (other processes)."""
        return max(0.0, self.cpu[MACHINE] - sum(self.cpu[name] for name in ours))


class CpuMeter:
    """Reads named CPU clocks (callables giving CPU seconds so far) and the machine's busy
    time (source ``machine``) together, so that a window's usage is one subtraction."""

    def __init__(self, **sources: Callable[[], float]) -> None:
        self.sources = {**sources, MACHINE: machine_busy_seconds}

    def read(self) -> Reading:
        """Every source now, with ``time.perf_counter()`` as the wall clock."""
        return Reading(time.perf_counter(), {k: f() for k, f in self.sources.items()})


# --- resident memory over time --------------------------------------------------------------


class RssSampler:
    """VmRSS of each of ``pids``, every ``interval`` seconds, in the background."""

    def __init__(self, pids: list[int], *, interval: float = 1.0) -> None:
        self.pids = pids
        self.interval = interval
        self.samples: list[tuple[float, int, int]] = []  # (monotonic, pid index, KiB)
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        now = time.monotonic()
        for i, pid in enumerate(self.pids):
            value = rss_kib(pid)
            if value is not None:
                self.samples.append((now, i, value))

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop sampling, after one last sample."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.sample()

    def window(self, index: int, t0: float, t1: float) -> list[int]:
        """The samples (KiB) of process ``index`` taken between ``t0`` and ``t1``."""
        return [kib for t, i, kib in self.samples if i == index and t0 <= t <= t1]

    def last(self, index: int, count: int) -> list[int]:
        """The last ``count`` samples (KiB) of process ``index``."""
        return [kib for _, i, kib in self.samples if i == index][-count:]
