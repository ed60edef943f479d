"""FastAPI's automatic OpenTelemetry export is off: the tracer, meter and logger providers a
host installs never see a request of authgate's, whose mailed links carry their one-time
token in the query string. A plain FastAPI app, on the same providers, is the control: it
exports the query in its span, and asks for a meter and a logger."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import _logs, metrics, trace

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


class _RecordingMeters(metrics.MeterProvider):
    """A host's meter provider: it records every meter asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def get_meter(self, name: str, *args: Any, **kwargs: Any) -> metrics.Meter:
        self.asked.append(name)
        return metrics.NoOpMeter(name)


class _RecordingLoggers(_logs.LoggerProvider):
    """A host's logger provider: it records every logger asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def get_logger(self, name: str, *args: Any, **kwargs: Any) -> _logs.Logger:
        self.asked.append(name)
        return _logs.NoOpLogger(name)


@dataclass
class _Host:
    """The OpenTelemetry providers a host installed in the process."""

    tracer: _RecordingProvider
    meters: _RecordingMeters
    loggers: _RecordingLoggers


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> _Host:
    host = _Host(_RecordingProvider(), _RecordingMeters(), _RecordingLoggers())
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: host.tracer)
    monkeypatch.setattr(metrics, "get_meter_provider", lambda: host.meters)
    monkeypatch.setattr(_logs, "get_logger_provider", lambda: host.loggers)
    # A logger is asked of the global provider inside the API: route that call here too.
    monkeypatch.setattr(_logs, "get_logger", lambda name, *_, **__: host.loggers.get_logger(name))
    return host


def test_a_plain_fastapi_app_exports_the_query_to_the_hosts_providers(
    host: _Host,
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
    assert any(LINK_TOKEN in str(span.get("url.query")) for span in host.tracer.spans)
    assert host.meters.asked  # the request metrics
    assert host.loggers.asked  # the request logs


def test_no_provider_of_the_host_sees_a_request_of_authgates(host: _Host, tmp_path: Path) -> None:
    with running_server(tmp_path) as live:
        response = live.http.get(f"/reset-password?token={LINK_TOKEN}")
    assert response.status_code == 200
    assert LINK_TOKEN in response.text  # the page read the token: the request ran whole
    assert host.tracer.spans == []
    assert host.meters.asked == []
    assert host.loggers.asked == []
