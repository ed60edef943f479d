"""LinkTokenStore on SQL: single-use tokens mailed as links, each used and applied in one
transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Row, and_, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from authgate.storage.base import LinkPurpose, LinkRedemption, LinkTokenRecord
from authgate.storage.sql._base import SqlBase, mark_revoked, record_of, values_of
from authgate.storage.sql.tables import link_tokens, sessions, users


def _live(now: float) -> ColumnElement[bool]:
    """Tokens neither used nor ended nor expired at ``now``."""
    return and_(
        link_tokens.c.used_at.is_(None),
        link_tokens.c.ended_at.is_(None),
        link_tokens.c.expires_at > now,
    )


def end_link_tokens(
    user_id: str,
    *,
    now: float,
    reason: str,
    purposes: tuple[LinkPurpose, ...] | None = None,
    keep: str | None = None,
) -> Any:
    """The statement that ends the user's live tokens (of ``purposes``, all if None; but
    ``keep``), recording ``reason``."""
    where = [link_tokens.c.user_id == user_id, _live(now)]
    if purposes is not None:
        where.append(link_tokens.c.purpose.in_(purposes))
    if keep is not None:
        where.append(link_tokens.c.digest != keep)
    return update(link_tokens).where(*where).values(ended_at=now, ended_by=reason)


# The links that move control of an account: a password change or reset ends them all.
CONTROL_PURPOSES: tuple[LinkPurpose, ...] = ("reset_password", "change_email")


def _record(row: Row[Any]) -> LinkTokenRecord:
    return record_of(LinkTokenRecord, row)


class _Stale(Exception):
    """The token no longer matches the account: roll the redemption back."""


class SqlLinkTokens(SqlBase):
    """LinkTokenStore: issue (superseding the older token), redeem (use and apply at once)."""

    async def issue_link_token(self, token: LinkTokenRecord) -> bool:
        """End the user's live tokens of the same purpose (``superseded``) and insert
        ``token``, in one transaction; False if there is no such user."""

        async def _body(conn: AsyncConnection) -> bool:
            # The user's row first: a delete racing this waits, or this finds no user.
            held = select(users.c.id).where(users.c.id == token.user_id).with_for_update()
            if (await conn.execute(held)).first() is None:
                return False
            await conn.execute(
                end_link_tokens(
                    token.user_id,
                    now=token.created_at,
                    reason="superseded",
                    purposes=(token.purpose,),
                )
            )
            await conn.execute(link_tokens.insert().values(values_of(token, link_tokens)))
            return True

        return await self._transaction(_body)

    async def get_link_token(self, digest: str) -> LinkTokenRecord | None:
        """A token by digest, in whatever state."""
        async with self._read() as conn:
            query = select(link_tokens).where(link_tokens.c.digest == digest)
            row = (await conn.execute(query)).first()
        return None if row is None else _record(row)

    async def redeem_link_token(
        self,
        digest: str,
        *,
        purpose: LinkPurpose,
        now: float,
        password_hash: str | None = None,
    ) -> LinkRedemption | None:
        """Use a live token and apply it in one transaction (see the Protocol); None and
        nothing changed if it is not a live token of ``purpose``."""
        if purpose == "reset_password" and password_hash is None:
            raise ValueError("a password reset needs the new password's hash")
        use = (
            update(link_tokens)
            .where(link_tokens.c.digest == digest, link_tokens.c.purpose == purpose, _live(now))
            .values(used_at=now)
            .returning(*link_tokens.c)
        )

        async def _body(conn: AsyncConnection) -> LinkRedemption | None:
            row = (await conn.execute(use)).first()
            if row is None:
                return None
            token = _record(row)
            same_address = and_(users.c.id == token.user_id, users.c.email == token.email)
            if purpose == "verify_email":
                verified = update(users).where(same_address).values(email_verified=True)
                if (await conn.execute(verified)).rowcount != 1:
                    raise _Stale
                return LinkRedemption(token=token)
            if purpose == "reset_password":
                changed = (
                    update(users)
                    .where(users.c.id == token.user_id)
                    .values(password_hash=password_hash)
                    .returning(users.c.email)
                )
                email = (await conn.execute(changed)).scalar_one_or_none()
                if email is None:
                    raise _Stale
                if email == token.email:
                    await conn.execute(
                        update(users).where(same_address).values(email_verified=True)
                    )
                revoke = mark_revoked(
                    sessions,
                    sessions.c.user_id == token.user_id,
                    sessions.c.expires_at > now,
                    now=now,
                ).returning(sessions.c.sid)
                ended = tuple(sorted((await conn.execute(revoke)).scalars()))
                await conn.execute(
                    end_link_tokens(
                        token.user_id,
                        now=now,
                        reason="password_changed",
                        purposes=CONTROL_PURPOSES,
                    )
                )
                return LinkRedemption(token=token, ended_sids=ended)
            moved = (
                update(users)
                .where(users.c.id == token.user_id)
                .values(email=token.email, email_verified=True, ver=users.c.ver + 1)
                .returning(users.c.ver)
            )
            ver = (await conn.execute(moved)).scalar_one_or_none()
            if ver is None:
                raise _Stale
            await conn.execute(end_link_tokens(token.user_id, now=now, reason="email_changed"))
            return LinkRedemption(token=token, ver=int(ver))

        try:
            return await self._transaction(_body)
        except _Stale:
            return None

    async def purge_link_tokens(self, *, before: float) -> int:
        """Delete tokens that expired before ``before``."""

        async def _body(conn: AsyncConnection) -> int:
            result = await conn.execute(
                delete(link_tokens).where(link_tokens.c.expires_at < before)
            )
            return int(result.rowcount or 0)

        return await self._transaction(_body)
