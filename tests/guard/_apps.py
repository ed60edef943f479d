"""The same small resource server on each framework: a public route, a route for any valid
token, a read route (posts:read), a write route (posts:write) and an admin-role route."""

# No `from __future__ import annotations`: FastAPI evaluates the routes' annotations, and
# they name the local `guard`.

from typing import Annotated, Any

from fastapi import Depends, FastAPI
from flask import Flask, g
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from authgate.guard import Guard, Principal
from authgate.guard.flask import FlaskGuard


def who(p: Principal) -> dict[str, Any]:
    return {
        "sub": p.sub,
        "sid": p.sid,
        "roles": list(p.roles),
        "permissions": sorted(p.permissions),
        "client_id": p.client_id,
    }


def fastapi_app(guard: Guard, *, middleware: bool = False) -> FastAPI:
    """FastAPI with the dependency (and, optionally, the ASGI middleware too)."""
    app = FastAPI()
    if middleware:
        app.add_middleware(guard.asgi_middleware)

    @app.get("/public")
    async def public(request: Request) -> dict[str, Any]:
        user = request.scope.get("user")  # set only by the middleware
        return {"ok": True, "authenticated": getattr(user, "is_authenticated", None)}

    @app.get("/me")
    async def me(p: Annotated[Principal, Depends(guard.require())]) -> dict[str, Any]:
        return who(p)

    @app.get("/posts")
    async def read(p: Annotated[Principal, Depends(guard.require("posts:read"))]) -> dict[str, Any]:
        return who(p)

    @app.post("/posts")
    async def write(
        p: Annotated[Principal, Depends(guard.require("posts:write"))],
    ) -> dict[str, Any]:
        return who(p)

    @app.get("/decorated")
    @guard.starlette_required("posts:read")
    async def decorated(request: Request) -> dict[str, Any]:
        # The decorator on a FastAPI endpoint: no dependency, the same RFC 6750 answers.
        return who(request.scope["user"])

    @app.get("/admin")
    async def admin(
        p: Annotated[Principal, Depends(guard.require(roles=["admin"]))],
    ) -> dict[str, Any]:
        return who(p)

    return app


def starlette_app(guard: Guard) -> Starlette:
    """Starlette with the pure-ASGI middleware: the guard's decorator on most routes, and
    Starlette's own ``requires`` on one (``request.user`` / ``request.auth`` compatibility)."""

    async def public(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "authenticated": request.user.is_authenticated})

    @guard.starlette_required()
    async def me(request: Request) -> JSONResponse:
        return JSONResponse(who(request.user))

    @guard.starlette_required("posts:read")
    async def read(request: Request) -> JSONResponse:
        return JSONResponse(who(request.user))

    @guard.starlette_required("posts:write")
    def write(request: Request) -> JSONResponse:  # a sync endpoint, run in the threadpool
        return JSONResponse(who(request.user))

    @guard.starlette_required(roles=["admin"])
    async def admin(request: Request) -> JSONResponse:
        return JSONResponse(who(request.user))

    @requires(["authenticated", "posts:read"])
    async def starlette_requires(request: Request) -> JSONResponse:
        return JSONResponse({"scopes": sorted(request.auth.scopes), "sub": request.user.identity})

    app = Starlette(
        routes=[
            Route("/public", public),
            Route("/me", me),
            Route("/posts", read, methods=["GET"]),
            Route("/posts", write, methods=["POST"]),
            Route("/admin", admin),
            Route("/starlette-requires", starlette_requires),
        ]
    )
    app.add_middleware(guard.asgi_middleware)
    return app


def flask_app(guard: Guard) -> Flask:
    """Flask with the extension (every request with a token is authenticated) and the
    decorator."""
    app = Flask(__name__)
    FlaskGuard(guard, app)

    @app.get("/public")
    def public() -> dict[str, Any]:
        return {"ok": True, "authenticated": g.principal is not None}

    @app.get("/me")
    @guard.flask_required()
    def me() -> dict[str, Any]:
        return who(g.principal)

    @app.get("/posts")
    @guard.flask_required("posts:read")
    def read() -> dict[str, Any]:
        return who(g.principal)

    @app.post("/posts")
    @guard.flask_required("posts:write")
    def write() -> dict[str, Any]:
        return who(g.principal)

    @app.get("/admin")
    @guard.flask_required(roles=["admin"])
    def admin() -> dict[str, Any]:
        return who(g.principal)

    return app
