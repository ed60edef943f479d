"""The command line as an operator runs it: ``python -m authgate`` in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

AUTHGATE = (sys.executable, "-m", "authgate")


def run_cli(
    cwd: Path, *args: str, env: Mapping[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``authgate ARGS`` in ``cwd`` with exactly ``env``; text in and out, and a failure is
    returned (its exit status and stderr), not raised."""
    return subprocess.run(
        [*AUTHGATE, *args],
        cwd=cwd,
        env=dict(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def add_role(name: str, *permissions: str) -> list[str]:
    """The arguments of ``authgate roles add NAME --permission P ...``."""
    return ["roles", "add", name, *(arg for p in permissions for arg in ("--permission", p))]


def add_user(email: str, *roles: str) -> list[str]:
    """The arguments of ``authgate users add EMAIL --role R ... --password-stdin``."""
    return [
        "users",
        "add",
        email,
        *(arg for r in roles for arg in ("--role", r)),
        "--password-stdin",
    ]
