"""Fixtures of the lifecycle suite: a real aiosmtpd server on loopback (STARTTLS with AUTH,
trusted through a throwaway CA), and a real authgate server over HTTP that mails through
it. The authgate server runs on an injected FixedClock; its issuer is its own URL, so a
real guard can follow its revocation feed."""

from __future__ import annotations

import contextlib
import email
import email.policy
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword

from _support.http import bearer
from _support.live import FAST_ARGON2, AuthgateServer, bound_socket, free_port
from authgate.clock import FixedClock
from authgate.devcert import make_dev_cert
from authgate.service.mail import Message
from authgate.settings import Settings
from authgate.wiring import new_master_key

T = TypeVar("T")

START = 1_700_000_000.0
PUBLIC_URL = "https://app.example.com"
AUDIENCE = "api"
SMTP_USER = "mailer@example.com"
SMTP_PASSWORD = "s3cret:p@ss/word"
MAIL_DEADLINE = 10.0  # seconds to wait for a mail that must arrive
SENTINEL = "sentinel@example.org"

SUBJECTS = {
    "verify_email": "Confirm your email address",
    "reset_password": "Reset your password",
    "email_change_confirm": "Confirm your new email address",
    "email_change_notice": "Your email address is being changed",
    "account_exists": "An account with this address already exists",
}
LINK_PATHS = {
    "verify_email": "/verify-email",
    "reset_password": "/reset-password",
    "email_change_confirm": "/email/confirm",
}


def eventually(check: Callable[[], T], *, bound: float = MAIL_DEADLINE, what: str = "") -> T:
    """Poll ``check`` until it returns a truthy value; fail after ``bound`` seconds. This
    waits for another thread to act (a mail, the feed), never for time to pass."""
    deadline = time.monotonic() + bound
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"not within {bound} s: {what or check}"
        time.sleep(0.01)


# --- the SMTP server -------------------------------------------------------------------------


@dataclass
class Mailbox:
    """aiosmtpd's handler: keeps every envelope the server accepted, and reads them."""

    envelopes: list[Envelope] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        with self.lock:
            self.envelopes.append(envelope)
        return "250 OK"

    def messages(self) -> list[EmailMessage]:
        """The accepted mails, parsed, in arrival order."""
        with self.lock:
            envelopes = list(self.envelopes)
        out = []
        for envelope in envelopes:
            raw = envelope.original_content or envelope.content
            assert isinstance(raw, bytes)
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            out.append(parsed)
        return out

    def to(self, address: str, kind: str | None = None) -> list[EmailMessage]:
        """The mails to ``address`` (of ``kind``, by its subject)."""
        return [
            m
            for m in self.messages()
            if m["To"] == address and (kind is None or m["Subject"] == SUBJECTS[kind])
        ]

    def wait(self, address: str, kind: str, *, count: int = 1) -> EmailMessage:
        """The ``count``-th mail of ``kind`` to ``address``, once it arrived."""
        found = eventually(
            lambda: len(self.to(address, kind)) >= count and self.to(address, kind),
            what=f"mail #{count} of {kind} to {address}",
        )
        return found[count - 1]

    def token(self, address: str, kind: str, *, count: int = 1) -> str:
        """The token of the link in the ``count``-th mail of ``kind`` to ``address``."""
        return link_token(self.wait(address, kind, count=count), kind)


def text_of(mail: EmailMessage) -> str:
    """The text part of a mail."""
    part = mail.get_body(("plain",))
    assert part is not None, "no text part"
    text: str = part.get_content()
    return text


def link_token(mail: EmailMessage, kind: str) -> str:
    """Follow the link of a mail: the one URL under PUBLIC_URL + the kind's path in the
    text part; its ``token`` query parameter."""
    prefix = PUBLIC_URL + LINK_PATHS[kind]
    urls = [u for u in re.findall(r"https?://\S+", text_of(mail)) if u.startswith(prefix + "?")]
    assert len(urls) == 1, (kind, text_of(mail))
    parts = urlsplit(urls[0])
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == prefix
    [token] = parse_qs(parts.query)["token"]
    return token


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
    """A throwaway CA, and a certificate for 127.0.0.1 and localhost that it signed."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The project's own development certificate (``authgate dev-cert``)."""
    paths = make_dev_cert(tmp_path_factory.mktemp("pki"), days=1)
    return Pki(paths["ca"], paths["cert"], paths["key"])


