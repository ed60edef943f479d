"""Fixtures of the mail suite: a real aiosmtpd server on loopback (plain, STARTTLS, implicit
TLS, with or without AUTH), a throwaway CA made with cryptography, and a real SQLite audit
log."""

from __future__ import annotations

import email
import email.policy
import gc
import ssl
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword

from _support.live import free_port
from authgate.devcert import make_dev_cert
from authgate.service.audit import Audit
from authgate.storage.sql import migrate, open_storage
from authgate.storage.sql.store import SqlStorage

SMTP_USER = "mailer@example.com"
# Characters that must be percent-encoded in a URL's userinfo.
SMTP_PASSWORD = "p@ss:w/rd%40 ok"


@pytest.fixture
def anyio_backend() -> str:
    """anyio's pytest plugin runs async tests on asyncio only."""
    return "asyncio"


@dataclass
class Recorder:
    """aiosmtpd's handler: keeps every envelope the server accepted."""

    envelopes: list[Envelope] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    def messages(self) -> list[EmailMessage]:
        """The accepted mails, parsed."""
        out = []
        for envelope in self.envelopes:
            raw = envelope.original_content or envelope.content
            assert isinstance(raw, bytes)
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            out.append(parsed)
        return out


def authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    """Accept SMTP_USER with SMTP_PASSWORD only."""
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == SMTP_USER.encode()
        and auth_data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@dataclass(frozen=True)
class Pki:
    """A throwaway CA and a certificate for 127.0.0.1 and localhost signed by it."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA and a certificate for 127.0.0.1 and localhost it signed: the
    project's own development certificate (``authgate dev-cert``)."""
    paths = make_dev_cert(tmp_path_factory.mktemp("pki"), days=1)
    return Pki(paths["ca"], paths["cert"], paths["key"])


@dataclass
class SmtpServer:
    """A running aiosmtpd server and what it received."""

    port: int
    recorder: Recorder


def _collect_server_leftovers() -> None:
    """aiosmtpd leaves the server side of some connections (its own readiness probe, a
    refused TLS handshake) for the garbage collector when its loop stops: collect them
    here, as the test server's leftovers, not in the middle of a later test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _run(controller: Controller, recorder: Recorder, port: int) -> Iterator[SmtpServer]:
    controller.start()
    try:
        yield SmtpServer(port, recorder)
    finally:
        controller.stop()
        _collect_server_leftovers()


@pytest.fixture
def smtp_plain() -> Iterator[SmtpServer]:
    """Plain SMTP on loopback, no AUTH."""
    recorder, port = Recorder(), free_port()
    yield from _run(Controller(recorder, hostname="127.0.0.1", port=port), recorder, port)


@pytest.fixture
def smtp_starttls(pki: Pki) -> Iterator[SmtpServer]:
    """SMTP that requires STARTTLS (with the test CA's certificate) and AUTH."""
    recorder, port = Recorder(), free_port()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        tls_context=pki.server_context(),
        require_starttls=True,
        auth_required=True,
        authenticator=authenticator,
    )
    yield from _run(controller, recorder, port)


@pytest.fixture
def smtps(pki: Pki) -> Iterator[SmtpServer]:
    """SMTP over implicit TLS, no AUTH."""
    recorder, port = Recorder(), free_port()
    controller = Controller(
        recorder, hostname="127.0.0.1", port=port, ssl_context=pki.server_context()
    )
    controller.start()
    # start() probes an implicit-TLS server with a connection of its own.
    time.sleep(0.1)  # lets the server's loop see the probe hang up
    _collect_server_leftovers()
    try:
        yield SmtpServer(port, recorder)
    finally:
        controller.stop()
        _collect_server_leftovers()


@pytest.fixture
async def audit_store(tmp_path: Path) -> AsyncIterator[SqlStorage]:
    """A real SQLite database, migrated, for the audit log."""
    url = f"sqlite:///{tmp_path / 'mail.db'}"
    await migrate(url)
    store = await open_storage(url)
    try:
        yield store
    finally:
        await store.close()


def make_audit(store: SqlStorage) -> Audit:
    """An Audit on ``store``, on the real clock."""
    from authgate.clock import SystemClock

    return Audit(store, clock=SystemClock())
