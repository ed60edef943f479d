"""create_app(settings): the FastAPI application factory. The lifespan opens the stores."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from authgate.clock import Clock
from authgate.errors import AuthgateError, InvalidJSON
from authgate.server.intake import AllowedHostsMiddleware, StrictJSONMiddleware
from authgate.server.metrics import Metrics
from authgate.server.middleware import HardeningMiddleware, ScopedCORSMiddleware
from authgate.server.problems import error_response, oauth_error, problem
from authgate.server.routes import (
    admin,
    auth,
    docs,
    lifecycle,
    mfa,
    oauth2,
    oidc,
    ops,
    passkeys,
    wellknown,
)
from authgate.server.routing import check_unprefixed
from authgate.server.schemas import OAuthError, Problem
from authgate.settings import Settings
from authgate.web import mount as mount_pages
from authgate.wiring import Services, open_services

log = logging.getLogger("authgate.server")
MAINTENANCE_INTERVAL = 60.0


async def _maintain(svc: Services, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await svc.keyring.maintain()
            await svc.revocations.purge()
            await svc.clients.purge()
            await svc.links.purge()
            await svc.mfa.purge()
            await svc.passkeys.purge()
            await svc.web_logins.purge()
            await svc.oidc.purge()
        except AuthgateError as exc:
            log.warning("maintenance failed: %s", exc.code)


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    maintenance_interval: float = MAINTENANCE_INTERVAL,
) -> FastAPI:
    """Build the auth server for ``settings``; the database opens in the lifespan."""
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_services(settings, clock=clock, sleep=sleep) as svc:
            await svc.keyring.maintain()
            svc.audit.listeners.append(metrics.on_audit)
            svc.fallback_listeners.append(metrics.on_redis_fallback)
            svc.mail.listeners.append(metrics.on_mail)
            app.state.services = svc
            task = asyncio.create_task(_maintain(svc, maintenance_interval))
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title="authgate",
        version="0.1.0",
        description="JWT authentication done right: accounts, token pairs, revocation, keys.",
        lifespan=lifespan,
        # The docs are served from the package's own assets (routes/docs.py), or not at all.
        openapi_url=docs.OPENAPI_PATH if settings.docs_enabled else None,
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        # A slash redirect would build its Location from the request: every path is exact.
        redirect_slashes=False,
        # FastAPI's own OpenTelemetry export stays off: it would hand each request's URL to
        # whatever tracer a host set up, query included (the mailed links carry their
        # one-time token there, and it redacts only cloud-storage signatures), and it asks
        # the providers on every request. authgate's metrics are its /metrics endpoint.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.metrics = metrics
    # FastAPI matches a request against each included router's routes in turn (no two
    # paths overlap, so the order decides only the cost). Each router is a PrefixRouter,
    # which turns away a path outside its routes' prefixes in one test; among the routers
    # that share /auth the token paths come first, and the admin API comes last.
    app.include_router(auth.router)
    app.include_router(oauth2.router)
    app.include_router(oidc.router)
    app.include_router(wellknown.router)
    app.include_router(lifecycle.router)
    app.include_router(mfa.router)
    app.include_router(passkeys.router)
    app.include_router(admin.router)
    app.include_router(ops.router)
    if settings.docs_enabled:
        app.include_router(docs.router)
    mount_pages(app, settings)
    check_unprefixed(app.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            # The error bodies every route documents by reference.
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components["Problem"] = Problem.model_json_schema()
            components["OAuthError"] = OAuthError.model_json_schema()
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(AuthgateError)
    async def _authgate_error(request: Request, exc: AuthgateError) -> Response:
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        bad_json = any(err.get("type") == "json_invalid" for err in exc.errors())
        if request.url.path.startswith("/oauth2/"):
            return oauth_error(400, "invalid_request")
        fields = sorted({".".join(str(p) for p in err.get("loc", ())[1:]) for err in exc.errors()})
        if bad_json:
            return error_response(request, InvalidJSON("the body is not valid JSON"))
        return problem(422, "validation_error", "The request is invalid", extra={"fields": fields})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        code = codes.get(exc.status_code, "http_error")
        return problem(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem(500, "internal_error", "Internal error")

    # Innermost first: add_middleware wraps what is there. The JSON gate sits inside the
    # body-size cap; the Host gate comes before CORS, so a preflight is checked too.
    app.add_middleware(StrictJSONMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            ScopedCORSMiddleware,
            credentials=settings.cookie_mode,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            # The cookie mode's requests send cookies and its two headers (README: "Browser
            # sessions"); the origins are an explicit list ('*' is refused).
            allow_headers=[
                "Authorization",
                "Content-Type",
                *(["Authgate-Token-Delivery", "X-CSRF-Token"] if settings.cookie_mode else []),
            ],
            max_age=600,
        )
    app.add_middleware(AllowedHostsMiddleware, allowed_hosts=settings.host_names)
    app.add_middleware(
        HardeningMiddleware,
        max_body=settings.max_body_bytes,
        metrics=metrics,
        max_in_flight=settings.max_in_flight,
        body_timeout=settings.body_timeout,
    )
    return app


def app_from_environ() -> FastAPI:
    """The factory uvicorn calls in each worker: settings from the environment and the
    config file named by AUTHGATE_CONFIG (or ./authgate.toml)."""
    import os

    from authgate import logs

    settings = Settings.load(config=os.environ.get("AUTHGATE_CONFIG"))
    logs.configure(settings.log_format)
    return create_app(settings)
