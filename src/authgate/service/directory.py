"""The directory: every change to who a user is allowed to be, in one call each.

A role change, a role edit, disabling, enabling and deleting each increment the affected
users' privilege version (``ver``) in the store's own transaction, publish it on the
revocation feed so that every guard drops the older tokens, end sessions where the change
calls for it, and write the audit event. The admin API and the CLI call these and repeat
none of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import KW_ONLY, dataclass

from authgate.clock import Clock
from authgate.errors import NotFound
from authgate.service.accounts import check_permissions, check_role_name
from authgate.service.audit import Audit
from authgate.service.revocation import Revocations
from authgate.service.sessions import Sessions
from authgate.storage.base import RoleRecord, UserStore


@dataclass(frozen=True, eq=False, repr=False)
class Directory:
    """Admin rules: roles, role edits, disable, enable, delete."""

    users: UserStore
    _: KW_ONLY
    sessions: Sessions
    revocations: Revocations
    audit: Audit
    clock: Clock

    async def _existing_roles(self, roles: Sequence[str]) -> list[str]:
        names = sorted({check_role_name(role) for role in roles})
        for name in names:
            if await self.users.get_role(name) is None:
                raise NotFound(f"no role {name!r}", role=name)
        return names

    async def _publish(self, versions: dict[str, int]) -> None:
        for user_id, ver in sorted(versions.items()):
            await self.revocations.revoke_user(user_id, ver=ver)

    async def set_roles(self, user_id: str, roles: Sequence[str]) -> None:
        """Replace the user's roles (each must exist; NotFound otherwise, or for no such
        user). Every access token issued before dies; sessions go on, so a refresh gets a
        token with the new roles."""
        names = await self._existing_roles(roles)
        # Checked again under the roles' locks: one deleted meanwhile is NotFound.
        ver = await self.users.set_roles(user_id, names, must_exist=True)
        if ver is None:
            raise NotFound("no such user")
        await self._publish({user_id: ver})
        await self.audit.record("roles_changed", user_id=user_id, roles=names)

    async def set_disabled(self, user_id: str, disabled: bool) -> None:
        """Disable (every session ends, every token dies) or enable a user."""
        ver = await self.users.set_disabled(user_id, disabled, now=self.clock.now())
        if ver is None:
            raise NotFound("no such user")
        await self._publish({user_id: ver})
        await self.audit.record("user_disabled" if disabled else "user_enabled", user_id=user_id)
        if disabled:
            await self.sessions.end_all(user_id, reason="user_disabled")

    async def delete_user(self, user_id: str) -> None:
        """Delete a user; every session goes with it, and a version floor above any token
        it could ever have had makes every guard drop them."""
        ver = await self.users.delete_user(user_id)
        if ver is None:
            raise NotFound("no such user")
        await self._publish({user_id: ver + 1})
        await self.audit.record("user_deleted", user_id=user_id)

    async def put_role(self, name: str, permissions: Iterable[str]) -> RoleRecord:
        """Create or replace a role; the tokens of its holders die (a refresh updates them)."""
        existing = await self.users.get_role(check_role_name(name))
        role = RoleRecord(
            name=name,
            permissions=check_permissions(permissions),
            created_at=existing.created_at if existing else self.clock.now(),
        )
        await self._publish(await self.users.put_role(role))
        await self.audit.record("role_saved", role=name, permissions=list(role.permissions))
        return role

    async def delete_role(self, name: str) -> list[str]:
        """Delete a role (NotFound if none); the tokens of its former holders die. Returns
        their ids."""
        holders = await self.users.delete_role(name)
        if holders is None:
            raise NotFound("no such role")
        await self._publish(holders)
        await self.audit.record("role_deleted", role=name)
        return sorted(holders)
