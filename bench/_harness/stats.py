"""Medians over rounds, per-round ratios, percentiles, and timeit-style loops.

A bench measures every row once per round, the rows of a round one after the other, and
reports medians over the rounds. A ratio of two rows is the median of their per-round
ratios: a change in the machine's load hits both rows of a round alike, and cancels.
"""

from __future__ import annotations

import gc
import itertools
import math
import statistics
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
Key = Callable[[T], float]  # what a sample is measured by (``float`` for plain numbers)


def median(values: Iterable[float]) -> float:
    """The median; NaN for no values."""
    values = list(values)
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def spread(values: list[float]) -> float:
    """The interquartile range as a fraction of the median (NaN under four values)."""
    if len(values) < 4:
        return float("nan")
    q = statistics.quantiles(values, n=4)
    return (q[2] - q[0]) / statistics.median(values)


class Rounds(Generic[K, T]):
    """One sample per row and round (a row's samples are in round order)."""

    def __init__(self) -> None:
        self.samples: dict[K, list[T]] = {}

    def add(self, row: K, sample: T) -> None:
        """Append the sample of ``row`` for the round under way."""
        self.samples.setdefault(row, []).append(sample)

    def record(self, samples: dict[K, T]) -> None:
        """Append one round: a sample per row."""
        for row, sample in samples.items():
            self.add(row, sample)

    def values(self, row: K, key: Key[T]) -> list[float]:
        """``key`` of each round's sample of ``row``."""
        return [key(s) for s in self.samples[row]]

    def median(self, row: K, key: Key[T]) -> float:
        """The median over the rounds of ``key`` of ``row``."""
        return median(self.values(row, key))

    def ratios(self, num: K, den: K, key: Key[T], den_key: Key[T] | None = None) -> list[float]:
        """Per-round ratios ``key(num) / den_key(den)`` (``den_key`` defaults to ``key``) of
        two rows measured in the same round."""
        pairs = zip(self.samples[num], self.samples[den], strict=True)
        return [key(n) / (den_key or key)(d) for n, d in pairs]

    def ratio(self, num: K, den: K, key: Key[T], den_key: Key[T] | None = None) -> float:
        """The median of the per-round ratios."""
        return median(self.ratios(num, den, key, den_key))


# --- timeit-style loops, for code that runs in this process ----------------------------------

Fn = Callable[[], object]


def _loop(fn: Fn, number: int) -> int:
    """Run ``fn`` ``number`` times with the collector off; return the elapsed nanoseconds."""
    it = itertools.repeat(None, number)
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in it:
            fn()
        return time.perf_counter_ns() - start
    finally:
        if gc_was_on:
            gc.enable()


def _calibrate(fn: Fn, target_s: float) -> int:
    """A loop count for which one repeat of ``fn`` lasts about ``target_s`` seconds."""
    number = 1
    while True:
        elapsed = _loop(fn, number)
        if elapsed >= 2_000_000 or number >= 1 << 24:  # 2 ms: long enough to extrapolate
            break
        number *= 4 if elapsed < 500_000 else 2
    return max(1, round(target_s * 1e9 / (elapsed / number)))


def time_interleaved(fns: dict[str, Fn], *, repeats: int, target_s: float) -> Rounds[str, float]:
    """Microseconds per call of each callable: ``repeats`` rounds after a discarded warm-up
    round, one repeat (a loop of about ``target_s`` seconds) of each callable in turn."""
    numbers = {name: _calibrate(fn, target_s) for name, fn in fns.items()}
    for name, fn in fns.items():
        _loop(fn, numbers[name])
    rounds: Rounds[str, float] = Rounds()
    for _ in range(repeats):
        gc.collect()
        for name, fn in fns.items():
            rounds.add(name, _loop(fn, numbers[name]) / numbers[name] / 1000.0)
    return rounds
