"""MailQueue: enqueue never waits; retries with backoff on the injected sleep; every
failure and every drop is audited (never the body or the token) and counted in /metrics."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from _support.live import free_port
from authgate.server.metrics import Metrics
from authgate.service.mail import MailQueue, MailTemplates, Message, SmtpSender
from authgate.storage.sql.store import SqlStorage

from .conftest import SmtpServer, make_audit

pytestmark = pytest.mark.anyio

TOKEN = "secret-token-Zq81_x"


@dataclass
class SleepRecorder:
    """The injected sleep: records the delays asked for and returns at once."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def _message(to: str = "ada@example.com") -> Message:
    return MailTemplates(public_url="https://id.example.com").render(
        "reset_password", to=to, token=TOKEN, name="Ada"
    )


def _metric(metrics: Metrics, line: str) -> bool:
    return line in metrics.render().decode().splitlines()


async def test_mail_failure_smtp_down_retries_then_audits_and_counts(
    audit_store: SqlStorage,
) -> None:
    sleeps = SleepRecorder()
    metrics = Metrics()
    sender = SmtpSender(url=f"smtp://127.0.0.1:{free_port()}", sender="a@example.com")
    queue = MailQueue(sender, audit=make_audit(audit_store), attempts=3, backoff=1.5, sleep=sleeps)
    queue.listeners.append(metrics.on_mail)
    queue.start()

    started = time.perf_counter()
    accepted = queue.enqueue(_message())
    elapsed = time.perf_counter() - started
    assert accepted is True
    assert queue.size == 1  # queued, not sent: enqueue did not wait for the worker
    assert elapsed < 0.05

    await queue.close(deadline=30)
    assert sleeps.delays == [1.5, 3.0]
    [row] = await audit_store.query_audit(event="mail_failed")
    assert row.detail["kind"] == "reset_password"
    assert row.detail["attempts"] == 3
    assert row.detail["error"]
    stored = repr(row)
    assert TOKEN not in stored
    assert "ada@example.com" not in stored
    assert _metric(metrics, 'authgate_mail_failures_total{reason="failed"} 1.0')
    assert _metric(metrics, "authgate_mail_sent_total 0.0")


async def test_mail_queue_sends_and_counts(smtp_plain: SmtpServer, audit_store: SqlStorage) -> None:
    metrics = Metrics()
    sender = SmtpSender(url=f"smtp://127.0.0.1:{smtp_plain.port}", sender="a@example.com")
    queue = MailQueue(sender, audit=make_audit(audit_store), sleep=SleepRecorder())
    queue.listeners.append(metrics.on_mail)
    queue.start()
    assert queue.enqueue(_message("one@example.com"))
    assert queue.enqueue(_message("two@example.com"))
    await queue.close(deadline=30)
    assert sorted(m["To"] for m in smtp_plain.recorder.messages()) == [
        "one@example.com",
        "two@example.com",
    ]
    assert _metric(metrics, "authgate_mail_sent_total 2.0")
    assert await audit_store.query_audit(event="mail_failed") == []


@dataclass
class GatedSender:
    """A sender that waits for ``gate`` before accepting each message: it holds the worker
    busy so that the queue fills."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    busy: asyncio.Event = field(default_factory=asyncio.Event)
    sent: list[Message] = field(default_factory=list)

    async def send(self, message: Message) -> None:
        self.busy.set()
        await self.gate.wait()
        self.sent.append(message)


async def test_mail_queue_bound_full_queue_drops_and_audits(audit_store: SqlStorage) -> None:
    metrics = Metrics()
    sender = GatedSender()
    queue = MailQueue(sender, audit=make_audit(audit_store), maxsize=2, sleep=SleepRecorder())
    queue.listeners.append(metrics.on_mail)
    queue.start()

    assert queue.enqueue(_message("first@example.com"))
    await asyncio.wait_for(sender.busy.wait(), 10)  # the worker holds the first one
    assert queue.enqueue(_message("second@example.com"))
    assert queue.enqueue(_message("third@example.com"))
    assert queue.enqueue(_message("fourth@example.com")) is False  # the bound: 2 waiting

    sender.gate.set()
    await queue.close(deadline=30)
    assert [m.to for m in sender.sent] == [
        "first@example.com",
        "second@example.com",
        "third@example.com",
    ]
    [row] = await audit_store.query_audit(event="mail_dropped")
    assert row.detail == {"kind": "reset_password", "reason": "queue_full"}
    assert _metric(metrics, 'authgate_mail_failures_total{reason="dropped"} 1.0')
    assert _metric(metrics, "authgate_mail_sent_total 3.0")


async def test_mail_queue_close_deadline_drops_what_is_left(audit_store: SqlStorage) -> None:
    sender = GatedSender()  # never opened: the worker stays busy
    queue = MailQueue(sender, audit=make_audit(audit_store), maxsize=5, sleep=SleepRecorder())
    queue.start()
    queue.enqueue(_message("first@example.com"))
    await asyncio.wait_for(sender.busy.wait(), 10)
    queue.enqueue(_message("second@example.com"))
    await queue.close(deadline=0.05)
    rows = await audit_store.query_audit(event="mail_dropped")
    # The one in the sender's hands and the one still waiting.
    assert [r.detail["reason"] for r in rows] == ["shutdown", "shutdown"]
    assert queue.enqueue(_message("late@example.com")) is False
    await queue.close(deadline=0.05)  # closing twice is harmless; the late drop is audited
    rows = await audit_store.query_audit(event="mail_dropped")
    assert [r.detail["reason"] for r in rows] == ["shutdown", "shutdown", "closed"]
