"""MfaStore on SQL: TOTP secrets (encrypted by the service), recovery codes by digest, and
logins waiting for their second factor. Every single-use check is one conditional UPDATE."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Label,
    String,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from authgate.storage.base import MfaLoginRecord, TotpRecord
from authgate.storage.sql._base import SqlBase, record_of, values_of
from authgate.storage.sql.tables import mfa_logins, mfa_totp, passkeys, recovery_codes, users


async def _replace_codes(
    conn: AsyncConnection, user_id: str, digests: Sequence[str], now: float
) -> None:
    await conn.execute(delete(recovery_codes).where(recovery_codes.c.user_id == user_id))
    if digests:
        await conn.execute(
            recovery_codes.insert(),
            [{"user_id": user_id, "digest": d, "created_at": now} for d in digests],
        )


def summary_columns(user_id: ColumnElement[str]) -> tuple[Label[Any], ...]:
    """The second factors of the user ``user_id`` (a bound value, or a column of an
    enclosing statement): ``totp`` (an active secret exists), ``left`` (unused recovery
    codes) and ``keys`` (passkeys), as three labelled columns."""
    return (
        select(mfa_totp.c.user_id)
        .where(mfa_totp.c.user_id == user_id, mfa_totp.c.secret.is_not(None))
        .exists()
        .label("totp"),
        select(func.count())
        .where(recovery_codes.c.user_id == user_id, recovery_codes.c.used_at.is_(None))
        .scalar_subquery()
        .label("left"),
        select(func.count()).where(passkeys.c.user_id == user_id).scalar_subquery().label("keys"),
    )


def summary_of(row: Any) -> tuple[bool, int, int]:
    """A row's ``summary_columns``, as ``mfa_summary`` answers them."""
    return bool(row.totp), int(row.left), int(row.keys)


# Every login's second-factor check: built once, only the user id bound.
_USER_ID: Final = bindparam("b_user_id", type_=String(255))
_SUMMARY: Final = select(*summary_columns(_USER_ID))

# The same for a page of users (the admin's lists): one statement, a row per user.
_SUMMARIES: Final = select(users.c.id, *summary_columns(users.c.id)).where(
    users.c.id.in_(bindparam("b_ids", expanding=True))
)


