"""SqlStorage: every storage Protocol of ``authgate.storage.base`` on SQLAlchemy Core.

One class serves SQLite (aiosqlite) and PostgreSQL (asyncpg); the statements are
dialect-neutral except for the upserts (both dialects spell ``ON CONFLICT`` alike) and
the locks. Every public method maps driver errors with ``engine.translate``: callers see
only Conflict, StorageUnavailable or StorageError.

Each write is one transaction run by ``_transaction``. PostgreSQL runs them at its default
isolation (READ COMMITTED, or whatever the server is configured with): the atomic steps
are single conditional statements (``UPDATE ... WHERE ... RETURNING``, ``INSERT ... ON
CONFLICT``) or take a row lock first, and a transaction rolled back as a serialization
failure or a deadlock runs again instead of surfacing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    Row,
    Table,
    and_,
    bindparam,
    case,
    delete,
    exc,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from authgate.storage.base import (
    AccessState,
    AuditRecord,
    ClientRecord,
    CounterState,
    KeyRecord,
    KeyState,
    LiveUser,
    RefreshContext,
    RefreshRecord,
    RevocationEvent,
    RevocationKind,
    RoleRecord,
    SessionRecord,
    Storage,
    UserRecord,
    audit_hash,
)
from authgate.storage.sql import engine as _engine
from authgate.storage.sql.locks import PG_AUDIT_LOCK, PG_KEY_LOCK, PG_REVOCATION_LOCK, xact_lock
from authgate.storage.sql.tables import (
    audit_events,
    client_assertions,
    clients,
    counters,
    keys,
    refresh_tokens,
    revocations,
    roles,
    sessions,
    user_roles,
    users,
)

_T = TypeVar("_T")

# The hot paths' statements, built once.
_USER_WITH_ROLES: Final = (
    select(
        users,
        user_roles.c.role.label("role_name"),
        roles.c.permissions.label("role_permissions"),
    )
    .outerjoin(user_roles, user_roles.c.user_id == users.c.id)
    .outerjoin(roles, roles.c.name == user_roles.c.role)
    .where(users.c.id == bindparam("user_id"))
    .order_by(user_roles.c.role)
)
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
    )
    .join(sessions, sessions.c.sid == refresh_tokens.c.sid)
    .where(refresh_tokens.c.digest == bindparam("digest"))
)

# How often a write transaction runs before a serialization failure or deadlock surfaces,
# and the longest pause (seconds) before the first rerun; it doubles up to the cap.
WRITE_ATTEMPTS: Final = 16
RETRY_PAUSE_S: Final = 0.005
MAX_RETRY_PAUSE_S: Final = 0.25

# The connection that key_lock holds on SQLite, with its owner: the store's calls made by
# the owning task run on it (in a SAVEPOINT), since SQLite allows one writer at a time.
_HELD: ContextVar[tuple[SqlStorage, asyncio.Task[Any], AsyncConnection] | None] = ContextVar(
    "authgate_sql_held", default=None
)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _jti_digest(jti: str) -> str:
    """The stored form of a client assertion's jti: SHA-256, hex (any jti fits the column)."""
    return hashlib.sha256(jti.encode("utf-8", "surrogatepass")).hexdigest()


def _names(values: Iterable[str]) -> tuple[str, ...]:
    """A set of names in its stored form: unique and sorted."""
    return tuple(sorted(set(values)))


