"""The hosted login's browser sessions (the login-session cookie).

A web login is a row of ``sessions`` (client ``authgate-web``, no refresh token) with one
credential: a cookie of 256 random bits, stored only as its SHA-256 digest. So every way
of ending a session (logout, logout everywhere, a password change or reset, an admin's
revoke, a disabled or deleted user) ends the web login too: it is checked against its
session and user at every use. It has an idle and an absolute lifetime; a use moves the
idle deadline at most once a minute (one write per minute, not per page).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Final

from authgate.clock import Clock
from authgate.errors import InvalidCredentials, NotFound
from authgate.service.audit import Audit
from authgate.service.sessions import Sessions
from authgate.storage.base import SessionRecord, UserRecord, WebLoginRecord, WebLoginStore

WEB_CLIENT: Final = "authgate-web"  # the client_id of the hosted login's sessions
TOUCH_EVERY_S: Final = 60.0
_COOKIE_RE: Final = re.compile(r"[A-Za-z0-9_-]{43}")


def cookie_digest(value: str) -> str:
    """The stored form of a login cookie's value: SHA-256, hex."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class WebLogin:
    """A live hosted login: who, which session, and how and when the login was made."""

    user: UserRecord
    sid: str
    auth_time: float
    amr: tuple[str, ...]
    expires_at: float


@dataclass(frozen=True, slots=True)
class OpenedWebLogin:
    """A new hosted login and its cookie's value (shown once: only its digest is kept)."""

    cookie: str
    login: WebLogin

    @property
    def sid(self) -> str:
        """The login's session id."""
        return self.login.sid


@dataclass(frozen=True, eq=False, repr=False)
class WebLogins:
    """Opens, checks and ends hosted logins."""

    store: WebLoginStore
    _: KW_ONLY
    sessions: Sessions
    audit: Audit
    clock: Clock
    idle_ttl: float
    max_ttl: float
    csrf_key: bytes  # the pages' CSRF tokens are HMACs under it (a subkey of the master key)

    async def start(
        self,
        user: UserRecord,
        *,
        amr: Sequence[str],
        ip: str | None,
        user_agent: str | None,
    ) -> OpenedWebLogin:
        """Open a hosted login for a user whose login just succeeded (each call a new
        session and a new cookie value: no fixation). InvalidCredentials (nothing written)
        if the user was disabled or deleted, or changed password, since it was checked."""
        now = self.clock.now()
        cookie = secrets.token_urlsafe(32)
        sid = "sid_" + secrets.token_urlsafe(16)
        expires_at = now + self.max_ttl
        session = SessionRecord(
            sid=sid,
            user_id=user.id,
            client_id=WEB_CLIENT,
            created_at=now,
            last_used_at=now,
            expires_at=expires_at,
            ip=ip,
            user_agent=(user_agent or "")[:512] or None,
            amr=" ".join(amr),
            auth_time=now,
        )
        record = WebLoginRecord(
            digest=cookie_digest(cookie),
            sid=sid,
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            idle_expires_at=min(now + self.idle_ttl, expires_at),
            expires_at=expires_at,
        )
        live = await self.store.create_web_login(session, record, password_hash=user.password_hash)
        if live is None:
            raise InvalidCredentials("the account was disabled or changed during the login")
        await self.audit.record("web_login", user_id=user.id, sid=sid, ip=ip, amr=list(amr))
        login = WebLogin(
            user=live.user, sid=sid, auth_time=now, amr=tuple(amr), expires_at=expires_at
        )
        return OpenedWebLogin(cookie=cookie, login=login)

    async def current(self, cookie: str | None) -> WebLogin | None:
        """The live login of a cookie's value, or None: unknown, idle or past its absolute
        lifetime, its session ended, its user disabled or gone."""
        if cookie is None or not _COOKIE_RE.fullmatch(cookie):
            return None
        digest = cookie_digest(cookie)
        state = await self.store.web_login_state(digest)
        if state is None:
            return None
        now = self.clock.now()
        login, session, user = state.login, state.session, state.user
        if (
            session.revoked_at is not None
            or now >= login.idle_expires_at
            or now >= login.expires_at
            or now >= session.expires_at
            or user is None
            or user.disabled
            or user.id != login.user_id
            or session.user_id != user.id
        ):
            return None
        if now - login.last_seen_at >= TOUCH_EVERY_S:
            idle = min(now + self.idle_ttl, login.expires_at)
            await self.store.touch_web_login(digest, now=now, idle_expires_at=idle)
        auth_time = session.created_at if session.auth_time is None else session.auth_time
        return WebLogin(
            user=user,
            sid=session.sid,
            auth_time=auth_time,
            amr=tuple((session.amr or "").split()),
            expires_at=login.expires_at,
        )

    async def end(self, cookie: str | None, *, reason: str = "logout") -> bool:
        """End the login of a cookie's value: its session ends through ``Sessions.end``
        (the revocation feed), and the cookie's record goes. False if there was none."""
        if cookie is None or not _COOKIE_RE.fullmatch(cookie):
            return False
        record = await self.store.delete_web_login(cookie_digest(cookie))
        if record is None:
            return False
        # A session purged already has nothing left to end.
        with contextlib.suppress(NotFound):
            await self.sessions.end(record.sid, user_id=record.user_id, reason=reason)
        return True

    async def purge(self) -> int:
        """Delete the records of web logins that ended by time."""
        return await self.store.purge_web_logins(before=self.clock.now())
