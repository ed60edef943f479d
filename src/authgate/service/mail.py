"""Outgoing mail: the message, the senders (console, SMTP, webhook), the send queue and
the templates. Nothing here reads settings: the composition root builds the sender."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import ssl
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Final, Protocol, TextIO
from urllib.parse import quote, unquote, urlsplit

import httpx
import jinja2
import orjson

from authgate.clock import Clock, SystemClock
from authgate.errors import ConfigurationError, MailError
from authgate.service.audit import Audit

log = logging.getLogger("authgate.mail")

KINDS: Final = (
    "verify_email",
    "reset_password",
    "email_change_confirm",
    "email_change_notice",
    "account_exists",
    "mfa_reset",
    "mfa_changed",
)
SMTP_SCHEMES: Final = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
WEBHOOK_SECRET_PREFIX: Final = "whsec_"  # noqa: S105  (the format's prefix, not a secret)
_KIND: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One mail: a text and an HTML part. ``kind`` names its template (for the audit log)."""

    to: str
    subject: str
    text: str
    html: str
    kind: str = "message"


class EmailSender(Protocol):
    """Hands one message on; raises :class:`MailError` when it cannot."""

    async def send(self, message: Message) -> None:
        """Deliver ``message`` or raise MailError."""
        ...


class ConsoleSender:
    """Writes each message to a stream (stderr by default): for development only. With
    ``redact`` (production) it writes the headers only and never the body, which may
    carry a link that is a credential; the mail is then not delivered at all."""

    def __init__(self, *, sender: str, stream: TextIO | None = None, redact: bool = False) -> None:
        self._sender = sender
        self._stream = stream
        self._redact = redact

    async def send(self, message: Message) -> None:
        """Print the message's headers and (unless redacted) its text part."""
        stream = self._stream or sys.stderr
        body = (
            "(body withheld: AUTHGATE_EMAIL=console delivers nothing; set smtp or webhook)"
            if self._redact
            else message.text
        )
        stream.write(
            f"--- mail ({message.kind}) ---\nFrom: {self._sender}\nTo: {message.to}\n"
            f"Subject: {message.subject}\n\n{body}\n--- end of mail ---\n"
        )
        stream.flush()


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    """An SMTP URL, parsed: ``smtp://`` plain, ``smtp+starttls://``, ``smtps://`` (TLS)."""

    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None

    def __repr__(self) -> str:
        return f"SmtpTarget({self.scheme}://{self.host}:{self.port}, user={self.username!r})"

    @property
    def encrypted(self) -> bool:
        """True for STARTTLS and implicit TLS."""
        return self.scheme != "smtp"

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        """Parse ``url``; user and password come percent-decoded from its userinfo.
        Raises ConfigurationError (never naming the password)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError("AUTHGATE_SMTP_URL is not a valid URL") from exc
        scheme = parts.scheme.lower()
        if scheme not in SMTP_SCHEMES:
            raise ConfigurationError(
                "AUTHGATE_SMTP_URL must start with smtp://, smtp+starttls:// or smtps://"
            )
        if not parts.hostname:
            raise ConfigurationError("AUTHGATE_SMTP_URL has no host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigurationError("AUTHGATE_SMTP_URL takes no path, query or fragment")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        return cls(scheme, parts.hostname, port or SMTP_SCHEMES[scheme], username, password)


class SmtpSender:
    """Sends through an SMTP server (aiosmtplib). Certificates are always verified;
    ``ca_file`` adds a CA to trust. The password is never logged."""

    def __init__(
        self,
        *,
        url: str,
        sender: str,
        ca_file: Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._target = SmtpTarget.parse(url)
        self._sender = sender
        self._timeout = timeout
        self._tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)

    @property
    def target(self) -> SmtpTarget:
        """Where the mail goes."""
        return self._target

    async def send(self, message: Message) -> None:
        """Send ``message`` as multipart/alternative (text, then HTML)."""
        import aiosmtplib

        mail = EmailMessage()
        try:
            mail["From"] = self._sender
            mail["To"] = message.to
            mail["Subject"] = message.subject
        except ValueError:  # a line break in a header: never sent
            raise MailError("a mail header holds a line break", error="bad_header") from None
        mail.set_content(message.text)
        mail.add_alternative(message.html, subtype="html")
        target = self._target
        try:
            await aiosmtplib.send(
                mail,
                hostname=target.host,
                port=target.port,
                username=target.username,
                password=target.password,
                use_tls=target.scheme == "smtps",
                # Plain means plain: no opportunistic upgrade that a server could strip.
                start_tls=target.scheme == "smtp+starttls",
                validate_certs=True,
                tls_context=self._tls if target.encrypted else None,
                timeout=self._timeout,
            )
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            # A refused handshake leaves its transport closing: one turn of the loop lets
            # it close before the failure is reported (and the caller may stop the loop).
            await asyncio.sleep(0)
            raise MailError(
                f"SMTP delivery to {target.host}:{target.port} failed: {type(exc).__name__}",
                error=type(exc).__name__,
                smtp_code=getattr(exc, "code", None),
            ) from None


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a webhook secret: ``whsec_`` + base64 (Standard Webhooks), or raw."""
    if secret.startswith(WEBHOOK_SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(WEBHOOK_SECRET_PREFIX) :], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigurationError(
                "AUTHGATE_EMAIL_WEBHOOK_SECRET: whsec_ is not followed by base64"
            ) from exc
    return secret.encode("utf-8")


