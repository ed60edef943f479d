"""The command line's frame: the ``authgate`` group, reading settings, and
:func:`service_command`, the one way a command opens the services, runs and closes them.

Exit codes: 0 success, 1 a refused operation (message on stderr), 2 a usage error.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

from authgate.errors import AuthgateError, ConfigurationError
from authgate.settings import Settings

if TYPE_CHECKING:
    from authgate.wiring import Services

P = ParamSpec("P")
T = TypeVar("T")


def _fail(message: str) -> None:
    click.echo(f"authgate: {message}", err=True)
    raise SystemExit(1)


def _config_option(fn: Callable[P, T]) -> Callable[P, T]:
    return click.option(
        "--config",
        "config",
        type=click.Path(dir_okay=False),
        default=None,
        help="authgate.toml to read (default: ./authgate.toml when present).",
    )(fn)


def _settings(ctx: click.Context, config: str | None) -> Settings:
    chosen = config or (ctx.obj or {}).get("config")
    try:
        return Settings.load(config=chosen)
    except ConfigurationError as exc:
        _fail(exc.reason)
        raise  # unreachable


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except AuthgateError as exc:
        _fail(f"{exc.reason} ({exc.code})")
        raise  # unreachable


def service_command(
    *, before: Callable[[dict[str, Any]], None] | None = None
) -> Callable[[Callable[..., Awaitable[int]]], Callable[..., None]]:
    """One command against the services: it adds ``--config``, loads the settings, runs
    ``before`` on the command's keyword arguments (reading files, prompting: anything that
    must happen before the database opens), opens the services, runs the body with them,
    closes them, and exits with the body's status (a refusal exits 1 with its message)."""

    def decorate(body: Callable[..., Awaitable[int]]) -> Callable[..., None]:
        def command(ctx: click.Context, config: str | None, **kwargs: Any) -> None:
            settings = _settings(ctx, config)
            if before is not None:
                try:
                    before(kwargs)
                except AuthgateError as exc:
                    _fail(f"{exc.reason} ({exc.code})")

            async def run() -> int:
                async with _opened(settings) as svc:
                    return await body(svc, **kwargs)

            status = _run(run())
            if status:
                raise SystemExit(status)

        command.__name__, command.__doc__ = body.__name__, body.__doc__  # click's help
        return _config_option(click.pass_context(command))

    return decorate


def _opened(settings: Settings) -> AbstractAsyncContextManager[Services]:
    """The services, opened on the configured database and closed afterwards."""
    from authgate.wiring import open_services

    return open_services(settings, pool_size=2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", type=click.Path(dir_okay=False), default=None, help="authgate.toml to read."
)
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """authgate: JWT authentication done right."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


def json_line(**fields: Any) -> None:
    """Print one JSON object on one line (a command's machine-readable output)."""
    click.echo(json.dumps(fields))
