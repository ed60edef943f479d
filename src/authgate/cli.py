"""The authgate command line. It parses arguments and calls the service layer only.

Exit codes: 0 success, 1 a refused operation (message on stderr), 2 a usage error.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

from authgate.errors import AuthgateError, ConfigurationError, InvalidToken
from authgate.settings import DEFAULT_CONFIG, Settings

if TYPE_CHECKING:
    from authgate.jose import Key
    from authgate.wiring import Services

P = ParamSpec("P")
T = TypeVar("T")

CONFIG_TEMPLATE = """\
# authgate configuration. AUTHGATE_* environment variables override these values.
# Relative paths resolve against this file's folder.
database_url = "sqlite:///./authgate.db"
master_key_file = "master.key"
issuer = "http://127.0.0.1:8000"
audience = "authgate"
signing_alg = "ES256"
"""


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


# --- users and roles ---------------------------------------------------------------------------


@main.group()
def users() -> None:
    """Manage users."""


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


def _json_line(**fields: Any) -> None:
    click.echo(json.dumps(fields))


@users.command("add")
@click.argument("email")
@click.option("--role", "roles", multiple=True, help="A role to grant (repeatable).")
@click.option("--name", default=None)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@service_command(before=lambda kw: kw.update(password=_read_password(kw.pop("password_stdin"))))
async def users_add(
    svc: Services, email: str, roles: tuple[str, ...], name: str | None, password: str
) -> int:
    """Create a user."""
    user = await svc.accounts.create_user(email, password, name=name, roles=roles)
    _json_line(id=user.id, email=user.email, roles=list(user.roles))
    return 0


@users.command("list")
@service_command()
async def users_list(svc: Services) -> int:
    """List users, one JSON object a line."""
    after = None
    while True:
        page = await svc.accounts.list_users(after=after, limit=200)
        for u in page:
            _json_line(id=u.id, email=u.email, roles=list(u.roles), disabled=u.disabled)
        if len(page) < 200:
            return 0
        after = page[-1].id


@users.command("disable")
@click.argument("email")
@service_command()
async def users_disable(svc: Services, email: str) -> int:
    """Disable a user and end every session of theirs."""
    user = await svc.accounts.by_email(email)
    await svc.directory.set_disabled(user.id, True)
    click.echo(f"disabled {user.email}", err=True)
    return 0


@users.command("set-roles")
@click.argument("email")
@click.argument("roles", nargs=-1)
@service_command()
async def users_set_roles(svc: Services, email: str, roles: tuple[str, ...]) -> int:
    """Replace a user's roles (their access tokens die; a refresh gets the new roles)."""
    user = await svc.accounts.by_email(email)
    await svc.directory.set_roles(user.id, roles)
    click.echo(f"{user.email}: {' '.join(sorted(set(roles))) or '(no roles)'}", err=True)
    return 0


@main.group()
def roles() -> None:
    """Manage roles."""


@roles.command("add")
@click.argument("name")
@click.option("--permission", "permissions", multiple=True, help="A permission (repeatable).")
@service_command()
async def roles_add(svc: Services, name: str, permissions: tuple[str, ...]) -> int:
    """Create (or replace) a role with its permissions."""
    role = await svc.directory.put_role(name, permissions)
    _json_line(name=role.name, permissions=list(role.permissions))
    return 0


@roles.command("list")
@service_command()
async def roles_list(svc: Services) -> int:
    """List roles."""
    for role in await svc.accounts.list_roles():
        _json_line(name=role.name, permissions=list(role.permissions))
    return 0


# --- clients --------------------------------------------------------------------------------


@main.group()
def clients() -> None:
    """Service clients (OAuth2 client_credentials)."""


def _client_options(kw: dict[str, Any]) -> None:
    """Read --jwk and parse --access-ttl before anything opens."""
    from authgate.settings import parse_duration

    jwk_file, access_ttl = kw.pop("jwk_file"), kw.pop("access_ttl")
    kw["jwk"] = None
    if jwk_file is not None:
        try:
            kw["jwk"] = json.loads(Path(jwk_file).read_text("utf-8"))
        except ValueError:
            _fail("the --jwk file is not JSON")
    try:
        kw["ttl"] = parse_duration(access_ttl, name="--access-ttl") if access_ttl else None
    except AuthgateError as exc:
        _fail(exc.reason)


