"""RevocationStore on SQL: the revocation feed, read by cursor."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from authgate.storage.base import RevocationEvent, RevocationKind
from authgate.storage.sql._base import SqlBase, record_of
from authgate.storage.sql.locks import PG_REVOCATION_LOCK, xact_lock
from authgate.storage.sql.tables import revocations


def is_revoked_query(kind: RevocationKind, value: str, *, now: float) -> Select[tuple[bool]]:
    """SELECT whether an unexpired event of this kind and value exists."""
    return select(
        exists().where(
            revocations.c.kind == kind,
            revocations.c.value == value,
            revocations.c.expires_at > now,
        )
    )


class SqlRevocations(SqlBase):
    """RevocationStore: an append-only feed whose ids become visible in order."""

    async def add_revocation(
        self,
        kind: RevocationKind,
        value: str,
        *,
        now: float,
        expires_at: float,
        not_before: float | None = None,
        ver: int | None = None,
    ) -> RevocationEvent:
        """Append an event and return it with its cursor id."""

        values: dict[str, Any] = {
            "kind": kind,
            "value": value,
            "created_at": now,
            "expires_at": expires_at,
            "not_before": not_before,
            "ver": ver,
        }
        insert = revocations.insert().values(values).returning(revocations.c.id)

        async def _body(conn: AsyncConnection) -> RevocationEvent:
            if self._postgresql:
                # Ids must become visible in order, or a reader's cursor could skip one.
                await xact_lock(conn, PG_REVOCATION_LOCK)
            new_id = (await conn.execute(insert)).scalar_one()
            return RevocationEvent(id=new_id, **values)

        return await self._transaction(_body)

    async def revocations_after(
        self, cursor: int | None, *, now: float, limit: int
    ) -> list[RevocationEvent]:
        """Unexpired events (``expires_at > now``) with id > cursor (all when None), in id
        order, at most ``limit``."""
        query = (
            select(revocations)
            .where(revocations.c.expires_at > now)
            .order_by(revocations.c.id)
            .limit(limit)
        )
        if cursor is not None:
            query = query.where(revocations.c.id > cursor)
        async with self._read_one() as conn:
            rows = (await conn.execute(query)).all()
        return [record_of(RevocationEvent, row) for row in rows]

    async def is_revoked(self, kind: RevocationKind, value: str, *, now: float) -> bool:
        """True if an unexpired event of this kind and value exists."""
        async with self._read_one() as conn:
            return bool((await conn.execute(is_revoked_query(kind, value, now=now))).scalar())

    async def latest_revocation_id(self) -> int:
        """The highest event id ever issued (0 if none). Purging always keeps the newest
        event, so the maximum id in the table is that id."""
        async with self._read_one() as conn:
            value = (
                await conn.execute(select(func.coalesce(func.max(revocations.c.id), 0)))
            ).scalar_one()
        return int(value)

    async def purge_revocations(self, *, now: float) -> int:
        """Delete expired events (``expires_at <= now``) except the newest one, which
        keeps ``latest_revocation_id`` exact; return how many."""
        newest = select(func.max(revocations.c.id)).scalar_subquery()
        return await self._execute(
            delete(revocations).where(revocations.c.expires_at <= now, revocations.c.id != newest)
        )
