"""AuditLog on SQL: security events in one hash chain.

An append is two statements under the chain's lock: one read of the last event's hash
together with the id the new event gets (the sequence's next value on PostgreSQL; past
both ``sqlite_sequence`` and the largest id on SQLite, as AUTOINCREMENT would give it),
then one INSERT that carries the new event's hash. An id is never reused, and ids grow in
the chain's order.
"""

from __future__ import annotations

import json
from typing import Any, Final

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from authgate.storage.base import AuditEntry, AuditRecord, audit_hash
from authgate.storage.sql._base import SqlBase, dumps, record_of
from authgate.storage.sql.locks import PG_AUDIT_LOCK, xact_lock
from authgate.storage.sql.tables import audit_events

_NEXT_PG: Final = text(
    "SELECT (SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1), "
    "nextval(pg_get_serial_sequence('audit_events', 'id'))"
)
_NEXT_SQLITE: Final = text(
    "SELECT (SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1), 1 + max("
    "coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'audit_events'), 0), "
    "coalesce((SELECT max(id) FROM audit_events), 0))"
)
_INSERT: Final = audit_events.insert()


def checked_detail(entry: AuditEntry) -> dict[str, Any]:
    """The entry's detail as a reader will get it back; TypeError if it is not
    JSON-serialisable."""
    return json.loads(dumps(entry.detail or {}))  # type: ignore[no-any-return]


async def append_entry(
    conn: AsyncConnection, entry: AuditEntry, detail: dict[str, Any], *, postgresql: bool
) -> None:
    """Append ``entry`` to the chain within the caller's write transaction; ``detail`` is
    its ``checked_detail``, made before the transaction began."""
    if postgresql:  # SQLite's write lock already serialises appends
        await xact_lock(conn, PG_AUDIT_LOCK)
    row = (await conn.execute(_NEXT_PG if postgresql else _NEXT_SQLITE)).one()
    prev, new_id = row[0], int(row[1])
    digest = audit_hash(
        id=new_id,
        at=entry.at,
        event=entry.event,
        user_id=entry.user_id,
        sid=entry.sid,
        ip=entry.ip,
        detail=detail,
        prev_hash=prev,
    )
    values = {
        "id": new_id,
        "at": entry.at,
        "event": entry.event,
        "user_id": entry.user_id,
        "sid": entry.sid,
        "ip": entry.ip,
        "detail": dumps(detail),
        "prev_hash": prev,
        "hash": digest,
    }
    await conn.execute(_INSERT, values)


class SqlAudit(SqlBase):
    """AuditLog: each event carries the hash of the one before it; appends are serialised
    so that the chain never forks."""

    async def append_audit(self, entry: AuditEntry) -> None:
        """Record an event; ``detail`` must be JSON-serialisable (TypeError otherwise)."""
        checked = checked_detail(entry)  # a TypeError before any transaction

        async def _body(conn: AsyncConnection) -> None:
            await append_entry(conn, entry, checked, postgresql=self._postgresql)

        await self._transaction(_body)

    async def query_audit(
        self,
        *,
        user_id: str | None = None,
        event: str | None = None,
        after: int | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> list[AuditRecord]:
        """Events in id order (``newest_first``: the reverse), filtered by user, event name
        and id > ``after``."""
        order = audit_events.c.id.desc() if newest_first else audit_events.c.id
        query = select(audit_events).order_by(order).limit(limit)
        if user_id is not None:
            query = query.where(audit_events.c.user_id == user_id)
        if event is not None:
            query = query.where(audit_events.c.event == event)
        if after is not None:
            query = query.where(audit_events.c.id > after)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [record_of(AuditRecord, row, detail=json.loads(row.detail)) for row in rows]

    async def audit_chain(self, *, after: int | None, limit: int) -> list[AuditRecord]:
        """Every event with id > ``after``, in id order, with its hashes."""
        return await self.query_audit(after=after, limit=limit)
