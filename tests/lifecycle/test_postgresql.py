"""The flows whose correctness rests on the database's transactions, on PostgreSQL: the
whole story, a raced reset link, a reset link after a password change, a confirmation
that meets a unique-address conflict, and the email change. The server migrates a schema
of its own (``ag_<random>``) on the test server, dropped afterwards; without PostgreSQL
these are skipped, or fail with AUTHGATE_REQUIRE_SERVICES=1."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from _support.services import postgres_dsn, postgres_url, run_in_thread, unavailable

from . import test_email_change, test_links, test_story
from .conftest import Server, Smtp, running


async def _admin(url: str, sql: str) -> None:
    import asyncpg

    conn: Any = await asyncpg.connect(postgres_dsn(url), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema on the test PostgreSQL server; the URL that selects it."""
    url = postgres_url()
    schema = "ag_" + secrets.token_hex(6)
    try:
        run_in_thread(_admin(url, f"CREATE SCHEMA {schema}"))
    except Exception as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        unavailable(f"PostgreSQL at {shown} is unavailable ({type(exc).__name__}: {exc})")
    try:
        yield (
            make_url(url)
            .update_query_dict({"search_path": schema})
            .render_as_string(hide_password=False)
        )
    finally:
        run_in_thread(_admin(url, f"DROP SCHEMA {schema} CASCADE"))


@pytest.fixture
def pg(tmp_path: Path, smtp: Smtp, pg_url: str) -> Iterator[Server]:
    """authgate on PostgreSQL, mailing through the STARTTLS SMTP server."""
    with running(tmp_path, **smtp.env(), AUTHGATE_DATABASE_URL=pg_url) as live:
        assert live.settings.database_url.startswith("postgresql")
        yield live


def test_the_story_on_postgresql(pg: Server, smtp: Smtp) -> None:
    test_story.test_register_verify_forget_reset_and_every_old_session_dies(pg, smtp)


def test_a_raced_reset_link_on_postgresql(pg: Server, smtp: Smtp) -> None:
    test_links.test_a_reset_link_raced_by_many_requests_is_used_once(pg, smtp)


def test_a_reset_link_after_a_password_change_on_postgresql(pg: Server, smtp: Smtp) -> None:
    test_links.test_a_reset_link_after_a_password_change_is_link_token_revoked(pg, smtp)


def test_the_email_change_on_postgresql(pg: Server, smtp: Smtp) -> None:
    test_email_change.test_change_confirm_login_with_the_new_address_and_old_tokens_die(pg, smtp)


def test_an_email_change_conflict_on_postgresql(pg: Server, smtp: Smtp) -> None:
    test_email_change.test_an_address_taken_before_the_confirmation_is_a_conflict(pg, smtp)


def test_a_right_password_is_audited_when_the_session_cannot_be_written(
    pg: Server, pg_url: str
) -> None:
    """``login_ok`` rides in the session's transaction; when that transaction fails (here:
    the sessions table is locked past the command timeout), the answer is 503 and the
    accepted password is still in the audit chain, once."""
    import asyncio
    import threading

    import asyncpg

    from _support.http import PASSWORD, assert_problem

    email = "locked-out@example.com"
    user_id = pg.register(email)["user"]["id"]
    holding, release = threading.Event(), threading.Event()
    schema = make_url(pg_url).query["search_path"]

    async def hold_lock() -> None:
        conn: Any = await asyncpg.connect(postgres_dsn(postgres_url()), timeout=5)
        try:
            async with conn.transaction():
                await conn.execute(f"LOCK TABLE {schema}.sessions IN ACCESS EXCLUSIVE MODE")
                holding.set()
                while not release.is_set():
                    await asyncio.sleep(0.05)
        finally:
            await conn.close()

    locker = threading.Thread(target=lambda: asyncio.run(hold_lock()))
    locker.start()
    try:
        assert holding.wait(10), "the lock was not taken"
        r = pg.http.post("/auth/login", json={"email": email, "password": PASSWORD}, timeout=30)
    finally:
        release.set()
        locker.join(10)
    assert_problem(r, 503, "storage_unavailable")
    mine = [e for e in pg.audit("login_ok") if e["user_id"] == user_id]
    assert len(mine) == 1, mine
    assert mine[0]["ip"] == "127.0.0.1"
    # Nothing was half-written: no session, and the next login works.
    assert pg.login(email)["token_type"] == "Bearer"
    assert len([e for e in pg.audit("login_ok") if e["user_id"] == user_id]) == 2
