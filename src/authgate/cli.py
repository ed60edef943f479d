"""The authgate command line: it parses arguments and calls the service layer."""

from __future__ import annotations

import click


@click.group()
@click.option(
    "--config", type=click.Path(dir_okay=False), default=None, help="authgate.toml to read."
)
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """authgate: JWT authentication done right."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Run the auth server."""
    click.echo("authgate serve: the server is not built yet.", err=True)
    raise SystemExit(1)
