"""Liveness, readiness and metrics."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials

from authgate.errors import InvalidToken, NotFound, StorageUnavailable
from authgate.server.deps import Svc, bearer_scheme, bearer_token, metrics
from authgate.server.routing import PrefixRouter
from authgate.server.schemas import problem_responses
from authgate.wiring import Services

router = PrefixRouter(tags=["ops"])


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


def _check_metrics_access(request: Request, svc: Services) -> None:
    """With AUTHGATE_METRICS_TOKEN, /metrics needs it as a Bearer token (401 otherwise).
    Without one it is open in development and absent (404) in production."""
    expected = svc.settings.metrics_token
    if expected is None:
        if svc.settings.is_production:
            raise NotFound("metrics are off: production serves them with AUTHGATE_METRICS_TOKEN")
        return
    presented = bearer_token(request)
    if not hmac.compare_digest(presented.encode("utf-8"), expected.reveal().encode("utf-8")):
        raise InvalidToken("wrong metrics token")


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses=problem_responses(401, 404),
)
async def prometheus(
    request: Request,
    svc: Svc,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Response:
    """Prometheus exposition. With AUTHGATE_METRICS_TOKEN set, send it as a Bearer token;
    without one, production answers 404."""
    _check_metrics_access(request, svc)
    m = metrics(request)
    m.hash_in_flight.set(svc.hasher.in_flight)
    return Response(m.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
