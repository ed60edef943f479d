"""WebhookSender against a real HTTP server (http.server in a thread) that checks the
Standard Webhooks signature with its own code."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from authgate.clock import FixedClock
from authgate.errors import MailError
from authgate.service.mail import MailTemplates, WebhookSender
from authgate.settings import Settings
from authgate.wiring import build_sender

pytestmark = pytest.mark.anyio

KEY = secrets.token_bytes(32)
WHSEC = "whsec_" + base64.b64encode(KEY).decode()
TOKEN = "tok-Webhook_42"


@dataclass
class Receiver:
    """What the webhook server verified (or refused)."""

    key: bytes
    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)

    def verify(self, headers: dict[str, str], body: bytes) -> bool:
        """The receiving side of Standard Webhooks, written from the specification."""
        msg_id = headers.get("webhook-id", "")
        timestamp = headers.get("webhook-timestamp", "")
        signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
        expected = base64.b64encode(hmac.new(self.key, signed, hashlib.sha256).digest())
        for candidate in headers.get("webhook-signature", "").split(" "):
            version, _, signature = candidate.partition(",")
            if version == "v1" and hmac.compare_digest(signature.encode(), expected):
                return True
        return False


@pytest.fixture
def receiver() -> Iterator[tuple[str, Receiver]]:
    state = Receiver(KEY)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            headers = {k.lower(): v for k, v in self.headers.items()}
            state.headers.append(headers)
            if state.verify(headers, body):
                state.accepted.append(json.loads(body))
                self.send_response(204)
            else:
                state.refused += 1
                self.send_response(401)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/mail", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _message() -> Any:
    return MailTemplates(public_url="https://id.example.com").render(
        "verify_email", to="ada@example.com", token=TOKEN, name="Ada"
    )


async def test_webhook_signature_verifies_with_a_whsec_secret(
    receiver: tuple[str, Receiver], tmp_path: Path
) -> None:
    url, state = receiver
    settings = Settings.from_env(
        {
            "AUTHGATE_EMAIL": "webhook",
            "AUTHGATE_EMAIL_WEBHOOK_URL": url,
            "AUTHGATE_EMAIL_WEBHOOK_SECRET": WHSEC,
            "AUTHGATE_EMAIL_FROM": "no-reply@example.com",
        },
        config_dir=tmp_path,
    )
    clock = FixedClock(1_700_000_123.0)
    sender = build_sender(settings, clock=clock)
    assert isinstance(sender, WebhookSender)
    await sender.send(_message())
    assert state.refused == 0
    [payload] = state.accepted
    assert state.headers[0]["webhook-timestamp"] == "1700000123"
    assert state.headers[0]["webhook-id"].startswith("msg_")
    assert payload["type"] == "email.send"
    data = payload["data"]
    assert (data["from"], data["to"], data["kind"]) == (
        "no-reply@example.com",
        "ada@example.com",
        "verify_email",
    )
    link = f"https://id.example.com/verify-email?token={TOKEN}"
    assert link in data["text"]
    assert link in data["html"]


async def test_webhook_raw_secret_is_the_hmac_key(receiver: tuple[str, Receiver]) -> None:
    url, state = receiver
    raw = "raw-webhook-secret-0123456789-abcdefghijkl"
    state.key = raw.encode()
    await WebhookSender(url=url, secret=raw, sender="a@example.com").send(_message())
    assert len(state.accepted) == 1


async def test_webhook_wrong_secret_is_refused_by_the_receiver_and_raises(
    receiver: tuple[str, Receiver],
) -> None:
    url, state = receiver
    other = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    with pytest.raises(MailError) as caught:
        await WebhookSender(url=url, secret=other, sender="a@example.com").send(_message())
    assert caught.value.context["status"] == 401
    assert state.refused == 1
    assert state.accepted == []
