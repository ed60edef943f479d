"""``authgate init | migrate | serve | dev-cert``: the server's own commands."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import click

from authgate.errors import AuthgateError, ConfigurationError
from authgate.settings import DEFAULT_CONFIG, Settings

if TYPE_CHECKING:
    pass

from authgate.cli._core import _config_option, _fail, _opened, _run, _settings, main

CONFIG_TEMPLATE = """\
# authgate configuration. AUTHGATE_* environment variables override these values.
# Relative paths resolve against this file's folder.
database_url = "sqlite:///./authgate.db"
master_key_file = "master.key"
issuer = "http://127.0.0.1:8000"
audience = "authgate"
signing_alg = "ES256"
"""


# --- init / migrate / serve ------------------------------------------------------------------


def _refuse_unignored_key(directory: Path, name: str) -> None:
    """Refuse to write a key file into a git work tree unless git ignores it."""
    try:
        inside = subprocess.run(
            ["git", "rev-parse", "--is-inside-work-tree"],  # noqa: S607
            cwd=directory,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        return
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return
    ignored = subprocess.run(  # noqa: S603
        ["git", "check-ignore", "-q", name],  # noqa: S607
        cwd=directory,
        capture_output=True,
        check=False,
    )
    if ignored.returncode != 0:
        raise ConfigurationError(
            f"{directory / name} would be inside a git work tree and is not ignored; "
            f"add '{name}' to .gitignore or use another --dir"
        )


def do_init(directory: Path) -> Settings:
    """Write authgate.toml and master.key (0600) if absent, create the database and the first
    signing key. Never overwrites a key."""
    from authgate.wiring import write_master_key

    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / DEFAULT_CONFIG
    if not config.exists():
        config.write_text(CONFIG_TEMPLATE, encoding="utf-8")
        click.echo(f"wrote {config}", err=True)
    settings = Settings.load(config=config)
    if settings.master_key is None and not settings.master_key_file.exists():
        _refuse_unignored_key(settings.master_key_file.parent, settings.master_key_file.name)
        if write_master_key(settings.master_key_file):
            click.echo(f"wrote {settings.master_key_file} (mode 0600)", err=True)

    async def create() -> None:
        async with _opened(settings) as svc:
            current = svc.keyring.keyset.current
            click.echo(f"signing key {current.kid} ({current.alg}) is current", err=True)

    _run(create())
    return settings


@main.command()
@click.option(
    "--dir", "directory", type=click.Path(file_okay=False), default=".", show_default=True
)
@_config_option
@click.pass_context
def init(ctx: click.Context, directory: str, config: str | None) -> None:
    """Write authgate.toml and master.key, create the database and the first signing key."""
    try:
        do_init(Path(directory))
    except AuthgateError as exc:
        _fail(exc.reason)


@main.command()
@_config_option
@click.pass_context
def migrate(ctx: click.Context, config: str | None) -> None:
    """Apply the database migrations."""
    from authgate.storage.sql import migrate as run_migrations

    settings = _settings(ctx, config)
    _run(run_migrations(settings.database_url))
    click.echo("database is up to date", err=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None)
@_config_option
@click.pass_context
def serve(
    ctx: click.Context,
    host: str,
    port: int,
    workers: int,
    tls_cert: str | None,
    tls_key: str | None,
    config: str | None,
) -> None:
    """Run the server (running init first if it never ran)."""
    from authgate import logs
    from authgate.server import runtime

    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    chosen = config or (ctx.obj or {}).get("config")
    settings = _settings(ctx, config)
    if settings.master_key is None and not settings.master_key_file.exists():
        if settings.is_production:
            _fail("production needs a master key: set AUTHGATE_MASTER_KEY or run 'authgate init'")
        click.echo("no master key yet: running 'authgate init' first", err=True)
        try:
            settings = do_init(Path(chosen).parent if chosen else Path.cwd())
        except AuthgateError as exc:
            _fail(exc.reason)
    else:

        async def preflight() -> None:
            # Migrates, and refuses here with a clear message when the master key does not
            # decrypt the stored keys, rather than in each worker.
            async with _opened(settings):
                pass

        _run(preflight())
    logs.configure(settings.log_format)
    if chosen:
        os.environ["AUTHGATE_CONFIG"] = str(Path(chosen).resolve())
    scheme = "https" if tls_cert else "http"
    click.echo(
        f"authgate listening on {scheme}://{host}:{port} (issuer {settings.issuer})", err=True
    )
    runtime.run(
        runtime.build_config(
            "authgate.server.app:app_from_environ",
            host=host,
            port=port,
            workers=workers,
            header_timeout=settings.header_timeout,
            ssl_certfile=tls_cert,
            ssl_keyfile=tls_key,
        )
    )


@main.command("dev-cert")
@click.option(
    "--dir", "directory", type=click.Path(file_okay=False), default="certs", show_default=True
)
@_config_option
def dev_cert(directory: str, config: str | None) -> None:
    """Make a local CA and a localhost certificate for trying HTTPS."""
    from authgate.devcert import make_dev_cert

    paths = make_dev_cert(Path(directory))
    click.echo(
        f"wrote {paths['ca']}, {paths['cert']} and {paths['key']}\n"
        f"serve with: authgate serve --tls-cert {paths['cert']} --tls-key {paths['key']}\n"
        f"trust {paths['ca']} in your client (e.g. curl --cacert {paths['ca']})",
        err=True,
    )
