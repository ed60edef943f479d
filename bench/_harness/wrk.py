"""A driver for ``wrk`` (an HTTP load generator in C): one run, pinned to a core, parsed."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class WrkResult:
    """What one wrk run reports."""

    rate: float  # requests per second
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx/3xx answers and socket errors
    requests: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"not a wrk latency: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _find(pattern: str, out: str) -> str:
    match = re.search(pattern, out)
    if match is None:
        raise ValueError(f"wrk printed no {pattern!r}:\n{out}")
    return match.group(1)


def parse(out: str) -> WrkResult:
    """The figures of wrk's ``--latency`` output."""
    errors = 0
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if bad:
        errors += int(bad.group(1))
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    if sockets:
        errors += sum(int(x) for x in sockets.groups())
    return WrkResult(
        rate=float(_find(r"Requests/sec:\s+([0-9.]+)", out)),
        p50_ms=_ms(_find(r"\s50%\s+(\S+)", out)),
        p99_ms=_ms(_find(r"\s99%\s+(\S+)", out)),
        errors=errors,
        requests=int(_find(r"(\d+) requests in", out)),
    )


def wrk(
    url: str,
    *,
    duration: float,
    connections: int,
    headers: Mapping[str, str] | None = None,
    script: Path | None = None,
    script_args: tuple[str, ...] = (),
    core: int | None = None,
) -> WrkResult:
    """One ``wrk -t1`` run against ``url`` (whole seconds, at least 1), on ``core`` if given,
    with a Lua ``script`` and its arguments if given. Raises CalledProcessError."""
    command = ["taskset", "-c", str(core)] if core is not None else []
    command += [
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s",
        "--latency", "--timeout", "5s",
    ]  # fmt: skip
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    command.append(url)
    if script_args:
        command += ["--", *script_args]
    return parse(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def missing_tools(*tools: str) -> list[str]:
    """The ones of ``tools`` that are not on the PATH."""
    return [t for t in tools if shutil.which(t) is None]
