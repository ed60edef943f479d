"""Accounts: register, authenticate, change password, roles and permissions."""

from __future__ import annotations

import dataclasses
import re
import secrets
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import KW_ONLY, dataclass

from email_validator import EmailNotValidError, validate_email

from authgate.clock import Clock
from authgate.errors import (
    Conflict,
    EmailNotVerified,
    EmailTaken,
    InvalidCredentials,
    InvalidRequest,
    NotFound,
    RegistrationClosed,
)
from authgate.passwords import PasswordHasher, check_new_password
from authgate.service.audit import Audit
from authgate.service.limits import LoginThrottle
from authgate.service.revocation import Revocations
from authgate.storage.base import AuditEntry, RoleRecord, UserRecord, UserStore

ADMIN_PERMISSION = "authgate:admin"
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")
_NAME = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,63}")
_PERMISSION = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,128}")  # RFC 6749 scope-token


def _fold_email(email: str) -> str:
    if not isinstance(email, str) or len(email) > 320:
        raise InvalidRequest("email is not valid", field="email")
    normalized = unicodedata.normalize("NFKC", email).strip().casefold()
    if not _EMAIL.fullmatch(normalized):
        raise InvalidRequest("email is not valid", field="email")
    return normalized


def normalize_email(email: str) -> str:
    """A new address: NFKC, case-folded, surrounding whitespace stripped, then checked by
    email-validator (no control characters, a dotted domain, no DNS lookup).
    InvalidRequest if it is not an email address."""
    normalized = _fold_email(email)
    try:
        validate_email(normalized, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidRequest("email is not valid", field="email") from exc
    return normalized


def lookup_email(email: str) -> str:
    """An address to look an account up by: normalised as :func:`normalize_email`, but
    without its stricter checks, so that an account made before them can still log in."""
    return _fold_email(email)


def check_display_name(name: str | None) -> str | None:
    """A display name: at most 200 characters, no control or line-break characters (it
    appears in mails and logs). InvalidRequest otherwise."""
    if name is None:
        return None
    if (
        not isinstance(name, str)
        or len(name) > 200
        or any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name)
    ):
        raise InvalidRequest("the name has a control character or is too long", field="name")
    return name


