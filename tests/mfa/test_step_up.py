"""Step-up at a real guard (RFC 9470): ``require(mfa=True)`` and ``require(max_auth_age=N)``
in FastAPI, ``flask_required(...)`` in Flask, against tokens from a live server."""

# No `from __future__ import annotations`: FastAPI evaluates the routes' annotations.

from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from flask import Flask, g

from _support.http import bearer
from _support.live import ThreadedServer
from authgate.guard import Guard, Principal
from lifecycle.conftest import eventually

from .conftest import Account, Server, claims, enrolled, guard_for, mfa_login

ADDRESS = "stepup@example.com"
MAX_AGE = 120


def fastapi_app(guard: Guard) -> FastAPI:
    app = FastAPI()

    @app.get("/any")
    async def any_token(p: Annotated[Principal, Depends(guard.require())]) -> dict[str, Any]:
        return {"sub": p.sub}

    @app.get("/mfa")
    async def mfa(p: Annotated[Principal, Depends(guard.require(mfa=True))]) -> dict[str, Any]:
        return {"sub": p.sub}

    @app.get("/recent")
    async def recent(
        p: Annotated[Principal, Depends(guard.require(max_auth_age=MAX_AGE))],
    ) -> dict[str, Any]:
        return {"sub": p.sub}

    @app.get("/both")
    async def both(
        p: Annotated[Principal, Depends(guard.require(mfa=True, max_auth_age=MAX_AGE))],
    ) -> dict[str, Any]:
        return {"sub": p.sub}

    return app


def flask_app(guard: Guard) -> Flask:
    app = Flask("stepup")

    @app.get("/any")
    @guard.flask_required()
    def any_token() -> dict[str, Any]:
        return {"sub": g.principal.sub}

    @app.get("/mfa")
    @guard.flask_required(mfa=True)
    def mfa() -> dict[str, Any]:
        return {"sub": g.principal.sub}

    @app.get("/recent")
    @guard.flask_required(max_auth_age=MAX_AGE)
    def recent() -> dict[str, Any]:
        return {"sub": g.principal.sub}

    @app.get("/both")
    @guard.flask_required(mfa=True, max_auth_age=MAX_AGE)
    def both() -> dict[str, Any]:
        return {"sub": g.principal.sub}

    return app


class Api:
    """GET with a bearer token, through either framework; (status, headers, body)."""

    def __init__(self, get: Any, guard: Guard, server: Server) -> None:
        self._get = get
        self.guard = guard
        self.server = server

    def __call__(self, path: str, token: str) -> tuple[int, dict[str, str], dict[str, Any]]:
        r = self._get(path, headers=bearer(token))
        headers = {k.lower(): v for k, v in r.headers.items()}
        body = r.json() if isinstance(r, httpx.Response) else r.get_json()
        return r.status_code, headers, body

    def advance(self, seconds: float) -> None:
        """Move the shared clock on, then wait until the guard's revocation feed has
        answered again on it (a guard fails closed on a feed it has not heard lately)."""
        self.server.clock.advance(seconds)

        def fresh() -> bool:
            staleness = self.guard.revocation_staleness
            return staleness is not None and staleness < 5

        eventually(fresh, what="the guard's feed after the clock moved")


@pytest.fixture(params=["fastapi", "flask"])
def api(request: pytest.FixtureRequest, server: Server) -> Iterator[Api]:
    guard = guard_for(server)
    try:
        if request.param == "fastapi":
            app = ThreadedServer(fastapi_app(guard), name="mfa-step-up-app").start()
            try:
                yield Api(app.http.get, guard, server)
            finally:
                app.stop()
        else:
            yield Api(flask_app(guard).test_client().get, guard, server)
    finally:
        guard.close_sync()


@pytest.fixture
def account(server: Server) -> Account:
    return enrolled(server, ADDRESS)


def assert_step_up(answer: tuple[int, dict[str, str], dict[str, Any]]) -> str:
    """An RFC 9470 refusal; the WWW-Authenticate value."""
    status, headers, body = answer
    assert status == 401, (status, body)
    value = headers["www-authenticate"]
    assert value.startswith("Bearer "), value
    assert 'error="insufficient_user_authentication"' in value, value
    # Starlette and Flask answer {"error": ...}; FastAPI's dependency {"detail": ...}.
    assert (body.get("error") or body.get("detail")) == "insufficient_user_authentication", body
    return value


def test_mfa_true_refuses_a_password_only_token_and_accepts_an_mfa_one(
    server: Server, api: Api, account: Account
) -> None:
    pwd_only = account.access_token
    assert claims(pwd_only)["amr"] == ["pwd"]
    assert api("/any", pwd_only)[0] == 200
    value = assert_step_up(api("/mfa", pwd_only))
    assert 'acr_values="mfa"' in value, value

    strong = mfa_login(server, account)["access_token"]
    status, _, body = api("/mfa", strong)
    assert status == 200, body
    assert body["sub"] == account.user_id


def test_max_auth_age_refuses_an_old_login_even_after_a_refresh(
    server: Server, api: Api, account: Account
) -> None:
    pair = mfa_login(server, account)
    assert api("/recent", pair["access_token"])[0] == 200
    assert api("/both", pair["access_token"])[0] == 200
    api.advance(MAX_AGE + 1)  # the guard shares the server's clock
    value = assert_step_up(api("/recent", pair["access_token"]))
    assert f'max_age="{MAX_AGE}"' in value, value
    assert_step_up(api("/both", pair["access_token"]))
    assert api("/mfa", pair["access_token"])[0] == 200

    # A refresh gives a new token, but not a newer login.
    r = server.http.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert r.status_code == 200, r.text
    refreshed = r.json()["access_token"]
    assert api("/any", refreshed)[0] == 200
    assert_step_up(api("/recent", refreshed))

    # A new login with both factors meets it again.
    again = mfa_login(server, account)["access_token"]
    assert api("/both", again)[0] == 200


def test_a_password_only_refresh_never_passes_mfa_true(
    server: Server, api: Api, account: Account
) -> None:
    r = server.http.post("/auth/refresh", json={"refresh_token": account.refresh_token})
    assert r.status_code == 200, r.text
    assert_step_up(api("/mfa", r.json()["access_token"]))
