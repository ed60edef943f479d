"""``authgate users | roles | clients | keys | audit | token``: administration, each
command one call of the services (the same calls as the admin API)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from authgate.errors import AuthgateError, InvalidToken, MailError

if TYPE_CHECKING:
    from authgate.jose import Key
    from authgate.wiring import Services

from authgate.cli._core import _fail, json_line, main, service_command

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
    json_line(id=user.id, email=user.email, roles=list(user.roles))
    return 0


@users.command("list")
@service_command()
async def users_list(svc: Services) -> int:
    """List users, one JSON object a line."""
    after = None
    while True:
        page = await svc.accounts.list_users(after=after, limit=200)
        for u in page:
            json_line(
                id=u.id,
                email=u.email,
                roles=list(u.roles),
                disabled=u.disabled,
                email_verified=u.email_verified,
            )
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


@users.command("verify")
@click.argument("email")
@service_command()
async def users_verify(svc: Services, email: str) -> int:
    """Mark a user's email address verified."""
    user = await svc.accounts.by_email(email)
    await svc.links.mark_verified(user.id, by="cli")
    click.echo(f"verified {user.email}", err=True)
    return 0


@users.command("mfa-reset")
@click.argument("email")
@service_command()
async def users_mfa_reset(svc: Services, email: str) -> int:
    """Turn every second factor of a user off (recovery codes too); the user is told by
    mail, and it is audited."""
    user = await svc.accounts.by_email(email)
    await svc.mfa.reset(user.id, by="cli")
    click.echo(f"second factors of {user.email} turned off", err=True)
    return 0


@users.command("reset-link")
@click.argument("email")
@click.option(
    "--print",
    "print_link",
    is_flag=True,
    help="Print the link (to hand over another way) instead of mailing it.",
)
@service_command()
async def users_reset_link(svc: Services, email: str, print_link: bool) -> int:
    """Mail a user a password-reset link (sent now; a delivery failure exits 1), or print
    it with --print. Either way the password is never shown; a newer link replaces it."""
    user = await svc.accounts.by_email(email)
    token = await svc.links.reset_token(user, by="cli-print" if print_link else "cli")
    if print_link:
        click.echo(svc.links.templates.link("/reset-password", token))
        return 0
    try:
        await svc.mail.sender.send(svc.links.reset_message(user, token))
    except MailError as exc:
        await svc.audit.record(
            "mail_failed",
            user_id=user.id,
            kind="reset_password",
            error=str(exc.context.get("error") or exc.code),
        )
        raise
    click.echo(f"reset link sent to {user.email}", err=True)
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
    json_line(name=role.name, permissions=list(role.permissions))
    return 0


@roles.command("list")
@service_command()
async def roles_list(svc: Services) -> int:
    """List roles."""
    for role in await svc.accounts.list_roles():
        json_line(name=role.name, permissions=list(role.permissions))
    return 0


# --- clients --------------------------------------------------------------------------------


@main.group()
def clients() -> None:
    """Clients: service clients (client_credentials) and OpenID Connect clients."""


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
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    help="An exact redirect URI (repeatable): an OpenID Connect client.",
)
@click.option(
    "--post-logout-redirect-uri",
    "post_logout_redirect_uris",
    multiple=True,
    help="An exact URI to return to after logout (repeatable).",
)
@click.option("--public", is_flag=True, help="A public client: no secret, PKCE only.")
@click.option("--first-party", is_flag=True, help="A first-party client: no consent page.")
@click.option(
    "--id-token-signed-response-alg",
    "id_token_alg",
    default=None,
    help="The ID tokens' algorithm (default RS256).",
)
@service_command(before=_client_options)
async def clients_add(
    svc: Services,
    name: str,
    scopes: tuple[str, ...],
    jwk: dict[str, Any] | None,
    ttl: float | None,
    redirect_uris: tuple[str, ...],
    post_logout_redirect_uris: tuple[str, ...],
    public: bool,
    first_party: bool,
    id_token_alg: str | None,
) -> int:
    """Create a client; print {"client_id", "client_secret"} once, on stdout (the secret
    is null for a public or a private_key_jwt client)."""
    record, secret = await svc.clients.create(
        name,
        scopes,
        jwk=jwk,
        access_ttl=ttl,
        redirect_uris=redirect_uris,
        post_logout_redirect_uris=post_logout_redirect_uris,
        public=public,
        first_party=first_party,
        id_token_alg=id_token_alg,
    )
    json_line(client_id=record.client_id, client_secret=secret)
    return 0


@clients.command("list")
@service_command()
async def clients_list(svc: Services) -> int:
    """List clients (never their secrets)."""
    for c in await svc.clients.list():
        revoked = c.revoked_at is not None
        json_line(
            client_id=c.client_id,
            name=c.name,
            scopes=list(c.scopes),
            revoked=revoked,
            redirect_uris=list(c.redirect_uris),
            public=c.public,
            first_party=c.first_party,
        )
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


_KEY_FIELDS = ("kid", "alg", "state", "created_at", "activated_at", "expires_at")


def _key_line(record: Any) -> None:
    json_line(**{name: getattr(record, name) for name in _KEY_FIELDS})


@keys.command("list")
@service_command()
async def keys_list(svc: Services) -> int:
    """List stored keys (of every algorithm) and their states."""
    for record in await svc.keyring.records():
        _key_line(record)
    return 0


@keys.command("rotate")
@service_command()
async def keys_rotate(svc: Services) -> int:
    """Make the next key of every algorithm current now."""
    view = await svc.keyring.rotate()
    for alg in svc.keyring.algorithms:
        kid = view.keyset_for(alg).current.kid
        await svc.audit.record("key_rotated", kid=kid, alg=alg)
        click.echo(f"current {alg} key is now {kid}", err=True)
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
        json_line(ok=True, checked=report.checked)
        return 0
    json_line(ok=False, checked=report.checked, broken_at=report.broken_at, reason=report.reason)
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
        json_line(valid=False, code=exc.code, reason=exc.reason)
        return 1
    click.echo(json.dumps({"valid": True, "claims": context.claims}, indent=2))
    return 0
