"""PasskeyStore on SQL: WebAuthn credentials and the challenges of their ceremonies. The
single-use challenge and the signature counter are each one conditional UPDATE."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Row, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from authgate.storage.base import PasskeyRecord, WebauthnChallengeRecord, WebauthnPurpose
from authgate.storage.sql._base import SqlBase, dumps, record_of, values_of
from authgate.storage.sql.tables import passkeys, users, webauthn_challenges


def _passkey(row: Row[Any]) -> PasskeyRecord:
    return record_of(
        PasskeyRecord,
        row,
        transports=tuple(json.loads(row.transports)),
        backup_eligible=bool(row.backup_eligible),
        backed_up=bool(row.backed_up),
    )


class SqlPasskeys(SqlBase):
    """PasskeyStore: passkeys and WebAuthn challenges."""

    async def add_passkey(self, passkey: PasskeyRecord) -> bool:
        """Store a new passkey; False if there is no such user, Conflict if the credential
        id is taken."""
        values = values_of(passkey, passkeys, transports=dumps(list(passkey.transports)))

        async def _body(conn: AsyncConnection) -> bool:
            held = select(users.c.id).where(users.c.id == passkey.user_id).with_for_update()
            if (await conn.execute(held)).first() is None:
                return False
            await conn.execute(passkeys.insert().values(values))
            return True

        return await self._transaction(_body)

    async def get_passkey(self, credential_id: str) -> PasskeyRecord | None:
        """A passkey by its credential id."""
        query = select(passkeys).where(passkeys.c.credential_id == credential_id)
        async with self._read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _passkey(row)

    async def list_passkeys(self, user_id: str) -> list[PasskeyRecord]:
        """The user's passkeys, oldest first."""
        query = (
            select(passkeys)
            .where(passkeys.c.user_id == user_id)
            .order_by(passkeys.c.created_at, passkeys.c.id)
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [_passkey(row) for row in rows]

    async def count_passkeys(self, user_id: str) -> int:
        """How many passkeys the user has."""
        query = select(func.count()).where(passkeys.c.user_id == user_id)
        async with self._read() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def rename_passkey(self, user_id: str, passkey_id: str, name: str) -> bool:
        """Rename one of the user's passkeys."""
        return await self._changed_one(
            update(passkeys)
            .where(passkeys.c.id == passkey_id, passkeys.c.user_id == user_id)
            .values(name=name)
        )

    async def delete_passkey(self, user_id: str, passkey_id: str) -> bool:
        """Delete one of the user's passkeys."""
        return await self._changed_one(
            delete(passkeys).where(passkeys.c.id == passkey_id, passkeys.c.user_id == user_id)
        )

    async def delete_passkeys(self, user_id: str) -> int:
        """Delete every passkey of the user."""
        return await self._execute(delete(passkeys).where(passkeys.c.user_id == user_id))

    async def use_passkey(
        self, passkey_id: str, *, sign_count: int, backed_up: bool, now: float
    ) -> bool:
        """Record a use only if the counter increases (or both are 0): one UPDATE."""
        # A counter of 0 on both sides: the authenticator keeps none (nothing to compare).
        increases = (
            passkeys.c.sign_count == 0 if sign_count == 0 else passkeys.c.sign_count < sign_count
        )
        return await self._changed_one(
            update(passkeys)
            .where(passkeys.c.id == passkey_id, increases)
            .values(sign_count=sign_count, backed_up=backed_up, last_used_at=now)
        )

    async def create_webauthn_challenge(self, challenge: WebauthnChallengeRecord) -> None:
        """Store an issued challenge."""

        async def _body(conn: AsyncConnection) -> None:
            await conn.execute(
                webauthn_challenges.insert().values(values_of(challenge, webauthn_challenges))
            )

        await self._transaction(_body)

    async def use_webauthn_challenge(
        self, digest: str, *, purpose: WebauthnPurpose, now: float
    ) -> WebauthnChallengeRecord | None:
        """Mark an unused, unexpired challenge of ``purpose`` used, and return it."""
        table = webauthn_challenges
        stmt = (
            update(table)
            .where(
                table.c.digest == digest,
                table.c.purpose == purpose,
                table.c.used_at.is_(None),
                table.c.expires_at > now,
            )
            .values(used_at=now)
            .returning(*table.c)
        )

        async def _body(conn: AsyncConnection) -> WebauthnChallengeRecord | None:
            row = (await conn.execute(stmt)).first()
            return None if row is None else record_of(WebauthnChallengeRecord, row)

        return await self._transaction(_body)

    async def purge_webauthn_challenges(self, *, before: float) -> int:
        """Delete challenges that expired before ``before``."""
        table = webauthn_challenges
        return await self._execute(delete(table).where(table.c.expires_at < before))
