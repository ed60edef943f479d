"""FastAPI's automatic OpenTelemetry export is off: a tracer a host installs never sees a
request of authgate's, whose mailed links carry their one-time token in the query string.
A plain FastAPI app, on the same tracer, is the control: it does export the query."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace

from .server import running_server

LINK_TOKEN = "tok_" + "s3cret" * 6


class _RecordingTracer(trace.Tracer):
    def __init__(self, spans: list[Mapping[str, Any]]) -> None:
        self._spans = spans

    def start_span(self, name: str, *args: Any, **kwargs: Any) -> trace.Span:
        self._spans.append(dict(kwargs.get("attributes") or {}, name=name))
        return trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)

    def start_as_current_span(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return trace.use_span(self.start_span(name, *args, **kwargs), end_on_exit=True)


class _RecordingProvider(trace.TracerProvider):
    """A host's tracer provider: it records every span started, with its attributes."""

    def __init__(self) -> None:
        self.spans: list[Mapping[str, Any]] = []

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _RecordingTracer(self.spans)


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> _RecordingProvider:
    recording = _RecordingProvider()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: recording)
    return recording


def test_a_plain_fastapi_app_exports_the_query_to_the_hosts_tracer(
    provider: _RecordingProvider,
) -> None:
    app = FastAPI()

    @app.get("/reset-password")
    async def page() -> dict[str, bool]:
        return {"ok": True}

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            return await client.get(f"/reset-password?token={LINK_TOKEN}")

    response = asyncio.run(get())
    assert response.status_code == 200
    assert any(LINK_TOKEN in str(span.get("url.query")) for span in provider.spans)


def test_authgate_starts_no_span_on_the_hosts_tracer(
    provider: _RecordingProvider, tmp_path: Path
) -> None:
    with running_server(tmp_path) as live:
        response = live.http.get(f"/reset-password?token={LINK_TOKEN}")
    assert response.status_code == 200
    assert LINK_TOKEN in response.text  # the page read the token: the request ran whole
    assert provider.spans == []