class SqlMfa(SqlBase):
    """MfaStore: TOTP, recovery codes and pending MFA logins."""

    async def get_totp(self, user_id: str) -> TotpRecord | None:
        """The user's TOTP record, if any."""
        async with self._read_one() as conn:
            query = select(mfa_totp).where(mfa_totp.c.user_id == user_id)
            row = (await conn.execute(query)).first()
        return None if row is None else record_of(TotpRecord, row)

    async def put_pending_totp(self, user_id: str, secret: bytes, *, now: float) -> bool:
        """Store a secret being enrolled; False if there is no such user."""
        stmt = self._insert(mfa_totp).values(user_id=user_id, pending_secret=secret, pending_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=[mfa_totp.c.user_id],
            set_={"pending_secret": stmt.excluded.pending_secret, "pending_at": now},
        )

        async def _body(conn: AsyncConnection) -> bool:
            held = select(users.c.id).where(users.c.id == user_id).with_for_update()
            if (await conn.execute(held)).first() is None:
                return False
            await conn.execute(stmt)
            return True

        return await self._transaction(_body)

    async def confirm_totp(
        self,
        user_id: str,
        *,
        pending: bytes,
        step: int,
        now: float,
        recovery_digests: Sequence[str],
    ) -> bool:
        """Activate the secret being enrolled if it is still ``pending``, with new recovery
        codes, in one transaction."""
        activate = (
            update(mfa_totp)
            .where(mfa_totp.c.user_id == user_id, mfa_totp.c.pending_secret == pending)
            .values(
                secret=pending,
                confirmed_at=now,
                last_step=step,
                pending_secret=None,
                pending_at=None,
            )
        )

        async def _body(conn: AsyncConnection) -> bool:
            # The user's row first, as put_pending_totp takes it: one lock order, no
            # deadlock between an enrolment and its confirmation.
            held = select(users.c.id).where(users.c.id == user_id).with_for_update()
            if (await conn.execute(held)).first() is None:
                return False
            if (await conn.execute(activate)).rowcount != 1:
                return False
            await _replace_codes(conn, user_id, recovery_digests, now)
            return True

        return await self._transaction(_body)

    async def use_totp_step(self, user_id: str, step: int) -> bool:
        """Accept ``step`` only if it is later than the last one accepted."""
        return await self._changed_one(
            update(mfa_totp)
            .where(
                mfa_totp.c.user_id == user_id,
                mfa_totp.c.secret.is_not(None),
                or_(mfa_totp.c.last_step.is_(None), mfa_totp.c.last_step < step),
            )
            .values(last_step=step)
        )

    async def delete_totp(self, user_id: str, *, keep_recovery_codes: bool) -> bool:
        """Remove the user's TOTP (and the recovery codes unless kept)."""

        async def _body(conn: AsyncConnection) -> bool:
            result = await conn.execute(delete(mfa_totp).where(mfa_totp.c.user_id == user_id))
            if not keep_recovery_codes:
                await conn.execute(
                    delete(recovery_codes).where(recovery_codes.c.user_id == user_id)
                )
            return bool(result.rowcount)

        return await self._transaction(_body)

    async def replace_recovery_codes(
        self, user_id: str, digests: Sequence[str], *, now: float
    ) -> None:
        """Replace every recovery code of the user."""

        async def _body(conn: AsyncConnection) -> None:
            await _replace_codes(conn, user_id, digests, now)

        await self._transaction(_body)

    async def use_recovery_code(self, user_id: str, digest: str, *, now: float) -> bool:
        """Mark an unused code used; False if unknown or used."""
        return await self._changed_one(
            update(recovery_codes)
            .where(
                recovery_codes.c.user_id == user_id,
                recovery_codes.c.digest == digest,
                recovery_codes.c.used_at.is_(None),
            )
            .values(used_at=now)
        )

    async def mfa_summary(self, user_id: str) -> tuple[bool, int, int]:
        """Whether the user has an active TOTP, how many unused recovery codes and how
        many passkeys: one statement."""
        async with self._read_one() as conn:
            row = (await conn.execute(_SUMMARY, {"b_user_id": user_id})).one()
        return summary_of(row)

    async def mfa_summaries(self, user_ids: Sequence[str]) -> dict[str, tuple[bool, int, int]]:
        """``mfa_summary`` of each of these users, in one statement; unknown ids are left
        out."""
        if not user_ids:
            return {}
        async with self._read_one() as conn:
            rows = (await conn.execute(_SUMMARIES, {"b_ids": list(user_ids)})).all()
        return {row.id: summary_of(row) for row in rows}

    async def recovery_codes_left(self, user_id: str) -> int:
        """How many unused recovery codes the user has."""
        query = select(func.count()).where(
            recovery_codes.c.user_id == user_id, recovery_codes.c.used_at.is_(None)
        )
        async with self._read_one() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def create_mfa_login(self, login: MfaLoginRecord) -> None:
        """Record a login waiting for its second factor."""

        async def _body(conn: AsyncConnection) -> None:
            await conn.execute(mfa_logins.insert().values(values_of(login, mfa_logins)))

        await self._transaction(_body)

    async def get_mfa_login(self, jti: str) -> MfaLoginRecord | None:
        """A pending login by jti."""
        async with self._read_one() as conn:
            row = (await conn.execute(select(mfa_logins).where(mfa_logins.c.jti == jti))).first()
        return None if row is None else record_of(MfaLoginRecord, row)

    async def use_mfa_login(self, jti: str, *, now: float) -> MfaLoginRecord | None:
        """Mark an unused, unexpired pending login used, and return it."""
        stmt = (
            update(mfa_logins)
            .where(
                mfa_logins.c.jti == jti,
                mfa_logins.c.used_at.is_(None),
                mfa_logins.c.expires_at > now,
            )
            .values(used_at=now)
            .returning(*mfa_logins.c)
        )

        async def _body(conn: AsyncConnection) -> MfaLoginRecord | None:
            row = (await conn.execute(stmt)).first()
            return None if row is None else record_of(MfaLoginRecord, row)

        return await self._transaction(_body)

    async def release_mfa_login(self, jti: str, *, used_at: float, burn_after: int) -> bool:
        """Count a failed attempt on a claimed pending login and, below ``burn_after``
        failures, mark it unused again (one statement); True if it may be tried again."""
        burnt = mfa_logins.c.failures + 1 >= burn_after
        stmt = (
            update(mfa_logins)
            .where(mfa_logins.c.jti == jti, mfa_logins.c.used_at == used_at)
            .values(
                failures=mfa_logins.c.failures + 1,
                used_at=case((burnt, mfa_logins.c.used_at), else_=None),
            )
            .returning(mfa_logins.c.used_at)
        )

        async def _body(conn: AsyncConnection) -> bool:
            row = (await conn.execute(stmt)).first()
            return row is not None and row.used_at is None

        return await self._transaction(_body)

    async def purge_mfa_logins(self, *, before: float) -> int:
        """Delete pending logins that expired before ``before``."""
        return await self._execute(delete(mfa_logins).where(mfa_logins.c.expires_at < before))
