"""The composition root: the one place that turns Settings into storage, Redis and services,
and the only one that reads the master key. The server's lifespan, the CLI and the tests all
open the services here (:func:`open_services`); nothing here assumes a process of its own,
so the same root can run inside another ASGI application."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from authgate.clock import Clock, SystemClock
from authgate.errors import ConfigurationError
from authgate.jose import Key, b64encode_str
from authgate.passwords import PasswordHasher
from authgate.service.accounts import Accounts
from authgate.service.audit import Audit
from authgate.service.clients import Clients
from authgate.service.directory import Directory
from authgate.service.introspection import TokenIntrospection
from authgate.service.keyring import Keyring
from authgate.service.limits import ClientThrottle, LoginThrottle
from authgate.service.links import AccountLinks, Jobs, SendLimit
from authgate.service.mail import (
    ConsoleSender,
    EmailSender,
    MailQueue,
    MailTemplates,
    SmtpSender,
    WebhookSender,
)
from authgate.service.mfa import Mfa, OtpThrottle
from authgate.service.oidc import Oidc
from authgate.service.passkeys import Passkeys
from authgate.service.revocation import Revocations
from authgate.service.sessions import Sessions
from authgate.service.tokens import ID_TOKEN_TTL, AccessTokens
from authgate.service.weblogin import WebLogins
from authgate.settings import Settings, decode_master_key
from authgate.storage.base import Counters, Storage

_log = logging.getLogger("authgate.wiring")


def new_master_key() -> str:
    """32 random bytes, base64url: the format of master.key and AUTHGATE_MASTER_KEY."""
    return b64encode_str(secrets.token_bytes(32))


def write_master_key(path: Path) -> bool:
    """Create ``path`` (mode 0600) with a fresh master key; never overwrite. True if written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(new_master_key() + "\n")
    return True


def load_master_key(settings: Settings) -> bytes:
    """The master key from AUTHGATE_MASTER_KEY or its file; ConfigurationError if absent."""
    if settings.master_key is not None:
        return decode_master_key(settings.master_key.reveal())
    path = settings.master_key_file
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError as exc:
        raise ConfigurationError(
            f"no master key: set AUTHGATE_MASTER_KEY or run 'authgate init' (looked for {path})"
        ) from exc
    except OSError as exc:
        raise ConfigurationError(f"cannot read the master key file {path}: {exc.strerror}") from exc
    if path.stat().st_mode & 0o077:
        raise ConfigurationError(f"the master key file {path} is readable by others; chmod 600 it")
    return decode_master_key(text)