def webhook_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value of the Standard Webhooks specification."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


class WebhookSender:
    """POSTs each message as JSON, signed as Standard Webhooks specifies."""

    def __init__(
        self,
        *,
        url: str,
        secret: str,
        sender: str,
        clock: Clock | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url = url
        self._key = webhook_key(secret)
        self._sender = sender
        self._clock = clock or SystemClock()
        self._timeout = timeout
        self._transport = transport

    async def send(self, message: Message) -> None:
        """POST ``{type, timestamp, data: {from, to, subject, text, html, kind}}``;
        a non-2xx answer or a transport failure raises MailError."""
        msg_id = "msg_" + secrets.token_urlsafe(18)
        timestamp = int(self._clock.now())
        body = orjson.dumps(
            {
                "type": "email.send",
                "timestamp": timestamp,
                "data": {
                    "from": self._sender,
                    "to": message.to,
                    "subject": message.subject,
                    "text": message.text,
                    "html": message.html,
                    "kind": message.kind,
                },
            }
        )
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": webhook_signature(self._key, msg_id, timestamp, body),
        }
        try:
            async with httpx.AsyncClient(
                timeout=self._timeout, transport=self._transport, follow_redirects=False
            ) as client:
                response = await client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise MailError(
                f"the mail webhook failed: {type(exc).__name__}", error=type(exc).__name__
            ) from None
        if not 200 <= response.status_code < 300:
            raise MailError(
                f"the mail webhook answered {response.status_code}",
                error="http_status",
                status=response.status_code,
            )


MailListener = Callable[[str], None]


