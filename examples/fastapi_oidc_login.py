"""A FastAPI app with "Log in with authgate": Authlib's OpenID Connect client, the
authorization code flow with PKCE (S256), the ID token checked with its nonce.

    authgate serve                                   # the OpenID provider, :8000
    authgate clients add myapp --redirect-uri http://127.0.0.1:8001/callback --public --first-party
    export AUTHGATE_CLIENT_ID=...                    # from the line above
    export APP_SESSION_SECRET=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')
    uvicorn examples.fastapi_oidc_login:app --port 8001

A confidential client also sets AUTHGATE_CLIENT_SECRET. Open http://127.0.0.1:8001/ and
click "Log in with authgate": the hosted login page (with MFA and passkeys) does the rest.
"""

from __future__ import annotations

import html
import os
from typing import Any

from authlib.integrations.starlette_client import OAuth
from fastapi import FastAPI, Request
from starlette.middleware.sessions import SessionMiddleware
from starlette.responses import HTMLResponse, RedirectResponse


def create_app(
    *,
    issuer: str,
    client_id: str,
    session_secret: str,
    client_secret: str | None = None,
) -> FastAPI:
    """The relying party: ``/`` shows who is logged in, ``/login`` starts the code flow,
    ``/callback`` finishes it."""
    oauth = OAuth()
    client_kwargs: dict[str, Any] = {
        "scope": "openid profile email",
        "code_challenge_method": "S256",
    }
    if client_secret is None:
        client_kwargs["token_endpoint_auth_method"] = "none"  # noqa: S105 (a method name)
    oauth.register(
        "authgate",
        server_metadata_url=f"{issuer}/.well-known/openid-configuration",
        client_id=client_id,
        client_secret=client_secret,
        client_kwargs=client_kwargs,
    )
    app = FastAPI(title="relying party")
    app.add_middleware(SessionMiddleware, secret_key=session_secret, https_only=False)

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> str:
        user = request.session.get("user")
        if user is None:
            return '<a href="/login" id="login">Log in with authgate</a>'
        return f'<p id="who">Hello, {html.escape(str(user.get("email")))}</p>'

    @app.get("/login")
    async def login(request: Request) -> Any:
        return await oauth.authgate.authorize_redirect(request, str(request.url_for("callback")))

    @app.get("/callback")
    async def callback(request: Request) -> RedirectResponse:
        token = await oauth.authgate.authorize_access_token(request)
        request.session["user"] = dict(token["userinfo"])  # the checked ID token's claims
        request.session["id_token"] = token["id_token"]
        return RedirectResponse("/", status_code=303)

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        return {"user": request.session.get("user")}

    return app


def _from_env() -> FastAPI:
    return create_app(
        issuer=os.environ.get("AUTHGATE_ISSUER", "http://127.0.0.1:8000"),
        client_id=os.environ["AUTHGATE_CLIENT_ID"],
        client_secret=os.environ.get("AUTHGATE_CLIENT_SECRET"),
        session_secret=os.environ["APP_SESSION_SECRET"],
    )


def __getattr__(name: str) -> FastAPI:
    # ``uvicorn examples.fastapi_oidc_login:app``: built on first use, from the environment.
    if name == "app":
        return _from_env()
    raise AttributeError(name)
