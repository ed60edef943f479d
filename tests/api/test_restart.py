"""A restart on the same database and master key keeps everything; a wrong key refuses."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from _support.http import assert_problem, bearer
from _support.tokens import claims_of
from authgate.clock import FixedClock
from authgate.errors import ConfigurationError
from authgate.server.app import create_app
from authgate.settings import Settings
from authgate.wiring import new_master_key

from .conftest import ServerFactory
from .server import START, LiveServer, SleepRecorder, base_env


def test_restart_keeps_users_sessions_and_keys(make_server: ServerFactory, tmp_path: Path) -> None:
    folder = tmp_path / "db"
    key = new_master_key()
    clock = FixedClock(START)
    first = make_server(db_dir=folder, master_key=key, clock=clock)
    admin = first.make_admin()
    user = first.register("keep@example.com")
    jwks = first.http.get("/.well-known/jwks.json").json()
    keys = first.http.get("/admin/keys", headers=bearer(admin)).json()
    first.stop()
    with pytest.raises(httpx.ConnectError):  # the old port is closed
        httpx.get(first.url + "/healthz", timeout=5)

    clock.advance(30)
    second = make_server(db_dir=folder, master_key=key, clock=clock)
    assert second.url != ""
    assert second.db_path == first.db_path
    # The token issued before the restart verifies; so does the admin's.
    me = second.http.get("/auth/me", headers=bearer(user["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["email"] == "keep@example.com"
    assert second.http.get("/admin/keys", headers=bearer(admin)).json() == keys
    assert second.http.get("/.well-known/jwks.json").json() == jwks
    # The session survives: its refresh token rotates.
    r = second.http.post("/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert r.status_code == 200, r.text
    assert claims_of(r.json()["access_token"])["sid"] == claims_of(user["access_token"])["sid"]
    # The account survives: it logs in; the email is still taken.
    second.login("keep@example.com")
    assert_problem(
        second.http.post(
            "/auth/register", json={"email": "keep@example.com", "password": "another good one 12"}
        ),
        409,
        "email_taken",
    )


def test_restart_keeps_the_grace_window_answer(make_server: ServerFactory, tmp_path: Path) -> None:
    """The successor is derived from the master key, so a replay inside the grace window gets
    the same successor from a restarted server."""
    folder = tmp_path / "db"
    key = new_master_key()
    clock = FixedClock(START)
    first = make_server(db_dir=folder, master_key=key, clock=clock)
    user = first.register("grace@example.com")
    r = first.http.post("/auth/refresh", json={"refresh_token": user["refresh_token"]})
    successor = r.json()["refresh_token"]
    first.stop()
    second = make_server(db_dir=folder, master_key=key, clock=clock)
    clock.advance(2)
    r = second.http.post("/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert r.status_code == 200, r.text
    assert r.json()["refresh_token"] == successor


def test_revocations_survive_a_restart(make_server: ServerFactory, tmp_path: Path) -> None:
    folder = tmp_path / "db"
    key = new_master_key()
    clock = FixedClock(START)
    first = make_server(db_dir=folder, master_key=key, clock=clock)
    user = first.register("gone@example.com")
    assert first.http.post("/auth/logout", headers=bearer(user["access_token"])).status_code == 204
    first.stop()
    second = make_server(db_dir=folder, master_key=key, clock=clock)
    assert_problem(
        second.http.get("/auth/me", headers=bearer(user["access_token"])), 401, "invalid_token"
    )


def wrong_key_settings(tmp_path: Path) -> Settings:
    return Settings.from_env(base_env(tmp_path, master_key=new_master_key()), config_dir=tmp_path)


def test_wrong_master_key_refuses_to_start(make_server: ServerFactory, tmp_path: Path) -> None:
    folder = tmp_path / "db"
    first = make_server(db_dir=folder)
    first.register("someone@example.com")
    first.stop()
    before = folder.joinpath("authgate.db").read_bytes()

    live = LiveServer(wrong_key_settings(folder), clock=FixedClock(START), sleeps=SleepRecorder())
    with pytest.raises(RuntimeError, match="did not start") as exc:
        live.start()
    assert live.server.started is False
    assert isinstance(exc.value.__cause__, SystemExit)
    # Nothing was written: the stored keys were not replaced by new ones.
    with live.db() as db:
        kids = db.execute("SELECT kid, state FROM keys").fetchall()
    assert len(kids) == 4  # current and next, of ES256 and of RS256
    assert before  # the file is still there


@pytest.mark.anyio
async def test_wrong_master_key_lifespan_raises_configuration_error(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    folder = tmp_path / "db"
    first = make_server(db_dir=folder)
    first.stop()
    app = create_app(wrong_key_settings(folder), clock=FixedClock(START))
    with pytest.raises(ConfigurationError) as exc:
        async with app.router.lifespan_context(app):
            pytest.fail("the app started with a wrong master key")
    assert exc.value.code == "invalid_configuration"
    assert "master key" in exc.value.reason


@pytest.mark.anyio
async def test_missing_master_key_refuses_to_start(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    del env["AUTHGATE_MASTER_KEY"]
    app = create_app(Settings.from_env(env, config_dir=tmp_path), clock=FixedClock(START))
    with pytest.raises(ConfigurationError) as exc:
        async with app.router.lifespan_context(app):
            pytest.fail("the app started without a master key")
    assert exc.value.code == "invalid_configuration"