class MailQueue:
    """A bounded queue with one worker: :meth:`enqueue` never waits. Each message is tried
    ``attempts`` times with exponential backoff; a failure, or a message dropped because
    the queue is full, is audited (never the body) and reported to ``listeners`` with the
    outcome ``sent``, ``failed`` or ``dropped``."""

    def __init__(
        self,
        sender: EmailSender,
        *,
        audit: Audit,
        maxsize: int = 1000,
        attempts: int = 4,
        backoff: float = 2.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if maxsize < 1 or attempts < 1 or backoff < 0:
            raise ValueError("maxsize and attempts must be at least 1, backoff not negative")
        self.sender = sender
        self._audit = audit
        self._attempts = attempts
        self._backoff = backoff
        self._sleep = sleep
        self._queue: asyncio.Queue[Message] = asyncio.Queue(maxsize)
        self._worker: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._closed = False
        self.listeners: list[MailListener] = []

    def start(self) -> None:
        """Start the worker on the running loop (idempotent)."""
        if self._worker is None and not self._closed:
            self._worker = asyncio.get_running_loop().create_task(self._run())

    @property
    def size(self) -> int:
        """Messages waiting."""
        return self._queue.qsize()

    def enqueue(self, message: Message) -> bool:
        """Queue ``message`` and return at once; False (and ``mail_dropped`` audited) when
        the queue is full or closed."""
        if not self._closed:
            try:
                self._queue.put_nowait(message)
            except asyncio.QueueFull:
                pass
            else:
                return True
        self._later(self._dropped(message, "closed" if self._closed else "queue_full"))
        return False

    async def close(self, *, deadline: float = 5.0) -> None:
        """Stop taking messages, let the worker drain the queue for up to ``deadline``
        seconds, then stop it; what is left is audited as dropped."""
        self._closed = True
        if self._worker is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), deadline)
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        while not self._queue.empty():
            await self._dropped(self._queue.get_nowait(), "shutdown")
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def _later(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _notify(self, outcome: str) -> None:
        for listener in self.listeners:
            listener(outcome)

    async def _dropped(self, message: Message, reason: str) -> None:
        self._notify("dropped")
        log.warning("mail %s dropped: %s", message.kind, reason)
        await self._safe_audit("mail_dropped", kind=message.kind, reason=reason)

    async def _safe_audit(self, event: str, **detail: Any) -> None:
        try:
            await self._audit.record(event, **detail)
        except Exception:
            log.exception("cannot audit %s", event)

    async def _run(self) -> None:
        while True:
            message = await self._queue.get()
            try:
                await self._deliver(message)
            except asyncio.CancelledError:  # close() ran out of time during this one
                await self._dropped(message, "shutdown")
                raise
            except Exception:
                log.exception("the mail worker failed on a %s mail", message.kind)
            finally:
                self._queue.task_done()

    async def _deliver(self, message: Message) -> None:
        for attempt in range(1, self._attempts + 1):
            try:
                await self.sender.send(message)
            except MailError as exc:
                error = str(exc.context.get("error") or exc.code)
                log.warning(
                    "mail %s: attempt %d of %d failed (%s)",
                    message.kind,
                    attempt,
                    self._attempts,
                    error,
                )
                if attempt < self._attempts:
                    await self._sleep(self._backoff * 2 ** (attempt - 1))
                    continue
                self._notify("failed")
                await self._safe_audit(
                    "mail_failed", kind=message.kind, attempts=attempt, error=error
                )
                return
            self._notify("sent")
            return


class MailTemplates:
    """Jinja2 templates per kind: ``<kind>.subject.txt``, ``<kind>.txt``, ``<kind>.html``,
    from ``override`` first, then the package's ``authgate/data/mail``. HTML is escaped."""

    def __init__(self, *, public_url: str, override: Path | None = None) -> None:
        self._public_url = public_url.rstrip("/")
        loaders: list[jinja2.BaseLoader] = []
        if override is not None:
            loaders.append(jinja2.FileSystemLoader(str(override)))
        loaders.append(jinja2.PackageLoader("authgate", "data/mail"))
        self._env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        self._env.globals["public_url"] = self._public_url
        self._env.globals["link"] = self.link

    def link(self, path: str, token: str | None = None) -> str:
        """``{public_url}{path}``, with ``token`` as its ``token`` query parameter."""
        if token is not None and not isinstance(token, str):
            raise MailError("a mail link needs its token as a string")
        url = self._public_url + path
        return url if token is None else f"{url}?token={quote(token, safe='')}"

    def render(self, kind: str, *, to: str, **context: Any) -> Message:
        """The message of ``kind`` for ``to``; MailError if a template is missing or broken."""
        if not _KIND.fullmatch(kind):
            raise MailError(f"{kind!r} is not a mail kind", kind=kind)
        context = {"to": to, "name": None, "ttl": None, **context}
        try:
            subject = self._env.get_template(f"{kind}.subject.txt").render(context)
            text = self._env.get_template(f"{kind}.txt").render(context)
            html = self._env.get_template(f"{kind}.html").render(context)
        except jinja2.TemplateError as exc:
            raise MailError(
                f"the {kind} mail cannot be rendered: {type(exc).__name__}", kind=kind
            ) from None
        return Message(to=to, subject=" ".join(subject.split()), text=text, html=html, kind=kind)


__all__ = [
    "KINDS",
    "ConsoleSender",
    "EmailSender",
    "MailQueue",
    "MailTemplates",
    "Message",
    "SmtpSender",
    "SmtpTarget",
    "WebhookSender",
    "webhook_key",
    "webhook_signature",
]