class SqlStorage:
    """Every storage Protocol (``authgate.storage.base.Storage``) on one AsyncEngine.

    Build it with ``open_storage(url)``; the schema must be migrated (``migrate(url)``).
    Methods raise ``Conflict`` for a uniqueness violation, ``StorageUnavailable`` when the
    database cannot be reached (or stays locked past the busy timeout), and
    ``StorageError`` for any other database failure.

    Sets of names (a user's roles, a role's permissions, a client's scopes) come back
    unique and sorted. ``retries`` counts the write transactions run again after a
    serialization failure or a deadlock (PostgreSQL).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._write_engine = engine.execution_options(**_engine.WRITE_OPTIONS)
        self._read_engine = (
            engine.execution_options(**{_engine.BEGIN_OPTION: "NONE"})
            if _engine.is_sqlite(engine)
            else engine
        )
        self._sqlite = _engine.is_sqlite(engine)
        self._postgresql = _engine.is_postgresql(engine)
        self._errors = _engine.driver_errors(engine)
        # SQLite has one writer at a time: queue this process's writers here rather than
        # on the busy handler (other processes still queue on the busy timeout).
        self._write_lock = asyncio.Lock()
        self._key_mutex = asyncio.Lock()
        self._key_owner: asyncio.Task[Any] | None = None
        self.retries = 0

    @property
    def engine(self) -> AsyncEngine:
        """The underlying engine (for tests and migrations)."""
        return self._engine

    # -- transactions ------------------------------------------------------------------

    def _held(self) -> AsyncConnection | None:
        held = _HELD.get()
        if held is None:
            return None
        owner, task, conn = held
        if owner is self and task is asyncio.current_task():
            return conn
        return None

    @asynccontextmanager
    async def _translated(self) -> AsyncIterator[None]:
        try:
            yield
        except self._errors as e:
            raise _engine.translate(e) from e

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        held = self._held()
        async with self._translated():
            if held is not None:
                yield held
                return
            async with self._read_engine.connect() as conn:
                yield conn

    async def _transaction(self, body: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
        """Run ``body`` in one write transaction and return its result.

        A transaction that PostgreSQL rolls back as a serialization failure or a deadlock
        runs again, as a whole, after a short random pause (up to ``WRITE_ATTEMPTS``
        times); only then does the error surface, as StorageUnavailable.
        """
        held = self._held()
        async with self._translated():
            if held is not None:
                async with held.begin_nested():
                    return await body(held)
            attempt = 1
            while True:
                try:
                    if self._sqlite:
                        async with self._write_lock, self._write_engine.begin() as conn:
                            return await body(conn)
                    async with self._write_engine.begin() as conn:
                        return await body(conn)
                except exc.DBAPIError as e:
                    if attempt >= WRITE_ATTEMPTS or not _engine.is_retryable(e):
                        raise
                    self.retries += 1
                # Random and growing, so that the transactions that collided spread out.
                pause = min(RETRY_PAUSE_S * 2 ** (attempt - 1), MAX_RETRY_PAUSE_S)
                await asyncio.sleep(pause * secrets.randbelow(1001) / 1000)
                attempt += 1

    def _insert(self, table: Table) -> Any:
        """An INSERT that supports ``on_conflict_do_update`` on this dialect."""
        if self._postgresql:
            return pg_dialect.insert(table)
        if self._sqlite:
            return sqlite_dialect.insert(table)
        raise NotImplementedError(self._engine.dialect.name)  # pragma: no cover

    # -- Database ----------------------------------------------------------------------

    async def ping(self) -> None:
        """Run ``SELECT 1``; raise StorageUnavailable if the database cannot answer."""
        async with self._read() as conn:
            await conn.execute(select(literal(1)))

    async def close(self) -> None:
        """Release every connection."""
        await self._engine.dispose()

    # -- UserStore ---------------------------------------------------------------------

    async def create_user(self, user: UserRecord) -> None:
        """Insert a user and its roles; Conflict if the email (or id) is taken."""

        async def _body(conn: AsyncConnection) -> None:
            await conn.execute(
                users.insert().values(
                    id=user.id,
                    email=user.email,
                    password_hash=user.password_hash,
                    name=user.name,
                    disabled=user.disabled,
                    ver=user.ver,
                    created_at=user.created_at,
                )
            )
            await self._insert_roles(conn, user.id, user.roles)

        await self._transaction(_body)

    @staticmethod
    async def _insert_roles(conn: AsyncConnection, user_id: str, names: Sequence[str]) -> None:
        rows = [{"user_id": user_id, "role": name} for name in _names(names)]
        if rows:
            await conn.execute(user_roles.insert(), rows)

    @staticmethod
    async def _roles_of(conn: AsyncConnection, user_ids: Sequence[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {uid: [] for uid in user_ids}
        if not user_ids:
            return found
        result = await conn.execute(
            select(user_roles.c.user_id, user_roles.c.role)
            .where(user_roles.c.user_id.in_(user_ids))
            .order_by(user_roles.c.user_id, user_roles.c.role)
        )
        for user_id, role in result:
            found[user_id].append(role)
        return found

    @staticmethod
    def _user(row: Row[Any], role_names: Sequence[str]) -> UserRecord:
        return UserRecord(
            id=row.id,
            email=row.email,
            password_hash=row.password_hash,
            created_at=row.created_at,
            name=row.name,
            disabled=bool(row.disabled),
            roles=tuple(role_names),
            ver=row.ver,
        )

    async def _get_user_where(self, condition: ColumnElement[bool]) -> UserRecord | None:
        async with self._read() as conn:
            row = (await conn.execute(select(users).where(condition))).first()
            if row is None:
                return None
            found = await self._roles_of(conn, [row.id])
            return self._user(row, found[row.id])

    async def get_user(self, user_id: str) -> UserRecord | None:
        """A user by id, with roles."""
        return await self._get_user_where(users.c.id == user_id)

    async def get_user_by_email(self, email: str) -> UserRecord | None:
        """A user by normalised email (compared exactly), with roles."""
        return await self._get_user_where(users.c.email == email)

    async def list_users(self, *, after: str | None, limit: int) -> list[UserRecord]:
        """Users ordered by id, strictly after ``after``."""
        query = select(users).order_by(users.c.id).limit(limit)
        if after is not None:
            query = query.where(users.c.id > after)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
            found = await self._roles_of(conn, [row.id for row in rows])
        return [self._user(row, found[row.id]) for row in rows]

    async def update_user(
        self,
        user_id: str,
        *,
        password_hash: str | None = None,
        name: str | None = None,
    ) -> bool:
        """Change the given (non-None) fields; False if there is no such user. Privileges
        change only through the methods that also increment ``ver``."""
        values: dict[str, Any] = {}
        if password_hash is not None:
            values["password_hash"] = password_hash
        if name is not None:
            values["name"] = name

        async def _body(conn: AsyncConnection) -> bool:
            if not values:
                return await self._user_exists(conn, user_id)
            result = await conn.execute(update(users).where(users.c.id == user_id).values(values))
            return result.rowcount == 1

        return await self._transaction(_body)

    @staticmethod
    async def _user_exists(conn: AsyncConnection, user_id: str, *, lock: bool = False) -> bool:
        query = select(users.c.id).where(users.c.id == user_id)
        if lock:  # FOR UPDATE on PostgreSQL; SQLite's write lock already covers it
            query = query.with_for_update()
        return (await conn.execute(query)).first() is not None

    @staticmethod
    async def _bump(conn: AsyncConnection, user_ids: ColumnElement[bool]) -> dict[str, int]:
        """Increment ``ver`` of the users matched; their new versions. Every write that
        changes what a user may do runs this in its own transaction, so that a token whose
        privileges were read before that write carries a ``ver`` that is already dead."""
        bump = update(users).where(user_ids).values(ver=users.c.ver + 1)
        result = await conn.execute(bump.returning(users.c.id, users.c.ver))
        return {row.id: int(row.ver) for row in result}

    async def set_disabled(self, user_id: str, disabled: bool) -> int | None:
        """Disable or enable a user and increment its ``ver``; the new ``ver`` or None."""

        async def _body(conn: AsyncConnection) -> int | None:
            await conn.execute(update(users).where(users.c.id == user_id).values(disabled=disabled))
            return (await self._bump(conn, users.c.id == user_id)).get(user_id)

        return await self._transaction(_body)

    async def bump_version(self, user_id: str) -> int | None:
        """Increment the user's ``ver``; the new ``ver``, or None if there is no such user."""

        async def _body(conn: AsyncConnection) -> int | None:
            return (await self._bump(conn, users.c.id == user_id)).get(user_id)

        return await self._transaction(_body)

    async def set_roles(self, user_id: str, roles: Sequence[str]) -> int | None:
        """Replace the user's roles and increment its ``ver``; the new ``ver`` or None."""

        async def _body(conn: AsyncConnection) -> int | None:
            # Lock the user first (the increment takes the row lock): two concurrent
            # replacements must not both delete the old roles and then both insert theirs.
            ver = (await self._bump(conn, users.c.id == user_id)).get(user_id)
            if ver is None:
                return None
            await conn.execute(delete(user_roles).where(user_roles.c.user_id == user_id))
            await self._insert_roles(conn, user_id, roles)
            return ver

        return await self._transaction(_body)

    async def delete_user(self, user_id: str) -> bool:
        """Delete a user; its roles, sessions and refresh tokens go with it (ON DELETE
        CASCADE). False if there is no such user."""

        async def _body(conn: AsyncConnection) -> bool:
            result = await conn.execute(delete(users).where(users.c.id == user_id))
            return result.rowcount == 1

        return await self._transaction(_body)

    async def put_role(self, role: RoleRecord) -> dict[str, int]:
        """Create a role, or replace the permissions of an existing one (its
        ``created_at`` stays the first one); increment the ``ver`` of every holder in the
        same transaction and return their new versions."""
        permissions = _dumps(list(_names(role.permissions)))
        stmt = self._insert(roles).values(
            name=role.name, permissions=permissions, created_at=role.created_at
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[roles.c.name], set_={"permissions": stmt.excluded.permissions}
        )

        holders = users.c.id.in_(select(user_roles.c.user_id).where(user_roles.c.role == role.name))

        async def _body(conn: AsyncConnection) -> dict[str, int]:
            await conn.execute(stmt)
            return await self._bump(conn, holders)

        return await self._transaction(_body)

    @staticmethod
    def _role(row: Row[Any]) -> RoleRecord:
        return RoleRecord(
            name=row.name,
            permissions=tuple(json.loads(row.permissions)),
            created_at=row.created_at,
        )

    async def get_role(self, name: str) -> RoleRecord | None:
        """A role by name."""
        async with self._read() as conn:
            row = (await conn.execute(select(roles).where(roles.c.name == name))).first()
        return None if row is None else self._role(row)

    async def list_roles(self) -> list[RoleRecord]:
        """Every role, by name."""
        async with self._read() as conn:
            rows = (await conn.execute(select(roles).order_by(roles.c.name))).all()
        return [self._role(row) for row in rows]

    async def delete_role(self, name: str) -> dict[str, int] | None:
        """Delete a role, remove it from every user and increment their ``ver``; each former
        holder's new ``ver``, or None (nothing changed) if there was no such role."""
        holders = users.c.id.in_(select(user_roles.c.user_id).where(user_roles.c.role == name))

        async def _body(conn: AsyncConnection) -> dict[str, int] | None:
            result = await conn.execute(delete(roles).where(roles.c.name == name))
            if result.rowcount != 1:
                return None
            bumped = await self._bump(conn, holders)
            await conn.execute(delete(user_roles).where(user_roles.c.role == name))
            return bumped

        return await self._transaction(_body)

    @staticmethod
    async def _permissions_of(conn: AsyncConnection, role_names: Sequence[str]) -> tuple[str, ...]:
        if not role_names:
            return ()
        rows = await conn.execute(select(roles.c.permissions).where(roles.c.name.in_(role_names)))
        found: set[str] = set()
        for (perms,) in rows:
            found.update(json.loads(perms))
        return tuple(sorted(found))

    async def permissions_for(self, roles: Sequence[str]) -> tuple[str, ...]:
        """The union of the permissions of these roles, sorted (one query)."""
        async with self._read() as conn:
            return await self._permissions_of(conn, list(roles))

    async def users_with_role(self, name: str) -> list[str]:
        """Ids of the users holding a role, sorted."""
        async with self._read() as conn:
            result = await conn.execute(
                select(user_roles.c.user_id)
                .where(user_roles.c.role == name)
                .order_by(user_roles.c.user_id)
            )
            return list(result.scalars())

    # -- SessionStore ------------------------------------------------------------------

    @staticmethod
    def _refresh_values(token: RefreshRecord) -> dict[str, Any]:
        return {
            "digest": token.digest,
            "sid": token.sid,
            "created_at": token.created_at,
            "idle_expires_at": token.idle_expires_at,
            "parent": token.parent,
            "rotated_at": token.rotated_at,
            "successor": token.successor,
            "replayed_at": token.replayed_at,
        }

    async def create_session(self, session: SessionRecord, first: RefreshRecord) -> LiveUser | None:
        """In one transaction: read the user with its permissions (one statement) and, if
        it exists and is not disabled, insert the session and its first refresh token.
        The user as read, or None (nothing written). Conflict if the sid or digest exists."""

        async def _body(conn: AsyncConnection) -> LiveUser | None:
            user, permissions = await self._user_and_permissions(conn, session.user_id)
            if user is None or user.disabled:
                return None
            await conn.execute(
                sessions.insert().values(
                    sid=session.sid,
                    user_id=session.user_id,
                    client_id=session.client_id,
                    created_at=session.created_at,
                    last_used_at=session.last_used_at,
                    expires_at=session.expires_at,
                    ip=session.ip,
                    user_agent=session.user_agent,
                    scope=session.scope,
                    revoked_at=session.revoked_at,
                )
            )
            await conn.execute(refresh_tokens.insert().values(self._refresh_values(first)))
            return LiveUser(user=user, permissions=permissions)

        return await self._transaction(_body)

    @staticmethod
    def _session(row: Row[Any]) -> SessionRecord:
        return SessionRecord(
            sid=row.sid,
            user_id=row.user_id,
            client_id=row.client_id,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            expires_at=row.expires_at,
            ip=row.ip,
            user_agent=row.user_agent,
            scope=row.scope,
            revoked_at=row.revoked_at,
        )

    async def get_session(self, sid: str) -> SessionRecord | None:
        """A session by sid."""
        async with self._read() as conn:
            row = (await conn.execute(select(sessions).where(sessions.c.sid == sid))).first()
        return None if row is None else self._session(row)

    async def list_sessions(self, user_id: str, *, live_at: float | None) -> list[SessionRecord]:
        """The user's sessions, newest first; with ``live_at``, only unrevoked ones whose
        absolute expiry is after that time."""
        query = (
            select(sessions)
            .where(sessions.c.user_id == user_id)
            .order_by(sessions.c.created_at.desc(), sessions.c.sid.desc())
        )
        if live_at is not None:
            query = query.where(sessions.c.revoked_at.is_(None), sessions.c.expires_at > live_at)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [self._session(row) for row in rows]

    async def get_refresh(self, digest: str) -> RefreshRecord | None:
        """A refresh token by digest."""
        async with self._read() as conn:
            row = (
                await conn.execute(select(refresh_tokens).where(refresh_tokens.c.digest == digest))
            ).first()
        return None if row is None else self._refresh(row)

    @staticmethod
    def _refresh(row: Row[Any]) -> RefreshRecord:
        return RefreshRecord(
            digest=row.digest,
            sid=row.sid,
            created_at=row.created_at,
            idle_expires_at=row.idle_expires_at,
            parent=row.parent,
            rotated_at=row.rotated_at,
            successor=row.successor,
            replayed_at=row.replayed_at,
        )

    async def _user_and_permissions(
        self, conn: AsyncConnection, user_id: str
    ) -> tuple[UserRecord | None, tuple[str, ...]]:
        rows = (await conn.execute(_USER_WITH_ROLES, {"user_id": user_id})).all()
        if not rows:
            return None, ()
        names = [row.role_name for row in rows if row.role_name is not None]
        found: set[str] = set()
        for row in rows:
            if row.role_permissions is not None:
                found.update(json.loads(row.role_permissions))
        return self._user(rows[0], names), tuple(sorted(found))

    async def refresh_context(self, digest: str) -> RefreshContext | None:
        """The token, its session, user and permissions, in one read transaction."""
        async with self._read() as conn:
            row = (await conn.execute(_TOKEN_WITH_SESSION, {"digest": digest})).first()
            if row is None:
                return None
            user, permissions = await self._user_and_permissions(conn, row.user_id)
        session = SessionRecord(
            sid=row.sid,
            user_id=row.user_id,
            client_id=row.client_id,
            created_at=row.s_created_at,
            last_used_at=row.last_used_at,
            expires_at=row.expires_at,
            ip=row.ip,
            user_agent=row.user_agent,
            scope=row.scope,
            revoked_at=row.revoked_at,
        )
        return RefreshContext(
            token=self._refresh(row), session=session, user=user, permissions=permissions
        )

    async def access_state(self, sid: str, user_id: str, jti: str, *, now: float) -> AccessState:
        """Session, user, permissions and the jti's revocation, in one read transaction."""
        revoked = select(
            exists().where(
                revocations.c.kind == "jti",
                revocations.c.value == jti,
                revocations.c.expires_at > now,
            )
        )
        async with self._read() as conn:
            row = (await conn.execute(select(sessions).where(sessions.c.sid == sid))).first()
            user, permissions = await self._user_and_permissions(conn, user_id)
            jti_revoked = bool((await conn.execute(revoked)).scalar())
        return AccessState(
            session=None if row is None else self._session(row),
            user=user,
            permissions=permissions,
            jti_revoked=jti_revoked,
        )

    async def rotate_refresh(self, digest: str, successor: RefreshRecord, *, now: float) -> bool:
        """Atomic compare-and-set: if ``digest`` is not yet rotated and its session is not
        revoked, mark it rotated to ``successor``, insert ``successor`` and set the
        session's ``last_used_at``, in one transaction, and return True. Otherwise change
        nothing and return False. Two concurrent callers never both win: the UPDATE's
        ``rotated_at IS NULL`` condition is checked by the database under its row lock."""
        session_live = exists().where(
            sessions.c.sid == refresh_tokens.c.sid, sessions.c.revoked_at.is_(None)
        )
        claim = (
            update(refresh_tokens)
            .where(
                refresh_tokens.c.digest == digest,
                refresh_tokens.c.rotated_at.is_(None),
                session_live,
            )
            .values(rotated_at=now, successor=successor.digest)
            .returning(refresh_tokens.c.sid)
        )

        async def _body(conn: AsyncConnection) -> bool:
            sid = (await conn.execute(claim)).scalar_one_or_none()
            if sid is None:
                return False
            await conn.execute(refresh_tokens.insert().values(self._refresh_values(successor)))
            await conn.execute(
                update(sessions).where(sessions.c.sid == sid).values(last_used_at=now)
            )
            return True

        return await self._transaction(_body)

    async def claim_replay(self, digest: str, *, now: float) -> bool:
        """Mark the grace window's one replay of a rotated token as used (a compare-and-set
        on ``replayed_at IS NULL``); False if it was already used or the token is unknown."""

        async def _body(conn: AsyncConnection) -> bool:
            result = await conn.execute(
                update(refresh_tokens)
                .where(
                    refresh_tokens.c.digest == digest,
                    refresh_tokens.c.rotated_at.is_not(None),
                    refresh_tokens.c.replayed_at.is_(None),
                )
                .values(replayed_at=now)
            )
            return result.rowcount == 1

        return await self._transaction(_body)

    async def revoke_session(self, sid: str, *, now: float) -> bool:
        """Mark a session revoked; False if it was unknown or already revoked."""

        async def _body(conn: AsyncConnection) -> bool:
            result = await conn.execute(
                update(sessions)
                .where(sessions.c.sid == sid, sessions.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            return result.rowcount == 1

        return await self._transaction(_body)

    async def revoke_user_sessions(
        self, user_id: str, *, now: float, keep: str | None = None
    ) -> list[str]:
        """Revoke every live session of the user (unrevoked, absolute expiry after
        ``now``) except ``keep``; return their sids, sorted."""
        conditions = [
            sessions.c.user_id == user_id,
            sessions.c.revoked_at.is_(None),
            sessions.c.expires_at > now,
        ]
        if keep is not None:
            conditions.append(sessions.c.sid != keep)

        async def _body(conn: AsyncConnection) -> list[str]:
            result = await conn.execute(
                update(sessions).where(*conditions).values(revoked_at=now).returning(sessions.c.sid)
            )
            return sorted(result.scalars())

        return await self._transaction(_body)

    async def purge_sessions(self, *, before: float) -> int:
        """Delete sessions revoked or expired before ``before``, with their refresh
        tokens; return how many sessions."""

        async def _body(conn: AsyncConnection) -> int:
            result = await conn.execute(
                delete(sessions).where(
                    or_(
                        and_(sessions.c.revoked_at.is_not(None), sessions.c.revoked_at < before),
                        sessions.c.expires_at < before,
                    )
                )
            )
            return result.rowcount

        return await self._transaction(_body)

    # -- RevocationStore ---------------------------------------------------------------

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

        async def _body(conn: AsyncConnection) -> RevocationEvent:
            if self._postgresql:
                # Ids must become visible in order, or a reader's cursor could skip one.
                await xact_lock(conn, PG_REVOCATION_LOCK)
            new_id = (
                await conn.execute(
                    revocations.insert()
                    .values(
                        kind=kind,
                        value=value,
                        created_at=now,
                        expires_at=expires_at,
                        not_before=not_before,
                        ver=ver,
                    )
                    .returning(revocations.c.id)
                )
            ).scalar_one()
            return RevocationEvent(
                id=new_id,
                kind=kind,
                value=value,
                created_at=now,
                expires_at=expires_at,
                not_before=not_before,
                ver=ver,
            )

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
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            RevocationEvent(
                id=row.id,
                kind=cast(RevocationKind, row.kind),
                value=row.value,
                created_at=row.created_at,
                expires_at=row.expires_at,
                not_before=row.not_before,
                ver=row.ver,
            )
            for row in rows
        ]

    async def is_revoked(self, kind: RevocationKind, value: str, *, now: float) -> bool:
        """True if an unexpired event of this kind and value exists."""
        query = select(
            exists().where(
                revocations.c.kind == kind,
                revocations.c.value == value,
                revocations.c.expires_at > now,
            )
        )
        async with self._read() as conn:
            return bool((await conn.execute(query)).scalar())

    async def latest_revocation_id(self) -> int:
        """The highest event id ever issued (0 if none). Purging always keeps the newest
        event, so the maximum id in the table is that id."""
        async with self._read() as conn:
            value = (
                await conn.execute(select(func.coalesce(func.max(revocations.c.id), 0)))
            ).scalar_one()
        return int(value)

    async def purge_revocations(self, *, now: float) -> int:
        """Delete expired events (``expires_at <= now``) except the newest one, which
        keeps ``latest_revocation_id`` exact; return how many."""
        newest = select(func.max(revocations.c.id)).scalar_subquery()

        async def _body(conn: AsyncConnection) -> int:
            result = await conn.execute(
                delete(revocations).where(
                    revocations.c.expires_at <= now, revocations.c.id != newest
                )
            )
            return result.rowcount

        return await self._transaction(_body)

    # -- KeyStore ----------------------------------------------------------------------

    async def list_keys(self) -> list[KeyRecord]:
        """Every stored key, oldest first."""
        async with self._read() as conn:
            rows = (await conn.execute(select(keys).order_by(keys.c.created_at, keys.c.kid))).all()
        return [
            KeyRecord(
                kid=row.kid,
                alg=row.alg,
                state=cast(KeyState, row.state),
                public_jwk=row.public_jwk,
                encrypted_private=None
                if row.encrypted_private is None
                else bytes(row.encrypted_private),
                created_at=row.created_at,
                activated_at=row.activated_at,
                retired_at=row.retired_at,
                expires_at=row.expires_at,
            )
            for row in rows
        ]

    async def insert_key(self, key: KeyRecord) -> None:
        """Store a new key; Conflict if the kid exists."""

        async def _body(conn: AsyncConnection) -> None:
            await conn.execute(
                keys.insert().values(
                    kid=key.kid,
                    alg=key.alg,
                    state=key.state,
                    public_jwk=key.public_jwk,
                    encrypted_private=key.encrypted_private,
                    created_at=key.created_at,
                    activated_at=key.activated_at,
                    retired_at=key.retired_at,
                    expires_at=key.expires_at,
                )
            )

        await self._transaction(_body)

    async def update_key(
        self,
        kid: str,
        *,
        state: KeyState,
        activated_at: float | None = None,
        retired_at: float | None = None,
        expires_at: float | None = None,
        drop_private: bool = False,
    ) -> None:
        """Move a key to ``state``, setting the given (non-None) times; with
        ``drop_private``, erase its private part. An unknown kid changes nothing."""
        values: dict[str, Any] = {"state": state}
        if activated_at is not None:
            values["activated_at"] = activated_at
        if retired_at is not None:
            values["retired_at"] = retired_at
        if expires_at is not None:
            values["expires_at"] = expires_at
        if drop_private:
            values["encrypted_private"] = None

        async def _body(conn: AsyncConnection) -> None:
            await conn.execute(update(keys).where(keys.c.kid == kid).values(values))

        await self._transaction(_body)

    def key_lock(self) -> AbstractAsyncContextManager[None]:
        """Held while rotating keys, so that only one instance rotates at a time.

        PostgreSQL: a transaction-scoped advisory lock, held on a connection of its own.
        SQLite: a ``BEGIN IMMEDIATE`` transaction (SQLite's write lock) held for the whole
        block; this store's calls made by the same task inside the block run in that
        transaction, and commit when the block exits (they roll back if it raises).
        Writes from other tasks wait until the block exits.
        """
        return self._key_lock()

    @asynccontextmanager
    async def _key_lock(self) -> AsyncIterator[None]:
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - always called from a task
            raise RuntimeError("key_lock needs a running task")
        if self._key_owner is task:  # re-entered by the task that holds it
            yield
            return
        if self._sqlite:
            async with (
                self._write_lock,
                self._translated(),
                self._write_engine.connect() as conn,
                conn.begin(),  # BEGIN IMMEDIATE: SQLite's write lock, until commit
            ):
                token = _HELD.set((self, task, conn))
                self._key_owner = task
                try:
                    yield
                finally:
                    self._key_owner = None
                    _HELD.reset(token)
            return
        async with (
            self._key_mutex,
            self._translated(),
            self._engine.connect() as conn,
            conn.begin(),  # the advisory lock is released when this transaction ends
        ):
            await xact_lock(conn, PG_KEY_LOCK)
            self._key_owner = task
            try:
                yield
            finally:
                self._key_owner = None

    # -- AuditLog ----------------------------------------------------------------------

    async def append_audit(
        self,
        event: str,
        *,
        at: float,
        user_id: str | None = None,
        sid: str | None = None,
        ip: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record an event; ``detail`` must be JSON-serialisable (TypeError otherwise)."""
        body_detail = json.loads(_dumps(detail or {}))  # what a reader will get back

        async def _body(conn: AsyncConnection) -> None:
            if self._postgresql:  # SQLite's write lock already serialises appends
                await xact_lock(conn, PG_AUDIT_LOCK)
            prev = (
                await conn.execute(
                    select(audit_events.c.hash).order_by(audit_events.c.id.desc()).limit(1)
                )
            ).scalar_one_or_none()
            new_id = (
                await conn.execute(
                    audit_events.insert()
                    .values(
                        at=at,
                        event=event,
                        user_id=user_id,
                        sid=sid,
                        ip=ip,
                        detail=_dumps(body_detail),
                        prev_hash=prev,
                    )
                    .returning(audit_events.c.id)
                )
            ).scalar_one()
            digest = audit_hash(
                id=new_id,
                at=at,
                event=event,
                user_id=user_id,
                sid=sid,
                ip=ip,
                detail=body_detail,
                prev_hash=prev,
            )
            await conn.execute(
                update(audit_events).where(audit_events.c.id == new_id).values(hash=digest)
            )

        await self._transaction(_body)

    async def query_audit(
        self,
        *,
        user_id: str | None = None,
        event: str | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Events in id order, filtered by user, event name and id > ``after``."""
        query = select(audit_events).order_by(audit_events.c.id).limit(limit)
        if user_id is not None:
            query = query.where(audit_events.c.user_id == user_id)
        if event is not None:
            query = query.where(audit_events.c.event == event)
        if after is not None:
            query = query.where(audit_events.c.id > after)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            AuditRecord(
                id=row.id,
                at=row.at,
                event=row.event,
                user_id=row.user_id,
                sid=row.sid,
                ip=row.ip,
                detail=json.loads(row.detail),
                prev_hash=row.prev_hash,
                hash=row.hash,
            )
            for row in rows
        ]

    async def audit_chain(self, *, after: int | None, limit: int) -> list[AuditRecord]:
        """Every event with id > ``after``, in id order, with its hashes."""
        return await self.query_audit(after=after, limit=limit)

    # -- ClientStore ------------------------------------------------------------------

    async def create_client(self, client: ClientRecord) -> None:
        """Insert a client; Conflict if the id exists. Its scopes are stored unique and
        sorted."""
        values = {
            "client_id": client.client_id,
            "name": client.name,
            "scopes": _dumps(list(_names(client.scopes))),
            "secret_hash": client.secret_hash,
            "public_jwk": client.public_jwk,
            "access_ttl": client.access_ttl,
            "created_at": client.created_at,
            "revoked_at": client.revoked_at,
        }

        async def _body(conn: AsyncConnection) -> None:
            await conn.execute(clients.insert().values(values))

        await self._transaction(_body)

    @staticmethod
    def _client(row: Row[Any]) -> ClientRecord:
        return ClientRecord(
            client_id=row.client_id,
            name=row.name,
            scopes=tuple(json.loads(row.scopes)),
            created_at=row.created_at,
            secret_hash=row.secret_hash,
            public_jwk=row.public_jwk,
            access_ttl=row.access_ttl,
            revoked_at=row.revoked_at,
        )

    async def get_client(self, client_id: str) -> ClientRecord | None:
        """A client by id (revoked ones too)."""
        async with self._read() as conn:
            row = (
                await conn.execute(select(clients).where(clients.c.client_id == client_id))
            ).first()
        return None if row is None else self._client(row)

    async def list_clients(self) -> list[ClientRecord]:
        """Every client (revoked ones too), oldest first."""
        query = select(clients).order_by(clients.c.created_at, clients.c.client_id)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [self._client(row) for row in rows]

    async def revoke_client(self, client_id: str, *, now: float) -> bool:
        """Mark a client revoked; False if unknown or already revoked."""

        async def _body(conn: AsyncConnection) -> bool:
            result = await conn.execute(
                update(clients)
                .where(clients.c.client_id == client_id, clients.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            return result.rowcount == 1

        return await self._transaction(_body)

    async def replace_client_secret(self, client_id: str, *, old: str, new: str) -> bool:
        """Store ``new`` as the client's secret hash if it is still ``old``; one
        conditional UPDATE."""

        async def _body(conn: AsyncConnection) -> bool:
            result = await conn.execute(
                update(clients)
                .where(clients.c.client_id == client_id, clients.c.secret_hash == old)
                .values(secret_hash=new)
            )
            return result.rowcount == 1

        return await self._transaction(_body)

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

        async def _body(conn: AsyncConnection) -> int:
            result = await conn.execute(
                delete(client_assertions).where(client_assertions.c.expires_at <= now)
            )
            return result.rowcount

        return await self._transaction(_body)

    # -- Counters ----------------------------------------------------------------------

    async def hit(self, key: str, *, now: float, window: float) -> CounterState:
        """Add one to ``key``'s window, starting a new window at ``now`` if the old one
        has passed (``window_start + window <= now``); return it. One atomic upsert."""
        passed = counters.c.window_start + window <= now
        stmt = self._insert(counters).values(key=key, count=1, window_start=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=[counters.c.key],
            set_={
                "count": case((passed, 1), else_=counters.c.count + 1),
                "window_start": case((passed, now), else_=counters.c.window_start),
            },
        )

        async def _body(conn: AsyncConnection) -> CounterState:
            row = (
                await conn.execute(stmt.returning(counters.c.count, counters.c.window_start))
            ).one()
            # Row is a tuple: ``row.count`` would be tuple.count, so index it.
            return CounterState(count=int(row[0]), window_start=float(row[1]))

        return await self._transaction(_body)

    async def peek(self, key: str, *, now: float, window: float) -> CounterState:
        """The current window of ``key``; count 0 (and a window starting at ``now``) if
        there is none or it has passed."""
        async with self._read() as conn:
            row = (
                await conn.execute(
                    select(counters.c.count, counters.c.window_start).where(counters.c.key == key)
                )
            ).first()
        if row is None or row[1] + window <= now:
            return CounterState(count=0, window_start=now)
        return CounterState(count=int(row[0]), window_start=float(row[1]))

    async def reset(self, key: str) -> None:
        """Forget ``key``."""

        async def _body(conn: AsyncConnection) -> None:
            await conn.execute(delete(counters).where(counters.c.key == key))

        await self._transaction(_body)

    async def release(self, key: str, *, window_start: float) -> None:
        """Take back one hit from ``key`` if its window still starts at ``window_start``,
        never below zero. One conditional UPDATE."""
        stmt = (
            update(counters)
            .where(
                counters.c.key == key,
                counters.c.window_start == window_start,
                counters.c.count > 0,
            )
            .values(count=counters.c.count - 1)
        )

        async def _body(conn: AsyncConnection) -> None:
            await conn.execute(stmt)

        await self._transaction(_body)


if TYPE_CHECKING:

    def _conforms(store: SqlStorage) -> Storage:
        """mypy checks here that SqlStorage implements every storage Protocol."""
        return store


__all__ = ["PG_AUDIT_LOCK", "PG_KEY_LOCK", "PG_REVOCATION_LOCK", "SqlStorage"]
