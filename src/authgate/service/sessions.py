"""Token pairs, refresh rotation with reuse detection, logout and logout everywhere.

A refresh token is 256 random bits; only its SHA-256 digest is stored. Each use rotates
it: the successor is HMAC(refresh_secret, predecessor), so that within the grace window
the immediate predecessor can be answered with the *same* successor without storing it.
Rotation is one compare-and-set in the store; presenting a rotated token outside the
grace window revokes the whole family. Within the window, the immediate predecessor may be
replayed once, by the session's own client (a second compare-and-set): a second replay is
reuse.

Every access token is stamped with the user's privilege version (``ver``) and the roles and
permissions read with it in one statement, in the transaction that opens the session (or in
the refresh's read). A privilege change increments ``ver`` in its own transaction, so a
token minted from a read that raced a demotion carries the old ``ver`` and is refused by
the server and, through the feed, by every guard: no clock is compared.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any, Protocol, TypeVar

from authgate.clock import Clock
from authgate.errors import (
    CsrfFailed,
    InvalidAudience,
    InvalidCredentials,
    InvalidGrant,
    InvalidScope,
    InvalidToken,
    NotFound,
    TokenRevoked,
)
from authgate.service.accounts import Accounts
from authgate.service.audit import Audit
from authgate.service.revocation import Revocations
from authgate.service.tokens import AccessTokens, TokenPolicy, token_response
from authgate.storage.base import (
    AuditEntry,
    RefreshRecord,
    SessionRecord,
    SessionStore,
    UserRecord,
)

REFRESH_PREFIX = "rt_"
_REFRESH_LEN = len(REFRESH_PREFIX) + 43
FIRST_PARTY_CLIENT = "authgate"


def digest_of(refresh_token: str) -> str:
    """The stored form of a refresh token: SHA-256, hex."""
    return hashlib.sha256(refresh_token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What login, register and refresh return."""

    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    scope: str
    sid: str
    user_id: str

    def response(self) -> dict[str, Any]:
        """The API's token response."""
        return token_response(
            access_token=self.access_token,
            expires_in=self.expires_in,
            scope=self.scope,
            refresh_token=self.refresh_token,
            refresh_expires_in=self.refresh_expires_in,
        )


class Opened(Protocol):
    """What opening a session after a login gives: a token pair, or a hosted login."""

    @property
    def sid(self) -> str:
        """The new session's id."""
        ...


OpenedT = TypeVar("OpenedT", bound=Opened)


@dataclass(frozen=True, slots=True)
class AccessContext:
    """A verified, unrevoked access token of a live user, with the user's permissions now
    (``user_permissions``); ``permissions`` is what the token itself grants."""

    claims: dict[str, Any]
    user: UserRecord
    user_permissions: tuple[str, ...] = ()
    # With ``authenticate(..., with_mfa=True)``: the user's second factors, read with the
    # check (``MfaStore.mfa_summary``'s form).
    mfa_summary: tuple[bool, int, int] | None = None

    @property
    def sid(self) -> str:
        """The session id."""
        return str(self.claims["sid"])

    @property
    def permissions(self) -> frozenset[str]:
        """The token's scope as a set."""
        return frozenset(str(self.claims.get("scope", "")).split())