@dataclass
class Smtp:
    """A running aiosmtpd server that requires STARTTLS and AUTH."""

    port: int
    mailbox: Mailbox
    ca_file: Path

    @property
    def url(self) -> str:
        userinfo = f"{quote(SMTP_USER, safe='')}:{quote(SMTP_PASSWORD, safe='')}"
        return f"smtp+starttls://{userinfo}@127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The settings that send mail through this server."""
        return {
            "AUTHGATE_EMAIL": "smtp",
            "AUTHGATE_SMTP_URL": self.url,
            "AUTHGATE_SMTP_CA_FILE": str(self.ca_file),
            "AUTHGATE_EMAIL_FROM": "authgate <no-reply@example.com>",
        }


@pytest.fixture
def smtp(pki: Pki) -> Iterator[Smtp]:
    """SMTP on loopback that requires STARTTLS (the test CA's certificate) and AUTH."""
    mailbox, port = Mailbox(), free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=pki.server_context(),
        require_starttls=True,
        auth_required=True,
        authenticator=authenticator,
    )
    controller.start()
    try:
        yield Smtp(port, mailbox, pki.ca_file)
    finally:
        controller.stop()


# --- the authgate server ---------------------------------------------------------------------


@dataclass
class Sleeps:
    """The injected sleep: records the delays asked for and returns at once."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Server(AuthgateServer):
    """authgate on a FixedClock and an instant sleep, its issuer its own URL."""

    clock: FixedClock
    sleeps: Sleeps

    def bearer_get(self, path: str, token: str, **kw: Any) -> Any:
        return self.http.get(path, headers=bearer(token), **kw)

    def me(self, token: str) -> Any:
        return self.http.get("/auth/me", headers=bearer(token))

    def new_client(self, scopes: list[str]) -> tuple[str, str]:
        """A service client: ``(id, secret)``."""
        record, secret = self.call(self.services.clients.create("guard", scopes))
        assert secret is not None
        return record.client_id, secret

    def flush_mail(self, mailbox: Mailbox) -> None:
        """Wait until every background job has run and every mail queued so far has been
        handed to the SMTP server: the jobs are awaited, then a sentinel mail goes through
        the same first-in first-out queue, and arrives last."""
        svc = self.services
        self.call(svc.links.jobs.drain())
        before = len(mailbox.to(SENTINEL))
        message = Message(to=SENTINEL, subject="sentinel", text="-", html="-", kind="sentinel")
        assert self.call(_enqueue(svc.mail, message))
        eventually(lambda: len(mailbox.to(SENTINEL)) > before, what="the sentinel mail")

    def audit(self, event: str) -> list[dict[str, Any]]:
        """The audit events named ``event``, in order, read from the store (whatever the
        backend): ``event``, ``user_id``, ``ip`` and ``detail`` (a dict)."""
        rows = self.call(self.services.storage.query_audit(event=event, limit=1000))
        return [
            {"event": r.event, "user_id": r.user_id, "ip": r.ip, "detail": dict(r.detail)}
            for r in rows
        ]


async def _enqueue(queue: Any, message: Message) -> bool:
    ok: bool = queue.enqueue(message)
    return ok


def server_env(folder: Path, url: str, **env: str) -> dict[str, str]:
    """The environment of a test server at ``url`` with its database in ``folder``."""
    return {
        "AUTHGATE_MASTER_KEY": new_master_key(),
        "AUTHGATE_DATABASE_URL": f"sqlite:///{folder / 'authgate.db'}",
        "AUTHGATE_ISSUER": url,
        "AUTHGATE_AUDIENCE": AUDIENCE,
        "AUTHGATE_PUBLIC_URL": PUBLIC_URL,
        **FAST_ARGON2,
        **env,
    }


@contextlib.contextmanager
def running(folder: Path, *, clock: FixedClock | None = None, **env: str) -> Iterator[Server]:
    """A started authgate server with ``env`` over the test environment."""
    sock = bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings.from_env(server_env(folder, url, **env), config_dir=folder)
    clock = clock or FixedClock(START)
    sleeps = Sleeps()
    live = Server(settings, clock=clock, sleep=sleeps, sock=sock, name="lifecycle-server")
    live.clock = clock
    live.sleeps = sleeps
    # A guard's long poll keeps its handler busy after the guard is gone: do not wait.
    live.server.config.timeout_graceful_shutdown = 0.5
    live.start()
    assert live.url == url
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def server(tmp_path: Path, smtp: Smtp) -> Iterator[Server]:
    """authgate mailing through the STARTTLS SMTP server, with the default settings."""
    with running(tmp_path, **smtp.env()) as live:
        yield live
