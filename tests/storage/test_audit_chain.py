"""The tamper-evident audit log: edit, delete or reorder a row directly in the database,
and `Audit.verify` (what `authgate audit verify` runs) names exactly that row."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from sqlalchemy import text

from authgate.clock import FixedClock
from authgate.service.audit import Audit
from authgate.storage.sql.store import SqlStorage

from ._stores import at_revision

pytestmark = pytest.mark.anyio


async def _log(store: SqlStorage, n: int = 6) -> Audit:
    audit = Audit(store, clock=FixedClock(1_700_000_000.0))
    for i in range(n):
        await audit.record(
            "login_ok" if i % 2 else "login_failed", user_id=f"u{i}", ip="192.0.2.7", attempt=i
        )
    return audit


async def _sql(store: SqlStorage, statement: str) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(text(statement))


async def test_an_untouched_chain_holds(sql_storage: SqlStorage) -> None:
    audit = await _log(sql_storage)
    report = await audit.verify(page=4)  # several pages
    assert (report.ok, report.checked, report.broken_at) == (True, 6, None)
    rows = await sql_storage.audit_chain(after=None, limit=10)
    assert rows[0].prev_hash is None
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE audit_events SET event = 'login_ok' WHERE id = 3",
        "UPDATE audit_events SET user_id = 'someone-else' WHERE id = 3",
        "UPDATE audit_events SET at = at + 1 WHERE id = 3",
        "UPDATE audit_events SET detail = '{\"attempt\"\\:99}' WHERE id = 3",
        "UPDATE audit_events SET ip = NULL WHERE id = 3",
    ],
)
async def test_an_edited_row_is_named(sql_storage: SqlStorage, edit: str) -> None:
    audit = await _log(sql_storage)
    await _sql(sql_storage, edit)
    report = await audit.verify()
    assert (report.ok, report.broken_at, report.checked) == (False, 3, 2)
    assert report.reason == "the event was changed after it was written"


async def test_a_recomputed_hash_still_breaks_the_next_link(sql_storage: SqlStorage) -> None:
    audit = await _log(sql_storage)
    await _sql(sql_storage, "UPDATE audit_events SET event = 'x', hash = 'forged' WHERE id = 3")
    report = await audit.verify()
    assert report.broken_at == 3


async def test_a_deleted_row_is_named_by_the_row_after_it(sql_storage: SqlStorage) -> None:
    audit = await _log(sql_storage)
    await _sql(sql_storage, "DELETE FROM audit_events WHERE id = 4")
    report = await audit.verify()
    assert (report.ok, report.broken_at, report.checked) == (False, 5, 3)
    assert "deleted" in (report.reason or "")


async def test_deleting_the_first_row_is_caught(sql_storage: SqlStorage) -> None:
    audit = await _log(sql_storage)
    await _sql(sql_storage, "DELETE FROM audit_events WHERE id = 1")
    assert (await audit.verify()).broken_at == 2


async def test_reordered_rows_are_named(sql_storage: SqlStorage) -> None:
    audit = await _log(sql_storage)
    # Swap the contents of rows 2 and 3, links and hashes included.
    await _sql(sql_storage, "UPDATE audit_events SET id = 100 WHERE id = 2")
    await _sql(sql_storage, "UPDATE audit_events SET id = 2 WHERE id = 3")
    await _sql(sql_storage, "UPDATE audit_events SET id = 3 WHERE id = 100")
    report = await audit.verify()
    assert (report.ok, report.broken_at) == (False, 2)


async def test_concurrent_appends_never_fork_the_chain(sql_storage: SqlStorage) -> None:
    audit = Audit(sql_storage, clock=FixedClock(1_700_000_000.0))
    await asyncio.gather(*(audit.record("login_ok", user_id=f"u{i}") for i in range(30)))
    report = await audit.verify()
    assert (report.ok, report.checked) == (True, 30)


async def test_upgrade_to_0003_chains_the_existing_events(empty_database_url: str) -> None:
    from sqlalchemy import inspect

    from authgate.storage.sql import migrate

    async with at_revision(empty_database_url, "0002") as store:
        async with store.engine.begin() as conn:
            columns = await conn.run_sync(
                lambda c: {col["name"] for col in inspect(c).get_columns("audit_events")}
            )
            assert "hash" not in columns
            for i in range(3):
                await conn.execute(
                    text(
                        "INSERT INTO audit_events (at, event, user_id, detail) "
                        "VALUES (:at, 'login_ok', :user, '{}')"
                    ),
                    {"at": 1_700_000_000.0 + i, "user": f"u{i}"},
                )
        await migrate(empty_database_url)
        audit = Audit(store, clock=FixedClock(1_700_000_100.0))
        assert (await audit.verify()).checked == 3
        await audit.record("login_ok", user_id="after")
        report = await audit.verify()
        assert (report.ok, report.checked) == (True, 4)
