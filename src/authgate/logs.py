"""Logging set-up: JSON lines or console. Callers never pass secrets to the log.

Terminal escape sequences never reach the output, whatever the format: uvicorn's
``color_message`` extra is dropped, and ANSI sequences are removed from every string, so
that neither a log pipeline nor a terminal gets them (nor a client's text smuggled into a
log line).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, Literal, TextIO

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# uvicorn's colored copy of the message: the same text, with ANSI escapes.
_DROPPED = frozenset({"color_message"})
# CSI and OSC sequences, other two-byte ESC sequences, 8-bit CSI, then any stray ESC.
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[@-Z\\-_]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
    r"|\x1b"
)


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences."""
    return _ANSI.sub("", text)


def _clean(value: Any) -> Any:
    return strip_ansi(value) if isinstance(value, str) else value


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the record's extra fields, free of ANSI escapes."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": strip_ansi(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in _DROPPED and not key.startswith("_"):
                out[key] = _clean(value)
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
        return json.dumps(out, default=lambda v: strip_ansi(str(v)))


class ConsoleFormatter(logging.Formatter):
    """One human-readable line per record, free of ANSI escapes."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return strip_ansi(super().format(record))


def resolve_format(
    fmt: Literal["json", "console"] | None, *, stream: TextIO
) -> Literal["json", "console"]:
    """``fmt`` when it is set; otherwise console when ``stream`` is a terminal, and JSON
    when it is not (a file, a pipe, a log collector)."""
    if fmt is not None:
        return fmt
    try:
        return "console" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return "json"


def configure(
    fmt: Literal["json", "console"] | None,
    *,
    level: int = logging.INFO,
    stream: TextIO | None = None,
) -> Literal["json", "console"]:
    """Send authgate's (and uvicorn's) logs to ``stream`` (stderr) in ``fmt`` (json |
    console; None chooses by whether the stream is a terminal). Returns the format used."""
    stream = sys.stderr if stream is None else stream
    chosen = resolve_format(fmt, stream=stream)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if chosen == "json" else ConsoleFormatter())
    for name in ("authgate", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    return chosen
