"""WebLoginStore on SQL: the hosted login's browser sessions, each a row of ``sessions``."""

from __future__ import annotations

import hmac
from typing import Final

from sqlalchemy import bindparam, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from authgate.storage.base import (
    LiveUser,
    SessionRecord,
    WebLoginRecord,
    WebLoginState,
)
from authgate.storage.sql._base import SqlBase, record_of, values_of
from authgate.storage.sql.tables import sessions, web_logins
from authgate.storage.sql.users import user_and_permissions

_LOGIN: Final = select(web_logins).where(web_logins.c.digest == bindparam("b_digest"))
_SESSION: Final = select(sessions).where(sessions.c.sid == bindparam("b_sid"))
_TOUCH: Final = (
    update(web_logins)
    .where(web_logins.c.digest == bindparam("b_digest"))
    .values(last_seen_at=bindparam("b_now"), idle_expires_at=bindparam("b_idle"))
)


class SqlWebLogins(SqlBase):
    """WebLoginStore: a web login and its session are written in one transaction."""

    async def create_web_login(
        self, session: SessionRecord, login: WebLoginRecord, *, password_hash: str | None
    ) -> LiveUser | None:
        """In one transaction: the user as read (holding its row), then the session and
        the web login; None (nothing written) if the user is gone, disabled or, with
        ``password_hash``, has another hash now."""

        async def _body(conn: AsyncConnection) -> LiveUser | None:
            user, permissions = await user_and_permissions(conn, session.user_id, hold=True)
            if user is None or user.disabled:
                return None
            if password_hash is not None and not hmac.compare_digest(
                user.password_hash, password_hash
            ):
                return None
            await conn.execute(sessions.insert(), values_of(session, sessions))
            await conn.execute(web_logins.insert(), values_of(login, web_logins))
            return LiveUser(user=user, permissions=permissions)

        return await self._transaction(_body)

    async def web_login_state(self, digest: str) -> WebLoginState | None:
        """The web login, its session and its user, in one read transaction."""
        async with self._read() as conn:
            row = (await conn.execute(_LOGIN, {"b_digest": digest})).first()
            if row is None:
                return None
            login = record_of(WebLoginRecord, row)
            srow = (await conn.execute(_SESSION, {"b_sid": login.sid})).first()
            if srow is None:
                return None
            user, _ = await user_and_permissions(conn, login.user_id)
        return WebLoginState(login=login, session=record_of(SessionRecord, srow), user=user)

    async def touch_web_login(self, digest: str, *, now: float, idle_expires_at: float) -> None:
        """Record a use: ``last_seen_at`` and the idle deadline move on."""
        params = {"b_digest": digest, "b_now": now, "b_idle": idle_expires_at}

        async def _body(conn: AsyncConnection) -> None:
            await conn.execute(_TOUCH, params)

        await self._transaction(_body)

    async def delete_web_login(self, digest: str) -> WebLoginRecord | None:
        """Delete the web login; what it was, or None if unknown."""

        async def _body(conn: AsyncConnection) -> WebLoginRecord | None:
            row = (await conn.execute(_LOGIN, {"b_digest": digest})).first()
            if row is None:
                return None
            await conn.execute(delete(web_logins).where(web_logins.c.digest == digest))
            return record_of(WebLoginRecord, row)

        return await self._transaction(_body)

    async def purge_web_logins(self, *, before: float) -> int:
        """Delete the web logins idle or expired before ``before``."""
        return await self._execute(
            delete(web_logins).where(
                or_(web_logins.c.idle_expires_at < before, web_logins.c.expires_at < before)
            )
        )
