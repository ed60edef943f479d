"""The examples run as shipped: each one against a real authgate server, on a real app
server (uvicorn for FastAPI and Starlette, werkzeug for Flask)."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from authgate.clock import FixedClock

from ._support import AppServer, AuthServer, WsgiServer, auth_server, bearer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PASSWORD = "correct horse battery staple 42"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    # The examples' guards read the system clock: this server's clock starts at it.
    with auth_server(tmp_path_factory.mktemp("examples"), clock=FixedClock(time.time())) as s:
        yield s


@pytest.fixture(scope="module")
def tokens(live: AuthServer) -> dict[str, str]:
    async def setup() -> None:
        await live.services.directory.put_role("writer", ["posts:write"])
        await live.services.accounts.create_user("writer@example.com", PASSWORD, roles=["writer"])
        await live.services.accounts.create_user("reader@example.com", PASSWORD)

    live.call(setup())
    return {
        who: live.login(f"{who}@example.com", PASSWORD)["access_token"]
        for who in ("writer", "reader")
    }


def load(name: str, live: AuthServer, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    client_id, secret = live.new_client()
    monkeypatch.setenv("AUTHGATE_ISSUER", live.url)
    monkeypatch.setenv("AUTHGATE_AUDIENCE", "api")
    monkeypatch.setenv("AUTHGATE_CLIENT_ID", client_id)
    monkeypatch.setenv("AUTHGATE_CLIENT_SECRET", secret)
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["fastapi_app", "starlette_app", "flask_app"])
def test_example(
    name: str, live: AuthServer, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load(name, live, monkeypatch)
    server: Any = WsgiServer(module.app) if name == "flask_app" else AppServer(module.app)
    try:
        with server as http:
            assert http.get("/").status_code == 200
            r = http.get("/me")
            assert (r.status_code, r.headers["www-authenticate"]) == (401, "Bearer")
            r = http.get("/me", headers=bearer("not.a.token"))
            assert (r.status_code, r.headers["www-authenticate"]) == (
                401,
                'Bearer error="invalid_token"',
            )
            assert http.get("/me", headers=bearer(tokens["reader"])).status_code == 200
            r = http.post("/posts", headers=bearer(tokens["reader"]))
            assert r.status_code == 403
            assert r.headers["www-authenticate"] == (
                'Bearer error="insufficient_scope", scope="posts:write"'
            )
            r = http.post("/posts", headers=bearer(tokens["writer"]))
            assert r.status_code == 200, r.text
            assert (
                r.json()["written_by"]
                == http.get("/me", headers=bearer(tokens["writer"])).json()["sub"]
            )
    finally:
        module.guard.close_sync()