def derive(master_key: bytes, purpose: bytes) -> bytes:
    """A 32-byte subkey of the master key for one purpose (HKDF-SHA256)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(master_key)


def build_sender(settings: Settings, *, clock: Clock | None = None) -> EmailSender:
    """The sender AUTHGATE_EMAIL names (console, smtp or webhook)."""
    if settings.email == "smtp" and settings.smtp_url is not None:
        return SmtpSender(
            url=settings.smtp_url.reveal(),
            sender=settings.mail_sender,
            ca_file=settings.smtp_ca_file,
        )
    if (
        settings.email == "webhook"
        and settings.email_webhook_url is not None
        and settings.email_webhook_secret is not None
    ):
        return WebhookSender(
            url=settings.email_webhook_url,
            secret=settings.email_webhook_secret.reveal(),
            sender=settings.mail_sender,
            clock=clock,
        )
    if settings.is_production:
        _log.warning(
            "AUTHGATE_EMAIL=console in production: no mail is delivered (verification and "
            "reset links included); set AUTHGATE_EMAIL=smtp or webhook"
        )
    # In production the console gets the headers only: a mailed link is a credential.
    return ConsoleSender(sender=settings.mail_sender, redact=settings.is_production)


def build_templates(settings: Settings) -> MailTemplates:
    """The mail templates, with AUTHGATE_EMAIL_TEMPLATES over the packaged ones."""
    return MailTemplates(public_url=settings.public_base_url, override=settings.email_templates)


@dataclass
class Services:
    """Every use-case, wired to one storage and one clock."""

    settings: Settings
    storage: Storage
    clock: Clock
    hasher: PasswordHasher
    audit: Audit
    accounts: Accounts
    keyring: Keyring
    revocations: Revocations
    sessions: Sessions
    throttle: LoginThrottle
    clients: Clients
    directory: Directory
    tokens: AccessTokens
    introspection: TokenIntrospection
    mail: MailQueue
    mail_templates: MailTemplates
    links: AccountLinks
    jobs: Jobs
    mfa: Mfa
    passkeys: Passkeys
    web_logins: WebLogins
    oidc: Oidc
    fanout: Any = None
    fallback_listeners: list[Callable[[str], None]] = field(default_factory=list)

    def _fallback(self, part: str) -> None:
        for listener in self.fallback_listeners:
            listener(part)

    @classmethod
    async def open(
        cls,
        settings: Settings,
        storage: Storage,
        *,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> Services:
        """Build the services and load the keyring (creating the first keys if none)."""
        clock = clock or SystemClock()
        master = load_master_key(settings)
        hasher = PasswordHasher(
            settings.argon2_params(),
            max_concurrency=settings.hash_concurrency,
            max_queue=settings.hash_queue,
        )
        audit = Audit(storage, clock=clock)
        counters: Counters = storage
        redis_client = None
        fallback_hooks: list[Callable[[str], None]] = []

        def on_fallback(part: str) -> None:
            for hook in fallback_hooks:
                hook(part)

        if settings.redis_url:
            from authgate.storage.redis import RedisCounters, connect

            redis_client = connect(settings.redis_url)
            counters = RedisCounters(redis_client, fallback=storage, on_fallback=on_fallback)
        throttle = LoginThrottle(
            counters,
            policy=settings.login_throttle_policy(),
            clock=clock,
            sleep=sleep,
        )
        lifetime = settings.access_ttl + settings.leeway
        revocations = Revocations(storage, clock=clock, token_lifetime=lifetime)
        accounts = Accounts(
            storage,
            hasher=hasher,
            throttle=throttle,
            audit=audit,
            revocations=revocations,
            clock=clock,
            registration_open=settings.registration == "open",
            require_verified_email=settings.require_verified_email,
            hide_unverified=settings.enumeration_safe_registration,
        )
        static = None
        if settings.hs256_secret is not None:
            static = Key.from_secret(settings.hs256_secret.reveal(), alg=settings.signing_alg)
        keyring = Keyring(
            storage,
            master_key=master,
            alg=settings.signing_alg,
            rotation=settings.key_rotation,
            token_lifetime=lifetime,
            clock=clock,
            static_key=static,
            id_token_algs=settings.id_token_algs,
            id_token_lifetime=ID_TOKEN_TTL + settings.leeway,
        )
        await keyring.load()
        tokens = AccessTokens(keyring, policy=settings.token_policy(), clock=clock)
        # What both token issuers (user sessions and service clients) are built on.
        issuing: dict[str, Any] = {
            "accounts": accounts,
            "tokens": tokens,
            "revocations": revocations,
            "audit": audit,
            "clock": clock,
        }
        sessions = Sessions(
            storage,
            **issuing,
            refresh_secret=derive(master, b"authgate refresh-token successor v1"),
        )
        clients = Clients(
            storage,
            **issuing,
            hasher=hasher,
            secret_key=derive(master, b"authgate client-secret digest v1"),
            throttle=ClientThrottle(
                counters,
                policy=settings.client_throttle_policy(),
                clock=clock,
            ),
            leeway=settings.leeway,
            id_token_algs=settings.id_token_algs,
        )
        fanout = None
        if redis_client is not None:
            from authgate.storage.redis import RevocationFanout

            fanout = RevocationFanout(
                redis_client, on_message=revocations.notify, on_fallback=on_fallback
            )
            revocations.publishers.append(fanout.publish)
            fanout.start()
        directory = Directory(
            storage, sessions=sessions, revocations=revocations, audit=audit, clock=clock
        )
        mail = MailQueue(build_sender(settings, clock=clock), audit=audit, sleep=sleep)
        templates = build_templates(settings)
        link_policy = settings.link_policy()
        jobs = Jobs(audit=audit, sleep=sleep)
        links = AccountLinks(
            storage,
            accounts=accounts,
            hasher=hasher,
            mail=mail,
            templates=templates,
            revocations=revocations,
            audit=audit,
            limit=SendLimit(
                counters,
                window=link_policy.send_window,
                per_subject=link_policy.send_limit,
                per_ip=link_policy.send_ip_limit,
                clock=clock,
            ),
            jobs=jobs,
            clock=clock,
            policy=link_policy,
        )
        passkeys = Passkeys(
            storage,
            accounts=accounts,
            sessions=sessions,
            audit=audit,
            clock=clock,
            rp_id=settings.passkey_rp_id,
            origins=settings.passkey_origins,
            require_verified_email=settings.require_verified_email,
        )
        mfa = Mfa(
            storage,
            accounts=accounts,
            sessions=sessions,
            keyring=keyring,
            throttle=OtpThrottle(
                counters, policy=settings.login_throttle_policy(), clock=clock, sleep=sleep
            ),
            audit=audit,
            clock=clock,
            mail=mail,
            templates=templates,
            issuer=settings.issuer,
            secret_key=derive(master, b"authgate totp secret v1"),
            code_key=derive(master, b"authgate recovery-code digest v1"),
            require_verified_email=settings.require_verified_email,
            passkeys=passkeys,
        )
        web_logins = WebLogins(
            storage,
            sessions=sessions,
            audit=audit,
            clock=clock,
            idle_ttl=settings.web_login_idle_ttl,
            max_ttl=settings.web_login_max_ttl,
            csrf_key=derive(master, b"authgate web csrf v1"),
        )
        oidc = Oidc(
            storage,
            clients=clients,
            accounts=accounts,
            sessions=sessions,
            revocations=revocations,
            keyring=keyring,
            audit=audit,
            clock=clock,
            issuer=settings.issuer,
        )
        services = cls(
            web_logins=web_logins,
            oidc=oidc,
            mfa=mfa,
            passkeys=passkeys,
            mail=mail,
            mail_templates=templates,
            links=links,
            jobs=jobs,
            introspection=TokenIntrospection(
                storage, sessions=sessions, tokens=tokens, revocations=revocations
            ),
            tokens=tokens,
            directory=directory,
            fanout=fanout,
            clients=clients,
            settings=settings,
            storage=storage,
            clock=clock,
            hasher=hasher,
            audit=audit,
            accounts=accounts,
            keyring=keyring,
            revocations=revocations,
            sessions=sessions,
            throttle=throttle,
        )
        fallback_hooks.append(services._fallback)
        return services

    async def close(self) -> None:
        """Finish the background jobs, drain the mail queue, stop the hashing pool, the
        Redis fan-out and close the storage."""
        await self.jobs.close()
        await self.mail.close()
        self.hasher.close()
        if self.fanout is not None:
            await self.fanout.close()
        await self.storage.close()


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    clock: Clock | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    pool_size: int | None = None,
) -> AsyncIterator[Services]:
    """Migrate the configured database, open it and every service; close them all on exit.
    ``pool_size`` overrides AUTHGATE_DB_POOL_SIZE (a CLI command needs two connections)."""
    from authgate.storage.sql import migrate, open_storage

    await migrate(settings.database_url)
    storage = await open_storage(
        settings.database_url, pool_size=pool_size or settings.db_pool_size
    )
    try:
        services = await Services.open(settings, storage, clock=clock, sleep=sleep)
    except BaseException:
        await storage.close()
        raise
    services.mail.start()
    try:
        yield services
    finally:
        await services.close()


__all__ = [
    "Services",
    "build_sender",
    "build_templates",
    "derive",
    "load_master_key",
    "new_master_key",
    "open_services",
    "write_master_key",
]
