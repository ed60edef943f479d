"""ClientStore on SQL: service clients and the client assertions' replay record."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from sqlalchemy import Row, bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from authgate.storage.base import ClientRecord
from authgate.storage.sql._base import (
    SqlBase,
    dumps,
    mark_revoked,
    names,
    record_of,
    values_of,
)
from authgate.storage.sql.tables import client_assertions, clients

# Every client authentication's lookup: built once, only the id bound.
_CLIENT: Final = select(clients).where(clients.c.client_id == bindparam("b_client_id"))


def _jti_digest(jti: str) -> str:
    """The stored form of a client assertion's jti: SHA-256, hex (any jti fits the column)."""
    return hashlib.sha256(jti.encode("utf-8", "surrogatepass")).hexdigest()


def _client(row: Row[Any]) -> ClientRecord:
    return record_of(
        ClientRecord,
        row,
        scopes=tuple(json.loads(row.scopes)),
        redirect_uris=tuple(json.loads(row.redirect_uris or "[]")),
        post_logout_redirect_uris=tuple(json.loads(row.post_logout_redirect_uris or "[]")),
    )


class SqlClients(SqlBase):
    """ClientStore: clients (revoked ones are kept) and single-use assertion ids."""

    async def create_client(self, client: ClientRecord) -> None:
        """Insert a client; Conflict if the id exists. Its scopes are stored unique and
        sorted."""
        scopes = dumps(list(names(client.scopes)))
        values = values_of(
            client,
            clients,
            scopes=scopes,
            redirect_uris=dumps(list(client.redirect_uris)),
            post_logout_redirect_uris=dumps(list(client.post_logout_redirect_uris)),
        )
        await self._execute(clients.insert().values(values))

    async def get_client(self, client_id: str) -> ClientRecord | None:
        """A client by id (revoked ones too)."""
        async with self._read_one() as conn:
            row = (await conn.execute(_CLIENT, {"b_client_id": client_id})).first()
        return None if row is None else _client(row)

    async def list_clients(self) -> list[ClientRecord]:
        """Every client (revoked ones too), oldest first."""
        query = select(clients).order_by(clients.c.created_at, clients.c.client_id)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [_client(row) for row in rows]

    async def revoke_client(self, client_id: str, *, now: float) -> bool:
        """Mark a client revoked; False if unknown or already revoked."""
        return await self._changed_one(
            mark_revoked(clients, clients.c.client_id == client_id, now=now)
        )

    async def replace_client_secret(self, client_id: str, *, old: str, new: str) -> bool:
        """Store ``new`` as the client's secret hash if it is still ``old``; one
        conditional UPDATE."""
        return await self._changed_one(
            update(clients)
            .where(clients.c.client_id == client_id, clients.c.secret_hash == old)
            .values(secret_hash=new)
        )

    async def use_assertion_id(self, client_id: str, jti: str, *, expires_at: float) -> bool:
        """Record a client assertion's jti; False if this client used it before (a
        replay), also when that record has expired but is not purged yet.

        One ``INSERT ... ON CONFLICT DO NOTHING``: of concurrent callers with the same
        jti, the database lets exactly one insert the row."""
        stmt = (
            self._insert(client_assertions)
            .values(client_id=client_id, jti=_jti_digest(jti), expires_at=expires_at)
            .on_conflict_do_nothing(
                index_elements=[client_assertions.c.client_id, client_assertions.c.jti]
            )
            .returning(client_assertions.c.client_id)
        )

        async def _body(conn: AsyncConnection) -> bool:
            return (await conn.execute(stmt)).first() is not None

        return await self._transaction(_body)

    async def purge_assertion_ids(self, *, now: float) -> int:
        """Drop assertion ids whose assertions have expired (``expires_at <= now``);
        return how many."""
        return await self._execute(
            delete(client_assertions).where(client_assertions.c.expires_at <= now)
        )
