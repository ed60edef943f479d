"""A small resource server behind a guard: a route for any valid token, and two routes that
need a verified email address (the FastAPI dependency, and the Starlette decorator on a
FastAPI endpoint)."""

# No `from __future__ import annotations`: FastAPI evaluates the routes' annotations.

from typing import Annotated, Any

from fastapi import Depends, FastAPI
from starlette.requests import Request

from authgate.guard import Guard, Principal


def guarded_app(guard: Guard) -> FastAPI:
    """The resource server."""
    app = FastAPI()

    @app.get("/me")
    async def me(p: Annotated[Principal, Depends(guard.require())]) -> dict[str, Any]:
        return {"sub": p.sub, "email_verified": p.claims.get("email_verified")}

    @app.get("/verified")
    async def verified(
        p: Annotated[Principal, Depends(guard.require(verified=True))],
    ) -> dict[str, Any]:
        return {"sub": p.sub}

    @app.get("/verified-decorated")
    @guard.starlette_required(verified=True)
    async def decorated(request: Request) -> dict[str, Any]:
        return {"sub": request.scope["user"].sub}

    return app
