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
