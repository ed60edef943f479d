"""UserStore on SQL: users, roles, and the ``ver`` of every privilege change."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import ColumnElement, Row, Select, bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from authgate.errors import NotFound
from authgate.storage.base import RoleRecord, UserRecord
from authgate.storage.sql._base import (
    Prefixed,
    SqlBase,
    dumps,
    mark_revoked,
    names,
    record_of,
    values_of,
)
from authgate.storage.sql.links import CONTROL_PURPOSES, end_link_tokens
from authgate.storage.sql.tables import roles, sessions, user_roles, users

# A user with each of its roles and their permissions: one statement (the hot path).
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


def _user_and_roles(condition: ColumnElement[bool]) -> Select[Any]:
    """A user with its role names (a row per role, or one row with none): one statement."""
    return (
        select(users, user_roles.c.role.label("role_name"))
        .outerjoin(user_roles, user_roles.c.user_id == users.c.id)
        .where(condition)
        .order_by(user_roles.c.role)
    )


# The lookups of every login and every user read: built once, only their value bound.
_USER_BY_ID: Final = _user_and_roles(users.c.id == bindparam("b_id"))
_USER_BY_EMAIL: Final = _user_and_roles(users.c.email == bindparam("b_email"))


def user_record(row: Row[Any] | Prefixed, role_names: Sequence[str]) -> UserRecord:
    """A UserRecord from a ``users`` row and the user's role names."""
    return record_of(
        UserRecord,
        row,
        disabled=bool(row.disabled),
        email_verified=bool(row.email_verified),
        roles=tuple(role_names),
    )


# The user's row, held (PostgreSQL: FOR SHARE) until the transaction ends: a concurrent
# privilege or password change, or a delete, waits for this transaction, or it waits for
# them. Taken in a statement of its own, BEFORE the joined read: a locking read that had to
# wait re-reads only the locked row (PostgreSQL's EvalPlanQual), so a joined FOR SHARE could
# pair the new ``ver`` with the roles of its old snapshot. The next statement takes a new
# snapshot, after the wait, and sees every committed change at once.
_HOLD_USER: Final = (
    select(users.c.id).where(users.c.id == bindparam("user_id")).with_for_update(read=True)
)


async def user_and_permissions(
    conn: AsyncConnection, user_id: str, *, hold: bool = False
) -> tuple[UserRecord | None, tuple[str, ...]]:
    """The user with its roles, and the union of their permissions, sorted: one statement,
    so that both come from the same snapshot. With ``hold``, the user's row stays locked
    against writers until the transaction ends."""
    if hold:
        await conn.execute(_HOLD_USER, {"user_id": user_id})
    rows = (await conn.execute(_USER_WITH_ROLES, {"user_id": user_id})).all()
    return user_and_permissions_of(rows)


def user_and_permissions_of(
    rows: Sequence[Row[Any]], prefix: str = ""
) -> tuple[UserRecord | None, tuple[str, ...]]:
    """The user and its permissions from the rows of a read joined like
    ``_USER_WITH_ROLES`` (a row per role, with ``role_name`` and ``role_permissions``);
    with ``prefix``, the user's columns are named ``prefix + name``."""
    if not rows:
        return None, ()
    role_names = [row.role_name for row in rows if row.role_name is not None]
    found: set[str] = set()
    for row in rows:
        if row.role_permissions is not None:
            found.update(json.loads(row.role_permissions))
    first: Row[Any] | Prefixed = Prefixed(rows[0], prefix) if prefix else rows[0]
    return user_record(first, role_names), tuple(sorted(found))


async def _insert_roles(
    conn: AsyncConnection, user_id: str, role_names: Sequence[str], *, must_exist: bool = False
) -> None:
    """Grant the roles, holding the rows of those that exist (PostgreSQL: FOR SHARE) until
    the transaction ends: an edit of a role's permissions then either waits for this grant
    and sees the new holder, or runs first; it never misses a holder it should move. With
    ``must_exist``, a role deleted since the caller checked it is NotFound (and the whole
    transaction rolls back), never a dangling grant that a role of the same name revives."""
    wanted = names(role_names)
    if not wanted:
        return
    held = select(roles.c.name).where(roles.c.name.in_(wanted)).with_for_update(read=True)
    found = set((await conn.execute(held)).scalars())
    missing = sorted(set(wanted) - found)
    if must_exist and missing:
        raise NotFound(f"no role {missing[0]!r}", role=missing[0])
    await conn.execute(user_roles.insert(), [{"user_id": user_id, "role": n} for n in wanted])


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


async def _bump(conn: AsyncConnection, user_ids: ColumnElement[bool]) -> dict[str, int]:
    """Increment ``ver`` of the users matched; their new versions. Every write that changes
    what a user may do runs this in its own transaction, so that a token whose privileges
    were read before that write carries a ``ver`` that is already dead."""
    bump = update(users).where(user_ids).values(ver=users.c.ver + 1)
    result = await conn.execute(bump.returning(users.c.id, users.c.ver))
    return {row.id: int(row.ver) for row in result}


