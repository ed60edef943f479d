"""A FastAPI API protected by authgate.

    authgate serve                                   # the authorization server, :8000
    authgate roles add writer --permission posts:write
    authgate users add me@example.com --role writer
    authgate clients add api --scope authgate:revocations   # prints client_id and secret
    export AUTHGATE_CLIENT_ID=... AUTHGATE_CLIENT_SECRET=...
    uvicorn examples.fastapi_app:app --port 8001

Then ``/docs`` has an "Authorize" button: paste an access token from ``POST /auth/login``.
"""

import os
from typing import Annotated

from fastapi import Depends, FastAPI

from authgate.guard import Guard, Principal

guard = Guard(
    issuer=os.environ.get("AUTHGATE_ISSUER", "http://127.0.0.1:8000"),
    audience=os.environ.get("AUTHGATE_AUDIENCE", "authgate"),
    client_id=os.environ["AUTHGATE_CLIENT_ID"],
    client_secret=os.environ["AUTHGATE_CLIENT_SECRET"],
)
app = FastAPI(title="posts")
app.add_middleware(guard.asgi_middleware)  # starts and stops the guard with the app


@app.get("/")
async def public() -> dict[str, str]:
    return {"hello": "anyone"}


LoggedIn = Annotated[Principal, Depends(guard.require())]
Writer = Annotated[Principal, Depends(guard.require("posts:write"))]


@app.get("/me")
async def me(user: LoggedIn) -> dict[str, object]:
    return {"sub": user.sub, "roles": list(user.roles), "permissions": sorted(user.permissions)}


@app.post("/posts")
async def write(user: Writer) -> dict[str, str]:
    return {"written_by": user.sub}
