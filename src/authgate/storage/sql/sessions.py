"""SessionStore on SQL: sessions (refresh families) and their rotating refresh tokens."""

from __future__ import annotations

import hmac
from typing import Final, cast

from sqlalchemy import (
    ColumnElement,
    Float,
    String,
    and_,
    bindparam,
    delete,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from authgate.storage.base import (
    AccessState,
    AuditEntry,
    LiveUser,
    RefreshContext,
    RefreshRecord,
    SessionRecord,
)
from authgate.storage.sql._base import (
    Prefixed,
    SqlBase,
    mark_revoked,
    not_revoked,
    record_of,
    values_of,
)
from authgate.storage.sql.audit import append_entry, checked_detail
from authgate.storage.sql.mfa import summary_columns, summary_of
from authgate.storage.sql.revocations import is_revoked_query
from authgate.storage.sql.tables import refresh_tokens, roles, sessions, user_roles, users
from authgate.storage.sql.users import user_and_permissions, user_and_permissions_of

# A refresh token with its session, the session's user (columns as ``u_*``) with each of
# its roles and their permissions: one statement, one snapshot (the hot path).
_TOKEN_WITH_SESSION: Final = (
    select(
        refresh_tokens,
        sessions.c.user_id,
        sessions.c.client_id,
        sessions.c.created_at.label("s_created_at"),
        sessions.c.last_used_at,
        sessions.c.expires_at,
        sessions.c.ip,
        sessions.c.user_agent,
        sessions.c.scope,
        sessions.c.revoked_at,
        sessions.c.replayed_at,
        sessions.c.amr,
        sessions.c.auth_time,
        sessions.c.parent_sid,
        *(column.label(f"u_{column.name}") for column in users.columns),
        user_roles.c.role.label("role_name"),
        roles.c.permissions.label("role_permissions"),
    )
    .join(sessions, sessions.c.sid == refresh_tokens.c.sid)
    .outerjoin(users, users.c.id == sessions.c.user_id)
    .outerjoin(user_roles, user_roles.c.user_id == users.c.id)
    .outerjoin(roles, roles.c.name == user_roles.c.role)
    .where(refresh_tokens.c.digest == bindparam("digest"))
    .order_by(user_roles.c.role)
)
# The hot statements, built once: a call binds its values (``b_*``: SQLAlchemy keeps the
# column names for the VALUES and SET clauses).
_SESSION: Final = select(sessions).where(sessions.c.sid == bindparam("b_sid"))
_REFRESH: Final = select(refresh_tokens).where(refresh_tokens.c.digest == bindparam("b_digest"))
_INSERT_SESSION: Final = sessions.insert()
_INSERT_REFRESH: Final = refresh_tokens.insert()
# Rotation's compare-and-set: the token is not rotated yet and its session is not revoked.
_CLAIM: Final = (
    update(refresh_tokens)
    .where(
        refresh_tokens.c.digest == bindparam("b_digest"),
        refresh_tokens.c.rotated_at.is_(None),
        exists().where(sessions.c.sid == refresh_tokens.c.sid, not_revoked(sessions)),
    )
    .values(rotated_at=bindparam("b_now"), successor=bindparam("b_successor"))
    .returning(refresh_tokens.c.sid)
)
# PostgreSQL: the whole rotation in one statement (atomic by itself, so it runs in
# autocommit): the compare-and-set, then, only for the row it claimed, the successor's
# INSERT (its values bound as ``n_*``) and the session's ``last_used_at``. The count of
# inserted rows says whether it won. SQLite has no data-modifying WITH: there the three
# statements run in one transaction.
_CLAIMED: Final = _CLAIM.cte("claimed")
_ROTATE_PG: Final = (
    select(func.count())
    .select_from(
        refresh_tokens.insert()
        .from_select(
            list(refresh_tokens.columns),
            select(
                *(bindparam(f"n_{c.name}", type_=c.type) for c in refresh_tokens.columns)
            ).select_from(_CLAIMED),
        )
        .returning(refresh_tokens.c.digest)
        .cte("inserted")
    )
    .add_cte(
        update(sessions)
        .where(sessions.c.sid.in_(select(_CLAIMED.c.sid)))
        .values(last_used_at=bindparam("b_now"))
        .returning(sessions.c.sid)
        .cte("touched")
    )
)
# The access check's jti lookup: is_revoked_query's rule, with its value and time bound later.
_JTI_REVOKED: Final = is_revoked_query(
    "jti",
    cast(str, bindparam("b_jti", type_=String(255))),
    now=cast(float, bindparam("b_now", type_=Float)),
)
# The access check in one statement: the user with each of its roles and their
# permissions, the session (joined on its sid alone, its columns as ``s_*``: None when
# there is none) and whether the jti is revoked. No row when the user is gone. One
# statement reads one snapshot, so it needs no transaction around it.
_ACCESS: Final = (
    select(
        users,
        user_roles.c.role.label("role_name"),
        roles.c.permissions.label("role_permissions"),
        *(column.label(f"s_{column.name}") for column in sessions.columns),
        _JTI_REVOKED.scalar_subquery().label("jti_revoked"),
    )
    .select_from(users)
    .outerjoin(user_roles, user_roles.c.user_id == users.c.id)
    .outerjoin(roles, roles.c.name == user_roles.c.role)
    .outerjoin(sessions, sessions.c.sid == bindparam("b_sid"))
    .where(users.c.id == bindparam("b_uid"))
    .order_by(user_roles.c.role)
)
# /auth/me's read: the access check and the user's second factors, in one statement.
_ACCESS_MFA: Final = _ACCESS.add_columns(*summary_columns(users.c.id))
_TOUCH: Final = (
    update(sessions)
    .where(sessions.c.sid == bindparam("b_sid"))
    .values(last_used_at=bindparam("b_now"))
)


class SqlSessions(SqlBase):
    """SessionStore: sessions and refresh tokens; rotation is one compare-and-set."""

    async def create_session(
        self,
        session: SessionRecord,
        first: RefreshRecord,
        *,
        password_hash: str | None,
        audit: AuditEntry | None = None,
    ) -> LiveUser | None:
        """In one transaction: read the user with its permissions (one statement, holding
        the user's row) and, if it exists, is not disabled and (with ``password_hash``)
        still has that hash, insert the session and its first refresh token; then append
        ``audit`` to the chain (last, so that PostgreSQL holds the chain's lock for the
        shortest time). The user as read, or None (nothing written but ``audit``).
        Conflict if the sid or digest exists."""
        checked = checked_detail(audit) if audit is not None else {}

        async def _body(conn: AsyncConnection) -> LiveUser | None:
            live = await _create(conn)
            if audit is not None:
                await append_entry(conn, audit, checked, postgresql=self._postgresql)
            return live

        async def _create(conn: AsyncConnection) -> LiveUser | None:
            # PostgreSQL: hold the user's row (FOR SHARE). SQLite's BEGIN IMMEDIATE holds
            # the database's one write lock already: no writer can change the user until
            # this commits, so the locking SELECT would be one statement for nothing.
            user, permissions = await user_and_permissions(
                conn, session.user_id, hold=self._postgresql
            )
            if user is None or user.disabled:
                return None
            if password_hash is not None and not hmac.compare_digest(
                user.password_hash, password_hash
            ):
                return None  # the password changed since it was checked
            await conn.execute(_INSERT_SESSION, values_of(session, sessions))
            await conn.execute(_INSERT_REFRESH, values_of(first, refresh_tokens))
            return LiveUser(user=user, permissions=permissions)

        return await self._transaction(_body)

    async def get_session(self, sid: str) -> SessionRecord | None:
        """A session by sid."""
        async with self._read() as conn:
            row = (await conn.execute(_SESSION, {"b_sid": sid})).first()
        return None if row is None else record_of(SessionRecord, row)

    async def list_sessions(self, user_id: str, *, live_at: float | None) -> list[SessionRecord]:
        """The user's sessions, newest first; with ``live_at``, only unrevoked ones whose
        absolute expiry is after that time."""
        query = (
            select(sessions)
            .where(sessions.c.user_id == user_id)
            .order_by(sessions.c.created_at.desc(), sessions.c.sid.desc())
        )
        if live_at is not None:
            query = query.where(not_revoked(sessions), sessions.c.expires_at > live_at)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [record_of(SessionRecord, row) for row in rows]

    async def get_refresh(self, digest: str) -> RefreshRecord | None:
        """A refresh token by digest."""
        async with self._read() as conn:
            row = (await conn.execute(_REFRESH, {"b_digest": digest})).first()
        return None if row is None else record_of(RefreshRecord, row)

    async def refresh_context(self, digest: str) -> RefreshContext | None:
        """The token, its session, user and permissions: one statement."""
        async with self._read_one() as conn:
            rows = (await conn.execute(_TOKEN_WITH_SESSION, {"digest": digest})).all()
        if not rows:
            return None
        row = rows[0]
        user, permissions = (None, ()) if row.u_id is None else user_and_permissions_of(rows, "u_")
        return RefreshContext(
            token=record_of(RefreshRecord, row),
            session=record_of(SessionRecord, row, created_at=row.s_created_at),
            user=user,
            permissions=permissions,
        )

    async def access_state(
        self, sid: str, user_id: str, jti: str, *, now: float, with_mfa: bool = False
    ) -> AccessState:
        """Session, user, permissions and the jti's revocation (and, ``with_mfa``, the
        user's second factors): one statement."""
        params = {"b_sid": sid, "b_uid": user_id, "b_jti": jti, "b_now": now}
        async with self._read_one() as conn:
            rows = (await conn.execute(_ACCESS_MFA if with_mfa else _ACCESS, params)).all()
        if not rows:
            return AccessState(session=None, user=None, permissions=(), jti_revoked=False)
        first = rows[0]
        session = None
        if first.s_sid is not None:
            session = record_of(SessionRecord, Prefixed(first, "s_"))
        user, permissions = user_and_permissions_of(rows)
        return AccessState(
            session=session,
            user=user,
            permissions=permissions,
            jti_revoked=bool(first.jti_revoked),
            mfa=summary_of(first) if with_mfa else None,
        )

    async def rotate_refresh(self, digest: str, successor: RefreshRecord, *, now: float) -> bool:
        """Atomic compare-and-set: if ``digest`` is not yet rotated and its session is not
        revoked, mark it rotated to ``successor``, insert ``successor`` and set the
        session's ``last_used_at``, in one transaction, and return True. Otherwise change
        nothing and return False. Two concurrent callers never both win: the UPDATE's
        ``rotated_at IS NULL`` condition is checked by the database under its row lock."""
        claim = {"b_digest": digest, "b_now": now, "b_successor": successor.digest}
        if self._postgresql:
            values = values_of(successor, refresh_tokens)
            params = claim | {f"n_{name}": value for name, value in values.items()}

            async def _one(conn: AsyncConnection) -> bool:
                return bool((await conn.execute(_ROTATE_PG, params)).scalar_one())

            return await self._transaction(_one, one_statement=True)

        async def _body(conn: AsyncConnection) -> bool:
            sid = (await conn.execute(_CLAIM, claim)).scalar_one_or_none()
            if sid is None:
                return False
            await conn.execute(_INSERT_REFRESH, values_of(successor, refresh_tokens))
            await conn.execute(_TOUCH, {"b_sid": sid, "b_now": now})
            return True

        return await self._transaction(_body)

    async def claim_replay(self, sid: str, *, now: float) -> bool:
        """Mark the family's one grace-window replay as used (a compare-and-set on
        ``replayed_at IS NULL``); False if it was already used or the session is unknown."""
        return await self._changed_one(
            update(sessions)
            .where(sessions.c.sid == sid, sessions.c.replayed_at.is_(None))
            .values(replayed_at=now)
        )

    async def revoke_session(self, sid: str, *, now: float) -> bool:
        """Mark a session revoked; False if it was unknown or already revoked."""
        return await self._changed_one(mark_revoked(sessions, sessions.c.sid == sid, now=now))

    async def revoke_user_sessions(
        self, user_id: str, *, now: float, keep: str | None = None
    ) -> list[str]:
        """Revoke every live session of the user (unrevoked, absolute expiry after
        ``now``) except ``keep``; return their sids, sorted."""
        conditions = [sessions.c.user_id == user_id, sessions.c.expires_at > now]
        if keep is not None:
            conditions.append(sessions.c.sid != keep)
        stmt = mark_revoked(sessions, *conditions, now=now).returning(sessions.c.sid)

        async def _body(conn: AsyncConnection) -> list[str]:
            return sorted((await conn.execute(stmt)).scalars())

        return await self._transaction(_body)

    async def revoke_child_sessions(self, parent_sid: str, *, now: float) -> list[str]:
        """Revoke every unrevoked session whose ``parent_sid`` is ``parent_sid``; return
        their sids, sorted."""
        return await self._revoke_where(sessions.c.parent_sid == parent_sid, now=now)

    async def revoke_client_sessions(
        self, user_id: str, client_id: str, *, now: float
    ) -> list[str]:
        """Revoke every unrevoked session of the user issued to ``client_id``; return
        their sids, sorted."""
        return await self._revoke_where(
            sessions.c.user_id == user_id, sessions.c.client_id == client_id, now=now
        )

    async def _revoke_where(self, *where: ColumnElement[bool], now: float) -> list[str]:
        stmt = mark_revoked(sessions, *where, now=now).returning(sessions.c.sid)

        async def _body(conn: AsyncConnection) -> list[str]:
            return sorted((await conn.execute(stmt)).scalars())

        return await self._transaction(_body)

    async def purge_sessions(self, *, before: float) -> int:
        """Delete sessions revoked or expired before ``before``, with their refresh
        tokens; return how many sessions."""
        return await self._execute(
            delete(sessions).where(
                or_(
                    and_(sessions.c.revoked_at.is_not(None), sessions.c.revoked_at < before),
                    sessions.c.expires_at < before,
                )
            )
        )