async def _permissions_of(conn: AsyncConnection, role_names: Sequence[str]) -> tuple[str, ...]:
    if not role_names:
        return ()
    rows = await conn.execute(select(roles.c.permissions).where(roles.c.name.in_(role_names)))
    found: set[str] = set()
    for (perms,) in rows:
        found.update(json.loads(perms))
    return tuple(sorted(found))


def _holders(role: str) -> ColumnElement[bool]:
    """The users holding ``role``."""
    return users.c.id.in_(select(user_roles.c.user_id).where(user_roles.c.role == role))


def _role(row: Row[Any]) -> RoleRecord:
    return record_of(RoleRecord, row, permissions=tuple(json.loads(row.permissions)))


class SqlUsers(SqlBase):
    """UserStore: users and roles. Every privilege change increments the ``ver`` of the
    users it touches, in the same transaction."""

    async def create_user(self, user: UserRecord) -> None:
        """Insert a user and its roles; Conflict if the email (or id) is taken."""

        async def _body(conn: AsyncConnection) -> None:
            await conn.execute(users.insert().values(values_of(user, users)))
            await _insert_roles(conn, user.id, user.roles)

        await self._transaction(_body)

    async def _get_user_where(
        self, query: Select[Any], params: dict[str, str]
    ) -> UserRecord | None:
        async with self._read_one() as conn:
            rows = (await conn.execute(query, params)).all()
        if not rows:
            return None
        return user_record(rows[0], [row.role_name for row in rows if row.role_name is not None])

    async def get_user(self, user_id: str) -> UserRecord | None:
        """A user by id, with roles: one statement."""
        return await self._get_user_where(_USER_BY_ID, {"b_id": user_id})

    async def get_user_by_email(self, email: str) -> UserRecord | None:
        """A user by normalised email (compared exactly), with roles: one statement."""
        return await self._get_user_where(_USER_BY_EMAIL, {"b_email": email})

    async def list_users(
        self, *, after: str | None, limit: int, email_contains: str | None = None
    ) -> list[UserRecord]:
        """Users ordered by id, strictly after ``after``; with ``email_contains``, those
        whose email contains it (``%``, ``_`` and ``\\`` match themselves)."""
        query = select(users).order_by(users.c.id).limit(limit)
        if after is not None:
            query = query.where(users.c.id > after)
        if email_contains:
            query = query.where(users.c.email.contains(email_contains, autoescape=True))
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
            found = await _roles_of(conn, [row.id for row in rows])
        return [user_record(row, found[row.id]) for row in rows]

    async def update_user(self, user_id: str, *, name: str | None = None) -> bool:
        """Change the given (non-None) fields; False if there is no such user. Privileges
        change only through the methods that also increment ``ver``, and the password only
        through :meth:`change_password` and :meth:`rehash_password`."""
        values: dict[str, Any] = {}
        if name is not None:
            values["name"] = name
        if values:
            return await self._changed_one(
                update(users).where(users.c.id == user_id).values(values)
            )

        async def _exists(conn: AsyncConnection) -> bool:
            query = select(users.c.id).where(users.c.id == user_id)
            return (await conn.execute(query)).first() is not None

        return await self._transaction(_exists)

    async def change_password(
        self, user_id: str, password_hash: str, *, keep_sid: str | None, now: float
    ) -> list[str] | None:
        """Store the new hash and revoke every live session but ``keep_sid``, in one
        transaction: a login checked against the old hash either committed its session
        before (and it is revoked here) or finds the new hash (and opens nothing). The
        revoked sids, sorted, or None if there is no such user."""
        found = (
            update(users)
            .where(users.c.id == user_id)
            .values(password_hash=password_hash)
            .returning(users.c.id)
        )
        conditions = [sessions.c.user_id == user_id, sessions.c.expires_at > now]
        if keep_sid is not None:
            conditions.append(sessions.c.sid != keep_sid)
        revoke = mark_revoked(sessions, *conditions, now=now).returning(sessions.c.sid)
        # A reset or email-change link mailed before the change must not undo it.
        end_resets = end_link_tokens(
            user_id, now=now, reason="password_changed", purposes=CONTROL_PURPOSES
        )

        async def _body(conn: AsyncConnection) -> list[str] | None:
            if (await conn.execute(found)).first() is None:
                return None
            ended = sorted((await conn.execute(revoke)).scalars())
            await conn.execute(end_resets)
            return ended

        return await self._transaction(_body)

    async def set_email_verified(self, user_id: str, verified: bool) -> bool:
        """Mark the user's address verified (or not); False if there is no such user."""
        return await self._changed_one(
            update(users).where(users.c.id == user_id).values(email_verified=verified)
        )

    async def rehash_password(self, user_id: str, *, old_hash: str, new_hash: str) -> bool:
        """Replace ``old_hash`` by ``new_hash`` only if it is still the stored one: a rehash
        never undoes a password change that landed meanwhile."""
        return await self._changed_one(
            update(users)
            .where(users.c.id == user_id, users.c.password_hash == old_hash)
            .values(password_hash=new_hash)
        )

    async def set_disabled(
        self, user_id: str, disabled: bool, *, now: float | None = None
    ) -> int | None:
        """Disable or enable a user and increment its ``ver``; disabling also ends every
        live link mailed to the user (at ``now``, the system clock's if None). The new
        ``ver`` or None."""
        ended_at = time.time() if now is None else now

        async def _body(conn: AsyncConnection) -> int | None:
            await conn.execute(update(users).where(users.c.id == user_id).values(disabled=disabled))
            if disabled:
                await conn.execute(end_link_tokens(user_id, now=ended_at, reason="disabled"))
            return (await _bump(conn, users.c.id == user_id)).get(user_id)

        return await self._transaction(_body)

    async def bump_version(self, user_id: str) -> int | None:
        """Increment the user's ``ver``; the new ``ver``, or None if there is no such user."""

        async def _body(conn: AsyncConnection) -> int | None:
            return (await _bump(conn, users.c.id == user_id)).get(user_id)

        return await self._transaction(_body)

    async def set_roles(
        self, user_id: str, roles: Sequence[str], *, must_exist: bool = False
    ) -> int | None:
        """Replace the user's roles and increment its ``ver``; the new ``ver`` or None.
        With ``must_exist``, NotFound (nothing changed) for a role that does not exist."""

        async def _body(conn: AsyncConnection) -> int | None:
            # The increment takes the user's row lock: two concurrent replacements must not
            # both delete the old roles and then both insert theirs.
            ver = (await _bump(conn, users.c.id == user_id)).get(user_id)
            if ver is None:
                return None
            await conn.execute(delete(user_roles).where(user_roles.c.user_id == user_id))
            await _insert_roles(conn, user_id, roles, must_exist=must_exist)
            return ver

        return await self._transaction(_body)

    async def delete_user(self, user_id: str) -> int | None:
        """Delete a user; its roles, sessions and refresh tokens go with it (ON DELETE
        CASCADE). The ``ver`` it had at that moment (any token of it carries at most that),
        or None if there was no such user."""
        stmt = delete(users).where(users.c.id == user_id).returning(users.c.ver)

        async def _body(conn: AsyncConnection) -> int | None:
            ver = (await conn.execute(stmt)).scalar_one_or_none()
            return None if ver is None else int(ver)

        return await self._transaction(_body)

    async def put_role(self, role: RoleRecord) -> dict[str, int]:
        """Create a role, or replace the permissions of an existing one (its
        ``created_at`` stays the first one); increment the ``ver`` of every holder in the
        same transaction and return their new versions."""
        permissions = dumps(list(names(role.permissions)))
        stmt = self._insert(roles).values(
            name=role.name, permissions=permissions, created_at=role.created_at
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[roles.c.name], set_={"permissions": stmt.excluded.permissions}
        )

        async def _body(conn: AsyncConnection) -> dict[str, int]:
            await conn.execute(stmt)
            return await _bump(conn, _holders(role.name))

        return await self._transaction(_body)

    async def get_role(self, name: str) -> RoleRecord | None:
        """A role by name."""
        async with self._read() as conn:
            row = (await conn.execute(select(roles).where(roles.c.name == name))).first()
        return None if row is None else _role(row)

    async def list_roles(self) -> list[RoleRecord]:
        """Every role, by name."""
        async with self._read() as conn:
            rows = (await conn.execute(select(roles).order_by(roles.c.name))).all()
        return [_role(row) for row in rows]

    async def delete_role(self, name: str) -> dict[str, int] | None:
        """Delete a role, remove it from every user and increment their ``ver``; each former
        holder's new ``ver``, or None (nothing changed) if there was no such role."""

        async def _body(conn: AsyncConnection) -> dict[str, int] | None:
            result = await conn.execute(delete(roles).where(roles.c.name == name))
            if result.rowcount != 1:
                return None
            bumped = await _bump(conn, _holders(name))
            await conn.execute(delete(user_roles).where(user_roles.c.role == name))
            return bumped

        return await self._transaction(_body)

    async def permissions_for(self, roles: Sequence[str]) -> tuple[str, ...]:
        """The union of the permissions of these roles, sorted (one query)."""
        async with self._read() as conn:
            return await _permissions_of(conn, list(roles))

    async def users_with_role(self, name: str) -> list[str]:
        """Ids of the users holding a role, sorted."""
        async with self._read() as conn:
            result = await conn.execute(
                select(user_roles.c.user_id)
                .where(user_roles.c.role == name)
                .order_by(user_roles.c.user_id)
            )
            return list(result.scalars())
