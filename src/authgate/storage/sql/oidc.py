"""OidcStore on SQL: authorization codes, used by one compare-and-set, and consents."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from authgate.storage.base import AuthCodeRecord, ConsentRecord
from authgate.storage.sql._base import SqlBase, record_of, values_of
from authgate.storage.sql.tables import auth_codes, consents


class SqlOidc(SqlBase):
    """OidcStore: single-use authorization codes and remembered consents."""

    async def create_auth_code(self, code: AuthCodeRecord) -> None:
        """Insert a code; Conflict if its digest exists."""
        await self._execute(auth_codes.insert().values(values_of(code, auth_codes)))

    async def get_auth_code(self, digest: str) -> AuthCodeRecord | None:
        """A code by digest (used ones too)."""
        async with self._read() as conn:
            row = (
                await conn.execute(select(auth_codes).where(auth_codes.c.digest == digest))
            ).first()
        return None if row is None else record_of(AuthCodeRecord, row)

    async def use_auth_code(self, digest: str, *, now: float, sid: str) -> AuthCodeRecord | None:
        """Mark an unused code used and record the session it opens: one conditional
        UPDATE (``used_at IS NULL``) with RETURNING, so exactly one caller wins."""
        stmt = (
            update(auth_codes)
            .where(auth_codes.c.digest == digest, auth_codes.c.used_at.is_(None))
            .values(used_at=now, issued_sid=sid)
            .returning(*auth_codes.c)
        )

        async def _body(conn: AsyncConnection) -> AuthCodeRecord | None:
            row: Any = (await conn.execute(stmt)).first()
            return None if row is None else record_of(AuthCodeRecord, row)

        return await self._transaction(_body)

    async def purge_auth_codes(self, *, before: float) -> int:
        """Delete codes that expired before ``before``; return how many."""
        return await self._execute(delete(auth_codes).where(auth_codes.c.expires_at < before))

    async def put_consent(self, consent: ConsentRecord) -> None:
        """Insert or replace the user's consent for the client (one upsert)."""
        values = values_of(consent, consents)
        stmt = (
            self._insert(consents)
            .values(values)
            .on_conflict_do_update(
                index_elements=[consents.c.user_id, consents.c.client_id],
                set_={"scope": values["scope"], "granted_at": values["granted_at"]},
            )
        )
        await self._execute(stmt)

    async def get_consent(self, user_id: str, client_id: str) -> ConsentRecord | None:
        """The user's consent for the client, or None."""
        query = select(consents).where(
            consents.c.user_id == user_id, consents.c.client_id == client_id
        )
        async with self._read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else record_of(ConsentRecord, row)

    async def list_consents(self, user_id: str) -> list[ConsentRecord]:
        """The user's consents, by client id."""
        query = select(consents).where(consents.c.user_id == user_id).order_by(consents.c.client_id)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [record_of(ConsentRecord, row) for row in rows]

    async def delete_consent(self, user_id: str, client_id: str) -> bool:
        """Forget a consent; False if there was none."""
        return await self._changed_one(
            delete(consents).where(consents.c.user_id == user_id, consents.c.client_id == client_id)
        )