def check_role_name(name: str) -> str:
    """Role names: lower-case letters, digits and ``_.:-``, at most 64."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRequest(f"invalid role name {name!r}", field="name")
    return name


def check_permissions(perms: Iterable[str]) -> tuple[str, ...]:
    """Permissions are RFC 6749 scope tokens (no spaces, quotes or backslashes)."""
    out = []
    for perm in perms:
        if not isinstance(perm, str) or not _PERMISSION.fullmatch(perm):
            raise InvalidRequest(f"invalid permission {perm!r}", field="permissions")
        out.append(perm)
    return tuple(sorted(set(out)))


def new_user_id() -> str:
    """An opaque user id (never the email)."""
    return "usr_" + secrets.token_urlsafe(16)


@dataclass(frozen=True, eq=False, repr=False)
class Accounts:
    """The account use-cases."""

    users: UserStore
    _: KW_ONLY
    hasher: PasswordHasher
    throttle: LoginThrottle
    audit: Audit
    revocations: Revocations
    clock: Clock
    registration_open: bool = True
    require_verified_email: bool = False
    # Enumeration-safe registration: an unverified account's right password fails like a
    # wrong one (and counts as a failure), so a login never tells a new address from a
    # taken one.
    hide_unverified: bool = False

    async def create_user(
        self,
        email: str,
        password: str,
        *,
        name: str | None = None,
        roles: Sequence[str] = (),
        self_service: bool = False,
        password_hash: str | None = None,
    ) -> UserRecord:
        """Create an account; EmailTaken if the normalised email exists. ``password_hash``
        is the password's hash when the caller made it already."""
        if self_service and not self.registration_open:
            raise RegistrationClosed("registration is closed")
        normalized = normalize_email(email)
        check_new_password(password)
        check_display_name(name)
        for role in roles:
            if await self.users.get_role(check_role_name(role)) is None:
                raise NotFound(f"no role {role!r}", role=role)
        if password_hash is None:
            password_hash = await self.hasher.hash(password)
        user = UserRecord(
            id=new_user_id(),
            email=normalized,
            password_hash=password_hash,
            created_at=self.clock.now(),
            name=name,
            roles=tuple(sorted(set(roles))),
        )
        try:
            await self.users.create_user(user)
        except Conflict as exc:
            raise EmailTaken("an account with this email exists") from exc
        await self.audit.record("user_created", user_id=user.id, roles=list(user.roles))
        return user

    async def authenticate(
        self, email: str, password: str, *, ip: str | None, record_ok: bool = True
    ) -> UserRecord:
        """Check a login, through the throttle (Throttled while locked). Unknown users cost
        a dummy verify and get the same InvalidCredentials. With ``require_verified_email``,
        EmailNotVerified for the right password of an unverified address. Without
        ``record_ok``, the caller records ``login_ok`` itself (:meth:`login_ok`)."""
        try:
            normalized: str | None = lookup_email(email)
        except InvalidRequest:
            normalized = None
        account = normalized or "\x00invalid"

        async def check() -> UserRecord:
            user = await self.users.get_user_by_email(normalized) if normalized else None
            ok = await self.hasher.verify(user.password_hash if user else None, password)
            hidden = self.hide_unverified and user is not None and not user.email_verified
            if not ok or user is None or user.disabled or hidden:
                await self.audit.record("login_failed", user_id=user.id if user else None, ip=ip)
                raise InvalidCredentials("invalid email or password")
            return user

        user = await self.throttle.attempt(account, ip, check)
        if self.require_verified_email and not user.email_verified:
            # Only after the right password: the refusal says nothing to a guesser.
            await self.audit.record("login_unverified", user_id=user.id, ip=ip)
            raise EmailNotVerified("the email address is not verified yet")
        if self.hasher.needs_rehash(user.password_hash):
            new_hash = await self.hasher.hash(password)
            if await self.users.rehash_password(
                user.id, old_hash=user.password_hash, new_hash=new_hash
            ):
                user = dataclasses.replace(user, password_hash=new_hash)
        if record_ok:
            await self.audit.record_entry(self.login_ok(user, ip=ip))
        # The hash that was checked: a session opens only while it is still the stored one.
        return user

    def login_ok(self, user: UserRecord, *, ip: str | None) -> AuditEntry:
        """The audit event of an accepted password, for a caller that appends it with its
        next write (``Sessions.start``)."""
        return self.audit.entry("login_ok", user_id=user.id, ip=ip)

    async def get(self, user_id: str) -> UserRecord:
        """A user by id; NotFound if none."""
        user = await self.users.get_user(user_id)
        if user is None:
            raise NotFound("no such user")
        return user

    async def by_email(self, email: str) -> UserRecord:
        """A user by email; NotFound if none."""
        user = await self.users.get_user_by_email(lookup_email(email))
        if user is None:
            raise NotFound("no such user")
        return user

    async def list_users(
        self, *, after: str | None = None, limit: int = 50, email: str | None = None
    ) -> list[UserRecord]:
        """A page of users ordered by id; with ``email``, those whose address contains it
        (case-folded and NFKC-normalised as addresses are stored)."""
        needle = unicodedata.normalize("NFKC", email).strip().casefold() if email else None
        return await self.users.list_users(after=after, limit=limit, email_contains=needle)

    async def verify_password(self, user: UserRecord, password: str, *, ip: str | None) -> None:
        """Check a signed-in user's current password (for sensitive changes) through the
        login throttle of the account and the IP; a failure is audited.
        InvalidCredentials if it is wrong, Throttled while locked."""

        async def check() -> None:
            if not await self.hasher.verify(user.password_hash, password):
                await self.audit.record("password_check_failed", user_id=user.id, ip=ip)
                raise InvalidCredentials("the current password is wrong")

        await self.throttle.attempt(user.email, ip, check)

    async def change_password(
        self,
        user: UserRecord,
        current_password: str,
        new_password: str,
        *,
        ip: str | None,
        keep_sid: str | None,
    ) -> None:
        """Check the current password (:meth:`verify_password`), then store the new one and
        end every other session (:meth:`set_password`)."""
        await self.verify_password(user, current_password, ip=ip)
        await self.set_password(user, new_password, keep_sid=keep_sid)

    async def set_password(
        self, user: UserRecord, new_password: str, *, keep_sid: str | None
    ) -> None:
        """Store a new password hash and end every session of the user but ``keep_sid``,
        in one transaction (a login racing the change never keeps a session opened with
        the old password); each ended session dies at every guard through the feed."""
        check_new_password(new_password)
        new_hash = await self.hasher.hash(new_password)
        ended = await self.users.change_password(
            user.id, new_hash, keep_sid=keep_sid, now=self.clock.now()
        )
        if ended is None:
            raise NotFound("no such user")
        for sid in ended:
            await self.revocations.revoke_sid(sid)
        await self.audit.record("password_changed", user_id=user.id)
        await self.audit.record(
            "sessions_revoked", user_id=user.id, count=len(ended), reason="password_changed"
        )

    async def bump_version(self, user_id: str) -> int | None:
        """Increment the user's privilege version (every token issued before dies); the new
        version, or None if there is no such user."""
        return await self.users.bump_version(user_id)

    async def permissions(self, user: UserRecord) -> tuple[str, ...]:
        """The union of the permissions of the user's roles, sorted."""
        return await self.users.permissions_for(user.roles)

    # --- roles ----------------------------------------------------------------------------

    async def get_role(self, name: str) -> RoleRecord:
        """A role; NotFound if none."""
        role = await self.users.get_role(name)
        if role is None:
            raise NotFound("no such role")
        return role

    async def list_roles(self) -> list[RoleRecord]:
        """Every role."""
        return await self.users.list_roles()

    async def users_with_role(self, name: str) -> list[str]:
        """Ids of the users holding a role."""
        return await self.users.users_with_role(name)
