"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from authgate.errors import StorageUnavailable
from authgate.server.deps import Svc, metrics

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        503: {"description": "The database does not answer", "content": {"application/json": {}}}
    },
)
async def readyz(svc: Svc) -> JSONResponse:
    """The database answers."""
    try:
        await svc.storage.ping()
    except StorageUnavailable:
        return JSONResponse(
            {"status": "unavailable"}, status_code=503, headers={"Retry-After": "1"}
        )
    return JSONResponse({"status": "ok"})


@router.get("/metrics", response_class=PlainTextResponse)
async def prometheus(request: Request, svc: Svc) -> Response:
    """Prometheus exposition."""
    m = metrics(request)
    m.hash_in_flight.set(svc.hasher.in_flight)
    return Response(m.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
