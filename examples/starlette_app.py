"""A Starlette API protected by authgate's pure-ASGI middleware.

    export AUTHGATE_CLIENT_ID=... AUTHGATE_CLIENT_SECRET=...   # see fastapi_app.py
    uvicorn examples.starlette_app:app --port 8002

``request.user`` is the Principal (or Starlette's UnauthenticatedUser), ``request.auth`` its
permissions; Starlette's own ``@requires("authenticated")`` works as well.
"""

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from authgate.guard import Guard

guard = Guard(
    issuer=os.environ.get("AUTHGATE_ISSUER", "http://127.0.0.1:8000"),
    audience=os.environ.get("AUTHGATE_AUDIENCE", "authgate"),
    client_id=os.environ["AUTHGATE_CLIENT_ID"],
    client_secret=os.environ["AUTHGATE_CLIENT_SECRET"],
)


async def public(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "anyone", "logged_in": request.user.is_authenticated})


@guard.starlette_required()
async def me(request: Request) -> JSONResponse:
    return JSONResponse({"sub": request.user.identity, "permissions": request.auth.scopes})


@guard.starlette_required("posts:write")
async def write(request: Request) -> JSONResponse:
    return JSONResponse({"written_by": request.user.identity})


app = Starlette(
    routes=[
        Route("/", public),
        Route("/me", me),
        Route("/posts", write, methods=["POST"]),
    ]
)
app.add_middleware(guard.asgi_middleware)