@clients.command("add")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, help="An allowed scope (repeatable).")
@click.option(
    "--jwk",
    "jwk_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The client's PUBLIC JWK: a private_key_jwt client, with no secret.",
)
@click.option("--access-ttl", default=None, help="Access-token lifetime (e.g. 5m).")
@service_command(before=_client_options)
async def clients_add(
    svc: Services,
    name: str,
    scopes: tuple[str, ...],
    jwk: dict[str, Any] | None,
    ttl: float | None,
) -> int:
    """Create a client; print {"client_id", "client_secret"} once, on stdout."""
    record, secret = await svc.clients.create(name, scopes, jwk=jwk, access_ttl=ttl)
    _json_line(client_id=record.client_id, client_secret=secret)
    return 0


@clients.command("list")
@service_command()
async def clients_list(svc: Services) -> int:
    """List clients (never their secrets)."""
    for c in await svc.clients.list():
        revoked = c.revoked_at is not None
        _json_line(client_id=c.client_id, name=c.name, scopes=list(c.scopes), revoked=revoked)
    return 0


@clients.command("revoke")
@click.argument("client_id")
@service_command()
async def clients_revoke(svc: Services, client_id: str) -> int:
    """Revoke a client and its tokens."""
    if not await svc.clients.revoke(client_id):
        _fail(f"no live client {client_id}")
    click.echo(f"revoked {client_id}", err=True)
    return 0


# --- keys -----------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Signing-key lifecycle."""


def _key_line(record: Any) -> None:
    _json_line(
        kid=record.kid,
        alg=record.alg,
        state=record.state,
        created_at=record.created_at,
        activated_at=record.activated_at,
        expires_at=record.expires_at,
    )


@keys.command("list")
@service_command()
async def keys_list(svc: Services) -> int:
    """List stored keys and their states."""
    for record in await svc.keyring.records():
        _key_line(record)
    return 0


@keys.command("rotate")
@service_command()
async def keys_rotate(svc: Services) -> int:
    """Make the next key current now."""
    view = await svc.keyring.rotate()
    await svc.audit.record("key_rotated", kid=view.signing.current.kid)
    click.echo(f"current key is now {view.signing.current.kid}", err=True)
    return 0


def _key_file(kw: dict[str, Any]) -> None:
    """Read and parse the key file before anything opens."""
    from authgate.jose import Key

    data = Path(kw.pop("file")).read_bytes()
    alg, kid = kw.pop("alg"), kw.pop("kid")
    if data.lstrip().startswith(b"{"):
        jwk = json.loads(data)
        if kid is not None:
            jwk["kid"] = kid
        kw["key"] = Key.from_jwk(jwk, alg=alg)
    else:
        kw["key"] = Key.from_pem(data, alg=alg, kid=kid)


@keys.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--alg", required=True, help="The algorithm the key is bound to.")
@click.option("--kid", default=None, help="Key id (default: the RFC 7638 thumbprint).")
@click.option("--activate", is_flag=True, help="Make it the signing key at once.")
@service_command(before=_key_file)
async def keys_import(svc: Services, key: Key, activate: bool) -> int:
    """Import a private key (PEM or private JWK): published at once, current if --activate."""
    record = await svc.keyring.import_key(key, activate=activate)
    await svc.audit.record("key_imported", kid=record.kid, activated=activate)
    _key_line(record)
    return 0


# --- audit ----------------------------------------------------------------------------------


@main.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("verify")
@service_command()
async def audit_verify(svc: Services) -> int:
    """Walk the audit chain; exit 1 and name the first broken row if it does not hold."""
    report = await svc.audit.verify()
    if report.ok:
        _json_line(ok=True, checked=report.checked)
        return 0
    _json_line(ok=False, checked=report.checked, broken_at=report.broken_at, reason=report.reason)
    return 1


# --- token / dev-cert -----------------------------------------------------------------------


@main.group()
def token() -> None:
    """Inspect tokens."""


@token.command("inspect")
@click.argument("value")
@service_command()
async def token_inspect(svc: Services, value: str) -> int:
    """Verify a token against the server's keys; print its claims, or exactly why it is invalid."""
    try:
        context = await svc.sessions.authenticate(value)
    except InvalidToken as exc:
        _json_line(valid=False, code=exc.code, reason=exc.reason)
        return 1
    click.echo(json.dumps({"valid": True, "claims": context.claims}, indent=2))
    return 0


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
