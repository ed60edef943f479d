"""The authorization server goes down and comes back, with a resource server in front of a
guard: last good keys, fail closed after ``fail_closed_after`` s of feed staleness, then
recovery without a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from authgate.clock import FixedClock
from authgate.errors import InvalidToken
from authgate.wiring import new_master_key

from ._apps import fastapi_app
from ._support import AppServer, auth_server, bearer, eventually, free_port, make_guard

PASSWORD = "correct horse battery staple 42"
INVALID = 'Bearer error="invalid_token"'


def test_down_then_fail_closed_then_back(tmp_path: Path) -> None:
    clock = FixedClock(1_700_000_000.0)
    port, key = free_port(), new_master_key()
    with auth_server(tmp_path, clock=clock, port=port, master_key=key) as auth:
        creds = auth.new_client()
        token = auth.register("outage@example.com", PASSWORD)["access_token"]
        fresh_login = auth.login("outage@example.com", PASSWORD)["access_token"]
        guard = make_guard(auth, creds, feed_wait=1.0, feed_interval=0.05)
        app = AppServer(fastapi_app(guard, middleware=True))
        api = app.__enter__()
        try:
            assert api.get("/me", headers=bearer(token)).status_code == 200
            assert guard.revocation_staleness == 0

            auth.stop()  # --- the server is down -------------------------------------
            eventually(lambda: guard.feed is not None and guard.feed.failures > 0)
            # Keys at hand and a feed 30 s stale at most: tokens still pass, even new ones.
            clock.advance(30)
            assert api.get("/me", headers=bearer(token)).status_code == 200
            assert api.get("/me", headers=bearer(fresh_login)).status_code == 200
            # Past fail_closed_after: every token is refused, cached or not.
            clock.advance(1)
            for t in (token, fresh_login):
                r = api.get("/me", headers=bearer(t))
                assert (r.status_code, r.headers["www-authenticate"]) == (401, INVALID)
            staleness = guard.revocation_staleness
            assert staleness is not None
            assert staleness >= 31
            assert api.get("/public").status_code == 200  # anonymous routes go on

            # --- the same server comes back: tokens pass again, with no restart here.
            with auth_server(tmp_path, clock=clock, port=port, master_key=key) as again:
                eventually(lambda: guard.revocation_staleness == 0, bound=15)
                assert api.get("/me", headers=bearer(token)).status_code == 200
                # ...and revocations flow again.
                assert again.http.post("/auth/logout", headers=bearer(token)).status_code == 204
                eventually(lambda: api.get("/me", headers=bearer(token)).status_code == 401)
                assert api.get("/me", headers=bearer(fresh_login)).status_code == 200
                guard.close_sync()
        finally:
            app.__exit__(None, None, None)
            guard.close_sync()


def test_the_feed_refusing_the_client_later_fails_closed(tmp_path: Path) -> None:
    clock = FixedClock(1_700_000_000.0)
    with auth_server(tmp_path, clock=clock) as auth:
        creds = auth.new_client()
        admin = auth.make_admin()
        token = auth.register("refused@example.com", PASSWORD)["access_token"]
        guard = make_guard(auth, creds, feed_wait=0.5, feed_interval=0.05)
        try:
            guard.start_sync()
            assert guard.verify_sync(token).sub
            r = auth.http.delete(f"/admin/clients/{creds[0]}", headers=bearer(admin))
            assert r.status_code == 204
            eventually(lambda: guard.feed is not None and guard.feed.failures > 0)
            clock.advance(31)
            with pytest.raises(InvalidToken) as info:
                guard.verify_sync(token)
            assert type(info.value) is InvalidToken
            assert info.value.code == "invalid_token"
            assert info.value.context["condition"] == "revocation_unavailable"
            assert guard.feed is not None
            assert "401" in (guard.feed.last_error or "")
        finally:
            guard.close_sync()
