"""The in-flight limit: past it, requests get a quick 503 with Retry-After; probes never do."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from authgate.server.metrics import Metrics
from authgate.server.middleware import HardeningMiddleware


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_requests_past_the_limit_are_shed_and_probes_are_not() -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    async def slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            entered.set()
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    metrics = Metrics()
    app = HardeningMiddleware(slow_app, max_body=1024, metrics=metrics, max_in_flight=1)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        first = asyncio.create_task(client.get("/slow"))
        await entered.wait()
        shed = await client.get("/other")
        assert shed.status_code == 503
        assert shed.headers["retry-after"] == "1"
        assert shed.headers["content-type"] == "application/problem+json"
        assert shed.json()["code"] == "overloaded"
        for probe in ("/healthz", "/readyz", "/metrics", "/auth/revocations"):
            assert (await client.get(probe)).status_code == 200
        release.set()
        assert (await first).status_code == 200
        assert (await client.get("/other")).status_code == 200  # the slot is free again
    assert app.in_flight == 0
    assert metrics.shed._value.get() == 1
