"""What the benches print: the machine they ran on, tables, and ratios against named
baselines with their targets (a missed target is reported as MISS; the benches exit 0 all
the same: performance is reported, not asserted)."""

from __future__ import annotations

import contextlib
import math
import os
import platform
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def say(text: str = "") -> None:
    """Print a line now (the benches run for minutes)."""
    print(text, flush=True)


def fmt(value: float | None, digits: int = 1) -> str:
    """A number with thousands separators; ``-`` for none or NaN."""
    if value is None or math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def verdict(ok: bool) -> str:
    """``ok`` or ``MISS``."""
    return "ok" if ok else "MISS"


@dataclass(frozen=True, slots=True)
class Target:
    """A bound on a ratio against a baseline: ``>= 4x``, ``> 1x``, ``<= 1.6x``, ``>= 90%``."""

    op: str  # ">=", ">" or "<="
    bound: float
    percent: bool = False

    def met(self, ratio: float) -> bool:
        """Whether ``ratio`` meets the bound."""
        if self.op == ">=":
            return ratio >= self.bound
        if self.op == ">":
            return ratio > self.bound
        return ratio <= self.bound

    def show(self, ratio: float) -> str:
        """``ratio`` as this target writes it."""
        return f"{ratio:.1%}" if self.percent else f"{ratio:.2f}x"

    def __str__(self) -> str:
        return f"{self.op} {self.bound:.0%}" if self.percent else f"{self.op} {self.bound:g}x"

    def cells(self, ratio: float) -> list[str]:
        """[ratio, target, verdict]: the cells of a ratio against its baseline."""
        return [self.show(ratio), str(self), verdict(self.met(ratio))]


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: its title, its least width, and its alignment (right by default)."""

    title: str
    width: int = 0
    left: bool = False


class Table:
    """Columns of text. ``render`` sizes the columns to every row; ``head`` and ``row``
    print row by row (as rows are measured) at the columns' least widths. Cells past the
    last column are printed after it; a ``None`` row is an empty line."""

    def __init__(self, *columns: Column | str, gap: str = "  ") -> None:
        self.columns = [c if isinstance(c, Column) else Column(c) for c in columns]
        self.gap = gap

    def _line(self, cells: Sequence[str], widths: list[int]) -> str:
        out = []
        for i, cell in enumerate(cells):
            column = self.columns[i] if i < len(self.columns) else Column("", left=True)
            width = widths[i] if i < len(widths) else 0
            out.append(cell.ljust(width) if column.left else cell.rjust(width))
        return self.gap.join(out).rstrip()

    def _titles(self) -> list[str]:
        return [c.title for c in self.columns]

    def _head(self, widths: list[int]) -> list[str]:
        title = self._line(self._titles(), widths)
        return [title, "-" * len(title)]

    def _fixed(self) -> list[int]:
        return [max(c.width, len(c.title)) for c in self.columns]

    def head(self) -> str:
        """The title line and its rule, at the columns' least widths."""
        return "\n".join(self._head(self._fixed()))

    def row(self, cells: Sequence[str]) -> str:
        """One row at the columns' least widths."""
        return self._line(cells, self._fixed())

    def render(self, rows: Iterable[Sequence[str] | None]) -> str:
        """The title, its rule and every row, each column as wide as its widest cell."""
        rows = list(rows)
        widths = self._fixed()
        for r in rows:
            for i, cell in enumerate((r or [])[: len(widths)]):
                widths[i] = max(widths[i], len(cell))
        body = ["" if r is None else self._line(r, widths) for r in rows]
        return "\n".join([*self._head(widths), *body])


# --- the machine ---------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "-"


def machine_lines(*packages: str) -> list[str]:
    """The machine, Python, the versions of ``packages`` and the load average, and a
    warning when other processes keep more than half the cores busy."""
    load = os.getloadavg()
    cores = usable_cores()
    lines = [
        f"machine: {platform.machine()}, {os.cpu_count()} cores ({cores} usable), {cpu_model()}",
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.release()}",
    ]
    if packages:
        lines.append("packages: " + ", ".join(f"{p} {_version(p)}" for p in packages))
    lines.append("load average before: {:.2f} {:.2f} {:.2f}".format(*load))
    if load[0] > 0.5 * cores:
        lines.append(
            f"WARNING: load average {load[0]:.2f} on {cores} cores before the run: other "
            "processes are busy and take CPU from what is measured"
        )
    return lines


def load_after() -> str:
    """The load average line printed at the end of a run."""
    return "load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