@dataclass(frozen=True, eq=False, repr=False)
class Sessions:
    """Issues and rotates token pairs; ends sessions."""

    store: SessionStore
    _: KW_ONLY
    accounts: Accounts
    tokens: AccessTokens
    revocations: Revocations
    audit: Audit
    clock: Clock
    refresh_secret: bytes

    @property
    def policy(self) -> TokenPolicy:
        """The lifetimes and identity of the tokens issued."""
        return self.tokens.policy

    # --- issuing ----------------------------------------------------------------------------

    def _successor(self, token: str) -> str:
        mac = hmac.new(self.refresh_secret, token.encode("utf-8"), hashlib.sha256).digest()
        return REFRESH_PREFIX + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def csrf_token(self, refresh_token: str) -> str:
        """The CSRF proof that goes with a refresh token delivered in a cookie: an HMAC of
        the token under the server's refresh secret (its own label), so that it is bound to
        the token it guards, changes with each rotation and is never stored."""
        label = b"authgate cookie csrf\x00" + refresh_token.encode("utf-8")
        mac = hmac.new(self.refresh_secret, label, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def check_csrf(self, refresh_token: str, proof: str | None) -> None:
        """Refuse (CsrfFailed) a proof that is not :meth:`csrf_token` of ``refresh_token``,
        compared in constant time."""
        if not proof or len(proof) > 128:
            raise CsrfFailed("no CSRF proof")
        expected = self.csrf_token(refresh_token)
        if not hmac.compare_digest(proof.encode("utf-8"), expected.encode("utf-8")):
            raise CsrfFailed("wrong CSRF proof")

    def issue_access(
        self,
        user: UserRecord,
        *,
        sid: str,
        permissions: Sequence[str],
        client_id: str = FIRST_PARTY_CLIENT,
        now: float,
        amr: Sequence[str] = ("pwd",),
        auth_time: float | None = None,
    ) -> tuple[str, int]:
        """Sign an RFC 9068 access token of a session; return it with its lifetime. ``amr``
        and ``auth_time`` (RFC 8176, OpenID Connect) say how and when the session's login
        was made. An OpenID Connect client's token (any client but the first party's) has
        the /userinfo audience and no roles: it is never the user's own token."""
        if client_id != FIRST_PARTY_CLIENT:
            return self.tokens.issue(
                sub=user.id,
                client_id=client_id,
                scope=permissions,
                now=now,
                audience=self.tokens.client_audience,
                sid=sid,
                ver=user.ver,
                amr=list(amr),
                auth_time=int(now if auth_time is None else auth_time),
            )
        return self.tokens.issue(
            sub=user.id,
            client_id=client_id,
            scope=permissions,
            now=now,
            sid=sid,
            ver=user.ver,
            roles=list(user.roles),
            email_verified=user.email_verified,
            amr=list(amr),
            auth_time=int(now if auth_time is None else auth_time),
        )

    @classmethod
    def _granted(
        cls, client_id: str, permissions: tuple[str, ...], scope: str | None
    ) -> tuple[str, ...]:
        """A token's scope: the first party's narrowed from the user's permissions; another
        client's exactly the scope its session was granted."""
        if client_id == FIRST_PARTY_CLIENT:
            return cls._narrow(permissions, scope)
        return tuple(sorted(set((scope or "").split())))

    @staticmethod
    def _narrow(allowed: tuple[str, ...], scope: str | None) -> tuple[str, ...]:
        if scope is None:
            return allowed
        wanted = scope.split()
        if not set(wanted) <= set(allowed):
            raise InvalidScope("the requested scope is beyond what is allowed")
        return tuple(sorted(set(wanted)))

    async def start(
        self,
        user: UserRecord,
        *,
        ip: str | None,
        user_agent: str | None,
        client_id: str = FIRST_PARTY_CLIENT,
        scope: str | None = None,
        amr: Sequence[str] = ("pwd",),
        auth_time: float | None = None,
        parent_sid: str | None = None,
        sid: str | None = None,
        not_after: float | None = None,
        audit: AuditEntry | None = None,
    ) -> TokenPair:
        """Open a session (a new refresh family) and issue its first pair. The token carries
        the user's roles, permissions and ``ver`` as read in the transaction that creates
        the session, and ``amr`` (how the login was made) with ``auth_time`` (now unless
        given), which every refresh keeps; InvalidCredentials (nothing written) if the user
        was disabled or deleted meanwhile, or its password hash is no longer
        ``user.password_hash``.

        A session of another client than the first party's (an OpenID Connect client) has
        the ``scope`` it was granted, exactly, never the user's permissions; ``parent_sid``
        names the hosted login it came from, whose end ends it (:meth:`end_tree`), and
        ``not_after`` caps its lifetime (the hosted login's own end). ``audit`` (the login's
        own event) is appended in the session's transaction."""
        now = self.clock.now()
        if scope is not None and client_id == FIRST_PARTY_CLIENT:
            # Refuse a bad scope before anything is written.
            self._narrow(await self.accounts.permissions(user), scope)
        sid = sid or "sid_" + secrets.token_urlsafe(16)
        auth_time = now if auth_time is None else auth_time
        refresh = REFRESH_PREFIX + secrets.token_urlsafe(32)
        expires_at = now + self.policy.refresh_max_ttl
        if not_after is not None:
            expires_at = min(expires_at, not_after)
        idle = min(now + self.policy.refresh_idle_ttl, expires_at)
        session = SessionRecord(
            sid=sid,
            user_id=user.id,
            client_id=client_id,
            created_at=now,
            last_used_at=now,
            expires_at=expires_at,
            ip=ip,
            user_agent=(user_agent or "")[:512] or None,
            scope=scope,
            amr=" ".join(amr),
            auth_time=auth_time,
            parent_sid=parent_sid,
        )
        first = RefreshRecord(
            digest=digest_of(refresh), sid=sid, created_at=now, idle_expires_at=idle
        )
        live = await self.store.create_session(
            session, first, password_hash=user.password_hash, audit=audit
        )
        if audit is not None:
            self.audit.published(audit)
        if live is None:
            raise InvalidCredentials("the account was disabled or deleted during the login")
        permissions = self._granted(client_id, live.permissions, scope)
        access, ttl = self.issue_access(
            live.user,
            sid=sid,
            permissions=permissions,
            client_id=client_id,
            now=now,
            amr=amr,
            auth_time=auth_time,
        )
        return TokenPair(access, ttl, refresh, int(idle - now), " ".join(permissions), sid, user.id)

    # --- refresh ----------------------------------------------------------------------------

    async def refresh(
        self,
        refresh_token: str,
        *,
        ip: str | None,
        client_id: str | None = None,
        scope: str | None = None,
    ) -> TokenPair:
        """Rotate a refresh token. Reuse of a rotated one outside the grace window revokes
        the family. Raises InvalidGrant for every refusal, without saying which."""
        if (
            not isinstance(refresh_token, str)
            or len(refresh_token) != _REFRESH_LEN
            or not refresh_token.startswith(REFRESH_PREFIX)
        ):
            raise InvalidGrant("malformed refresh token")
        digest = digest_of(refresh_token)
        context = await self.store.refresh_context(digest)
        if context is None:
            raise InvalidGrant("unknown refresh token")
        record, session, user = context.token, context.session, context.user
        now = self.clock.now()
        if session.revoked_at is not None:
            raise InvalidGrant("session has ended")
        if (client_id or FIRST_PARTY_CLIENT) != session.client_id:
            raise InvalidGrant("refresh token was issued to another client")
        if now >= session.expires_at:
            raise InvalidGrant("session reached its absolute lifetime")
        if user is None or user.disabled:
            raise InvalidGrant("account is disabled or gone")
        successor = self._successor(refresh_token)
        successor_digest = digest_of(successor)
        if record.rotated_at is None:
            if now >= record.idle_expires_at:
                raise InvalidGrant("refresh token expired (idle)")
            won = await self.store.rotate_refresh(
                digest,
                RefreshRecord(
                    digest=successor_digest,
                    sid=session.sid,
                    created_at=now,
                    idle_expires_at=self._idle_deadline(now, session),
                    parent=digest,
                ),
                now=now,
            )
            if not won:
                fresh = await self.store.get_refresh(digest)
                if fresh is None or fresh.rotated_at is None:
                    raise InvalidGrant("session has ended")
                record = fresh
        if record.rotated_at is not None and not await self._replay_allowed(
            record, successor_digest, now
        ):
            await self._reuse_detected(session, ip)
            raise InvalidGrant("refresh token reuse")
        if session.client_id == FIRST_PARTY_CLIENT:
            permissions = self._narrow(context.permissions, scope or session.scope)
        else:  # a client's session keeps its grant; a refresh may only narrow it
            permissions = self._narrow(self._granted(session.client_id, (), session.scope), scope)
        # A refresh keeps how and when the login was made: it never adds a factor.
        access, ttl = self.issue_access(
            user,
            sid=session.sid,
            permissions=permissions,
            client_id=session.client_id,
            now=now,
            amr=session.amr.split() if session.amr else ("pwd",),
            auth_time=session.created_at if session.auth_time is None else session.auth_time,
        )
        # The successor was made at the rotation (now, or earlier within the grace window).
        idle_at = self._idle_deadline(record.rotated_at or now, session)
        return TokenPair(
            access,
            ttl,
            successor,
            max(0, int(idle_at - now)),
            " ".join(permissions),
            session.sid,
            user.id,
        )

    def _idle_deadline(self, created: float, session: SessionRecord) -> float:
        return min(created + self.policy.refresh_idle_ttl, session.expires_at)

    async def _replay_allowed(
        self, record: RefreshRecord, successor_digest: str, now: float
    ) -> bool:
        """The grace window: the immediate predecessor of a still unused head, within
        ``refresh_grace`` of its rotation, once (the caller already checked the client)."""
        grace = self.policy.refresh_grace
        if grace <= 0 or record.rotated_at is None or now - record.rotated_at > grace:
            return False
        if record.successor != successor_digest:
            return False
        head = await self.store.get_refresh(successor_digest)
        if head is None or head.rotated_at is not None:
            return False
        return await self.store.claim_replay(record.sid, now=now)

    async def _reuse_detected(self, session: SessionRecord, ip: str | None) -> None:
        if await self.store.revoke_session(session.sid, now=self.clock.now()):
            await self.revocations.revoke_sid(session.sid)
        await self.audit.record("refresh_reuse", user_id=session.user_id, sid=session.sid, ip=ip)

    async def refresh_token_info(self, refresh_token: str) -> dict[str, Any] | None:
        """What introspection may say of a live refresh token (the family head), or None."""
        if len(refresh_token) != _REFRESH_LEN or not refresh_token.startswith(REFRESH_PREFIX):
            return None
        record = await self.store.get_refresh(digest_of(refresh_token))
        now = self.clock.now()
        if record is None or record.rotated_at is not None or now >= record.idle_expires_at:
            return None
        session = await self.store.get_session(record.sid)
        if session is None or session.revoked_at is not None or now >= session.expires_at:
            return None
        return {
            "token_type": "refresh_token",
            "client_id": session.client_id,
            "sub": session.user_id,
            "sid": session.sid,
            "exp": int(record.idle_expires_at),
            "iat": int(record.created_at),
            "iss": self.policy.issuer,
        }

    async def revoke_refresh_token(
        self, refresh_token: str, *, client_id: str, reason: str = "oauth2_revoke"
    ) -> bool:
        """RFC 7009 for a refresh token (and the cookie mode's logout): end its whole family,
        if it was issued to ``client_id``. False (and nothing done) for an unknown or foreign
        token."""
        if len(refresh_token) != _REFRESH_LEN or not refresh_token.startswith(REFRESH_PREFIX):
            return False
        record = await self.store.get_refresh(digest_of(refresh_token))
        if record is None:
            return False
        session = await self.store.get_session(record.sid)
        if session is None or session.client_id != client_id:
            return False
        await self.end(session.sid, reason=reason)
        return True

    async def revoke_access_token(self, token: str, *, client_id: str) -> bool:
        """RFC 7009 for an access token: revoke its jti until it expires, if it verifies and
        was issued to ``client_id``."""
        try:
            claims = self.tokens.decode_either(token)
        except InvalidToken:
            return False
        if claims.get("client_id") != client_id:
            return False
        await self.revocations.revoke_jti(str(claims["jti"]), exp=float(claims["exp"]))
        await self.audit.record("token_revoked", user_id=str(claims["sub"]), sid=claims.get("sid"))
        return True

    # --- access tokens ----------------------------------------------------------------------

    async def authenticate(
        self, token: str, *, client: bool = False, with_mfa: bool = False
    ) -> AccessContext:
        """Verify a user's own access token strictly (or, with ``client``, an OpenID
        Connect client's, for /userinfo), and refuse it at once if revoked or if its user
        is disabled or gone (TokenRevoked). With ``with_mfa``, the context carries the
        user's second factors, read in the same statement."""
        claims = await self.tokens.decode_fresh(token, client=client)
        if (claims.get("client_id") == FIRST_PARTY_CLIENT) == client:
            raise InvalidAudience("the token is not for this endpoint")
        sid, jti, sub = claims.get("sid"), claims["jti"], claims["sub"]
        if not isinstance(sid, str) or not sid:
            raise TokenRevoked("token has no session")
        ver = claims.get("ver")
        if type(ver) is not int:
            raise TokenRevoked("token has no privilege version")
        state = await self.store.access_state(
            sid, sub, jti, now=self.clock.now(), with_mfa=with_mfa
        )
        user, session = state.user, state.session
        if user is None or user.disabled or ver < user.ver:
            raise TokenRevoked("token's user is gone or disabled, or its privileges changed")
        if session is None or session.revoked_at is not None or session.user_id != user.id:
            raise TokenRevoked("token's session has ended")
        if state.jti_revoked:
            raise TokenRevoked("token was revoked")
        return AccessContext(
            claims=claims, user=user, user_permissions=state.permissions, mfa_summary=state.mfa
        )

    # --- ending sessions ------------------------------------------------------------------

    async def end(self, sid: str, *, user_id: str | None = None, reason: str = "logout") -> None:
        """End one session (NotFound if it is not the user's) and the sessions opened from
        it (``parent_sid``); their tokens die everywhere."""
        session = await self.store.get_session(sid)
        if session is None or (user_id is not None and session.user_id != user_id):
            raise NotFound("no such session")
        now = self.clock.now()
        if await self.store.revoke_session(sid, now=now):
            await self.revocations.revoke_sid(sid)
        # A hosted login's end is the end of the sessions its OpenID Connect clients got.
        for child in await self.store.revoke_child_sessions(sid, now=now):
            await self.revocations.revoke_sid(child)
        await self.audit.record("session_revoked", user_id=session.user_id, sid=sid, reason=reason)

    async def end_all(self, user_id: str, *, keep: str | None = None, reason: str) -> list[str]:
        """End every session of a user but ``keep``. Without ``keep``, the user's ``ver``
        also moves, so every access token issued before dies."""
        now = self.clock.now()
        sids = await self.store.revoke_user_sessions(user_id, now=now, keep=keep)
        if keep is None:
            ver = await self.accounts.bump_version(user_id)
            if ver is not None:
                await self.revocations.revoke_user(user_id, ver=ver)
        else:
            for sid in sids:
                await self.revocations.revoke_sid(sid)
        await self.audit.record("sessions_revoked", user_id=user_id, count=len(sids), reason=reason)
        return sids

    async def end_tree(self, sid: str, *, reason: str = "logout") -> list[str]:
        """End a session and every session opened from it (``parent_sid``: the OpenID
        Connect sessions of a hosted login); their tokens die everywhere. The sids ended."""
        now = self.clock.now()
        ended = []
        session = await self.store.get_session(sid)
        if session is not None and await self.store.revoke_session(sid, now=now):
            ended.append(sid)
        ended += await self.store.revoke_child_sessions(sid, now=now)
        for each in ended:
            await self.revocations.revoke_sid(each)
        if ended:
            await self.audit.record(
                "sessions_revoked",
                user_id=session.user_id if session else None,
                sid=sid,
                count=len(ended),
                reason=reason,
            )
        return ended

    async def end_client(self, user_id: str, client_id: str, *, reason: str) -> list[str]:
        """End every session of the user issued to ``client_id``. The sids ended."""
        ended = await self.store.revoke_client_sessions(user_id, client_id, now=self.clock.now())
        for sid in ended:
            await self.revocations.revoke_sid(sid)
        if ended:
            await self.audit.record(
                "sessions_revoked",
                user_id=user_id,
                client_id=client_id,
                count=len(ended),
                reason=reason,
            )
        return ended

    async def list(self, user_id: str) -> list[SessionRecord]:
        """The user's live sessions, newest first."""
        return await self.store.list_sessions(user_id, live_at=self.clock.now())
