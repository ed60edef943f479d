"""Builders for the records the contract tests store."""

from __future__ import annotations

import hashlib

from authgate.storage.base import PasskeyRecord, RefreshRecord, SessionRecord, UserRecord

T0 = 1_700_000_000.0  # a fixed "now"; tests never read the real clock
DAY = 86_400.0


def digest(name: str) -> str:
    """A SHA-256 hex digest, the shape of a stored refresh token."""
    return hashlib.sha256(name.encode()).hexdigest()


def user(uid: str, *, email: str | None = None, roles: tuple[str, ...] = ()) -> UserRecord:
    """A user ``uid`` with the email ``uid@example.com``."""
    return UserRecord(
        id=uid,
        email=email or f"{uid}@example.com",
        password_hash=f"$argon2id$v=19$m=19456,t=2,p=1${uid}",
        created_at=T0,
        name=f"User {uid}",
        roles=roles,
    )


def session(
    sid: str, user_id: str, *, created_at: float = T0, expires_at: float = T0 + 90 * DAY
) -> SessionRecord:
    """A live session of ``user_id``."""
    return SessionRecord(
        sid=sid,
        user_id=user_id,
        client_id="authgate",
        created_at=created_at,
        last_used_at=created_at,
        expires_at=expires_at,
        ip="192.0.2.1",
        user_agent="pytest",
        scope="openid",
    )


def refresh(
    name: str, sid: str, *, created_at: float = T0, parent: str | None = None
) -> RefreshRecord:
    """A fresh refresh token of session ``sid``, by the digest of ``name``."""
    return RefreshRecord(
        digest=digest(name),
        sid=sid,
        created_at=created_at,
        idle_expires_at=created_at + 14 * DAY,
        parent=parent,
    )


def passkey(
    pid: str, user_id: str, *, created_at: float = T0, sign_count: int = 0
) -> PasskeyRecord:
    """A passkey ``pid`` of ``user_id`` with credential id ``cred-<pid>``."""
    return PasskeyRecord(
        id=pid,
        credential_id=f"cred-{pid}",
        user_id=user_id,
        public_key=b"\xa5\x01\x02" + pid.encode(),
        sign_count=sign_count,
        name=f"key {pid}",
        created_at=created_at,
        transports=("usb", "nfc"),
        aaguid="00000000-0000-0000-0000-000000000000",
        backup_eligible=True,
        backed_up=False,
    )
