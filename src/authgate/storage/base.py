"""The storage boundary: small Protocols that the service layer needs, and the records
they exchange. Every backend (SQLite, PostgreSQL) implements all of them, and one
contract suite (tests/storage) runs against each.

Times are POSIX timestamps (float seconds). Ids are opaque strings. Stores raise
``authgate.errors.Conflict`` for a uniqueness violation and
``authgate.errors.StorageUnavailable`` when the database cannot be reached, and
``authgate.errors.StorageError`` for any other database failure; nothing else escapes them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

RevocationKind = Literal["jti", "sid", "user"]
KeyState = Literal["next", "current", "retiring", "retired"]
LinkPurpose = Literal["verify_email", "reset_password", "change_email"]
LINK_PURPOSES: tuple[LinkPurpose, ...] = ("verify_email", "reset_password", "change_email")
WebauthnPurpose = Literal["register", "second_factor", "passwordless"]
WEBAUTHN_PURPOSES: tuple[WebauthnPurpose, ...] = ("register", "second_factor", "passwordless")


@dataclass(frozen=True, slots=True)
class UserRecord:
    """An account. ``email`` is already normalised. ``ver`` is the privilege version: every
    change to the user's roles, their permissions, ``disabled`` or a logout everywhere
    increments it, and an access token issued under a lower ``ver`` is dead."""

    id: str
    email: str
    password_hash: str
    created_at: float
    name: str | None = None
    disabled: bool = False
    roles: tuple[str, ...] = ()
    ver: int = 0
    email_verified: bool = False


@dataclass(frozen=True, slots=True)
class LinkTokenRecord:
    """A single-use token mailed as a link, by the SHA-256 digest of its value (hex).
    ``email`` is the address it was sent to (for ``change_email``, the new address). A
    token is live until it is used (``used_at``), ended (``ended_at``, with ``ended_by``:
    ``superseded`` by a newer one, ``password_changed`` or ``email_changed``) or expired."""

    digest: str
    purpose: LinkPurpose
    user_id: str
    email: str
    created_at: float
    expires_at: float
    used_at: float | None = None
    ended_at: float | None = None
    ended_by: str | None = None


@dataclass(frozen=True, slots=True)
class LinkRedemption:
    """What redeeming a link token did: the token as used, the sessions it ended (a
    password reset) and the user's new ``ver`` (an email change)."""

    token: LinkTokenRecord
    ended_sids: tuple[str, ...] = ()
    ver: int | None = None


@dataclass(frozen=True, slots=True)
class TotpRecord:
    """A user's TOTP: the active secret (once confirmed) and one being enrolled, each
    encrypted (AES-256-GCM, nonce || ct); ``last_step`` is the last time step accepted."""

    user_id: str
    secret: bytes | None = None
    confirmed_at: float | None = None
    last_step: int | None = None
    pending_secret: bytes | None = None
    pending_at: float | None = None


@dataclass(frozen=True, slots=True)
class MfaLoginRecord:
    """A login whose password was right, waiting for its second factor."""

    jti: str
    user_id: str
    password_hash: str
    created_at: float
    expires_at: float
    used_at: float | None = None
    failures: int = 0


@dataclass(frozen=True, slots=True)
class PasskeyRecord:
    """A WebAuthn credential of a user. ``id`` is ours (opaque); ``credential_id`` is the
    authenticator's (base64url, unique); ``public_key`` is its COSE key; ``sign_count`` the
    last signature counter accepted (0: the authenticator keeps none)."""

    id: str
    credential_id: str
    user_id: str
    public_key: bytes
    sign_count: int
    name: str
    created_at: float
    transports: tuple[str, ...] = ()
    aaguid: str | None = None
    backup_eligible: bool = False
    backed_up: bool = False
    last_used_at: float | None = None


@dataclass(frozen=True, slots=True)
class WebauthnChallengeRecord:
    """A WebAuthn challenge issued by the server, by the SHA-256 digest of its bytes (hex),
    for one ``purpose``: bound to a user (``register``, ``second_factor``), to a login
    waiting for its second factor (``login_jti``), or to nobody yet (``passwordless``).
    Single use and short-lived."""

    digest: str
    purpose: WebauthnPurpose
    created_at: float
    expires_at: float
    user_id: str | None = None
    login_jti: str | None = None
    used_at: float | None = None


@dataclass(frozen=True, slots=True)
class RoleRecord:
    """A role: a name and the permissions it grants."""

    name: str
    permissions: tuple[str, ...]
    created_at: float


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session is one refresh-token family (one login)."""

    sid: str
    user_id: str
    client_id: str
    created_at: float
    last_used_at: float
    expires_at: float  # the absolute lifetime
    ip: str | None = None
    user_agent: str | None = None
    scope: str | None = None
    revoked_at: float | None = None
    replayed_at: float | None = None  # when the grace window's one replay was used
    amr: str | None = None  # how the login was made: RFC 8176 values, space-separated
    auth_time: float | None = None  # when (None: at created_at)
    parent_sid: str | None = None  # the hosted-login session it came from (OIDC)


@dataclass(frozen=True, slots=True)
class RefreshRecord:
    """One refresh token of a family, by the SHA-256 digest of its value (hex)."""

    digest: str
    sid: str
    created_at: float
    idle_expires_at: float
    parent: str | None = None
    rotated_at: float | None = None
    successor: str | None = None


@dataclass(frozen=True, slots=True)
class RevocationEvent:
    """One entry of the revocation feed. ``id`` is the cursor, increasing."""

    id: int
    kind: RevocationKind
    value: str
    created_at: float
    expires_at: float
    not_before: float | None = None
    ver: int | None = None  # kind "user": the user's tokens with a lower ``ver`` are dead


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A signing key. The private part is AES-256-GCM ciphertext (nonce || ct), AAD = kid."""

    kid: str
    alg: str
    state: KeyState
    public_jwk: str | None  # JSON; None for HMAC keys, which are never published
    encrypted_private: bytes | None
    created_at: float
    activated_at: float | None = None
    retired_at: float | None = None
    expires_at: float | None = None  # when a retiring key leaves the JWKS


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """An event to append to the audit chain: on its own (``AuditLog.append_audit``) or
    inside another write's transaction (``SessionStore.create_session``), where it is in
    the chain exactly when that write is."""

    event: str
    at: float
    user_id: str | None = None
    sid: str | None = None
    ip: str | None = None
    detail: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A security event, chained: ``hash`` covers the event and ``prev_hash``, the hash of
    the event before it, so that an edited, deleted or reordered row breaks the chain."""

    id: int
    at: float
    event: str
    user_id: str | None = None
    sid: str | None = None
    ip: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    prev_hash: str | None = None
    hash: str | None = None


def audit_hash(
    *,
    id: int,
    at: float,
    event: str,
    user_id: str | None,
    sid: str | None,
    ip: str | None,
    detail: dict[str, Any],
    prev_hash: str | None,
) -> str:
    """SHA-256 (hex) over the canonical JSON of an audit event and its predecessor's hash:
    sorted keys, no whitespace, ASCII escapes, floats in Python's shortest repr."""
    canonical = json.dumps(
        {
            "at": at,
            "detail": detail,
            "event": event,
            "id": id,
            "ip": ip,
            "prev": prev_hash,
            "sid": sid,
            "user_id": user_id,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def record_hash(record: AuditRecord) -> str:
    """The hash ``record`` must carry: ``audit_hash`` of its fields and its ``prev_hash``."""
    chained = asdict(record)
    del chained["hash"]
    return audit_hash(**chained)


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """A service client (OAuth2). It authenticates with a secret (stored only as a keyed
    digest, or an argon2id hash from older versions) or, for private_key_jwt, with a
    registered public JWK; never both."""

    client_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: float
    secret_hash: str | None = None
    public_jwk: str | None = None  # JSON
    access_ttl: float | None = None
    revoked_at: float | None = None
    # OpenID Connect: exact redirect URIs; a public client (no secret, PKCE only); a
    # first-party client skips consent; the ID token's algorithm (None: RS256).
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    public: bool = False
    first_party: bool = False
    id_token_alg: str | None = None


@dataclass(frozen=True, slots=True)
class AuthCodeRecord:
    """An OpenID Connect authorization code, by the SHA-256 digest of its value (hex),
    bound to its client, redirect URI and PKCE challenge; single use."""

    digest: str
    client_id: str
    user_id: str
    login_sid: str  # the hosted-login session it was issued under
    redirect_uri: str
    code_challenge: str  # S256
    scope: str
    nonce: str | None
    auth_time: float
    amr: str
    created_at: float
    expires_at: float
    used_at: float | None = None
    issued_sid: str | None = None  # the session the exchange opened


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """The scopes a user let a client have, remembered."""

    user_id: str
    client_id: str
    scope: str
    granted_at: float


@dataclass(frozen=True, slots=True)
class RefreshContext:
    """Everything a refresh needs, read in one go: the token, its session, the session's
    user (None if deleted) and that user's permissions."""

    token: RefreshRecord
    session: SessionRecord
    user: UserRecord | None
    permissions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LiveUser:
    """A user and the permissions of their roles, read in one statement, so that ``user.ver``
    always matches the privileges it is stamped on."""

    user: UserRecord
    permissions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AccessState:
    """Everything the check of an access token needs, read in one go."""

    session: SessionRecord | None
    user: UserRecord | None
    permissions: tuple[str, ...]
    jti_revoked: bool
    # With ``with_mfa``: the user's second factors, as ``MfaStore.mfa_summary`` reads them.
    mfa: tuple[bool, int, int] | None = None


@dataclass(frozen=True, slots=True)
class CounterState:
    """A fixed-window counter: ``count`` hits since ``window_start``."""

    count: int
    window_start: float


class UserStore(Protocol):
    """Accounts and roles."""

    async def create_user(self, user: UserRecord) -> None:
        """Insert a user and its roles; Conflict if the email is taken."""
        ...

    async def get_user(self, user_id: str) -> UserRecord | None:
        """A user by id, with roles."""
        ...

    async def get_user_by_email(self, email: str) -> UserRecord | None:
        """A user by normalised email, with roles."""
        ...

    async def list_users(
        self, *, after: str | None, limit: int, email_contains: str | None = None
    ) -> list[UserRecord]:
        """Users ordered by id, strictly after ``after``; with ``email_contains``, only
        those whose (normalised) email contains it, literally (no wildcards)."""
        ...

    async def update_user(self, user_id: str, *, name: str | None = None) -> bool:
        """Change the given fields (never privileges nor credentials); False if there is no
        such user."""
        ...

    async def change_password(
        self, user_id: str, password_hash: str, *, keep_sid: str | None, now: float
    ) -> list[str] | None:
        """In one transaction: store the new hash, revoke every live session of the user
        but ``keep_sid`` and end the user's live password-reset tokens; the revoked sids,
        or None if there is no such user."""
        ...

    async def set_email_verified(self, user_id: str, verified: bool) -> bool:
        """Mark the user's address verified (or not); False if there is no such user."""
        ...

    async def rehash_password(self, user_id: str, *, old_hash: str, new_hash: str) -> bool:
        """Replace ``old_hash`` by ``new_hash`` (the same password under new parameters),
        only if ``old_hash`` is still the stored one (a compare-and-set)."""
        ...

    async def set_disabled(
        self, user_id: str, disabled: bool, *, now: float | None = None
    ) -> int | None:
        """Disable or enable a user and increment its ``ver`` in the same transaction;
        disabling also ends the user's live link tokens (``ended_at`` = ``now``, the
        system clock's if None). The new ``ver``, or None if there is no such user."""
        ...

    async def set_roles(
        self, user_id: str, roles: Sequence[str], *, must_exist: bool = False
    ) -> int | None:
        """Replace the user's roles and increment its ``ver`` in the same transaction; the
        new ``ver``, or None if there is no such user. With ``must_exist``, NotFound (and
        nothing changed) when a role does not exist at that moment."""
        ...

    async def bump_version(self, user_id: str) -> int | None:
        """Increment the user's ``ver`` (every token issued before dies); the new ``ver``,
        or None if there is no such user."""
        ...

    async def delete_user(self, user_id: str) -> int | None:
        """Delete a user with its roles, sessions and refresh tokens; the ``ver`` it had,
        or None if there was no such user."""
        ...

    async def put_role(self, role: RoleRecord) -> dict[str, int]:
        """Create or replace a role; increment the ``ver`` of every holder in the same
        transaction and return each holder's new ``ver``."""
        ...

    async def get_role(self, name: str) -> RoleRecord | None:
        """A role by name."""
        ...

    async def list_roles(self) -> list[RoleRecord]:
        """Every role, by name."""
        ...

    async def delete_role(self, name: str) -> dict[str, int] | None:
        """Delete a role, remove it from every user and increment their ``ver``, in one
        transaction; each former holder's new ``ver``, or None if there was no such role."""
        ...

    async def users_with_role(self, name: str) -> list[str]:
        """Ids of the users holding a role."""
        ...

    async def permissions_for(self, roles: Sequence[str]) -> tuple[str, ...]:
        """The union of the permissions of these roles (unknown roles grant none), sorted."""
        ...


class SessionStore(Protocol):
    """Sessions (refresh families) and their refresh tokens, stored as digests."""

    async def create_session(
        self,
        session: SessionRecord,
        first: RefreshRecord,
        *,
        password_hash: str | None,
        audit: AuditEntry | None = None,
    ) -> LiveUser | None:
        """In one transaction: read the user with its permissions (one statement, holding
        the user's row against concurrent changes) and, if the user exists, is not
        disabled and (with ``password_hash``) still has the password hash that was checked,
        insert the session and its first refresh token, and append ``audit`` to the audit
        chain (whatever the outcome). The user as read, or None (nothing written but
        ``audit``)."""
        ...

    async def get_session(self, sid: str) -> SessionRecord | None:
        """A session by sid."""
        ...

    async def list_sessions(self, user_id: str, *, live_at: float | None) -> list[SessionRecord]:
        """The user's sessions, newest first; with ``live_at``, only unrevoked ones
        not past their absolute expiry at that time."""
        ...

    async def get_refresh(self, digest: str) -> RefreshRecord | None:
        """A refresh token by digest."""
        ...

    async def refresh_context(self, digest: str) -> RefreshContext | None:
        """The token with this digest, its session, user and permissions, read in one
        transaction; None if the token (or its session) is unknown."""
        ...

    async def access_state(
        self, sid: str, user_id: str, jti: str, *, now: float, with_mfa: bool = False
    ) -> AccessState:
        """The session, the user, their permissions, and whether a live ``jti`` revocation
        exists, read in one transaction; with ``with_mfa``, the user's second factors too
        (``mfa``, None when the user is gone)."""
        ...

    async def rotate_refresh(self, digest: str, successor: RefreshRecord, *, now: float) -> bool:
        """Atomic compare-and-set: if ``digest`` is not yet rotated and its session is not
        revoked, mark it rotated to ``successor``, insert ``successor`` and set the
        session's ``last_used_at``, all in one transaction, and return True. Otherwise
        change nothing and return False. Two concurrent callers never both win."""
        ...

    async def claim_replay(self, sid: str, *, now: float) -> bool:
        """Atomic compare-and-set: mark the family's one grace-window replay as used; False
        if it was already used (or the session is unknown)."""
        ...

    async def revoke_session(self, sid: str, *, now: float) -> bool:
        """Mark a session revoked; False if it was unknown or already revoked."""
        ...

    async def revoke_user_sessions(
        self, user_id: str, *, now: float, keep: str | None = None
    ) -> list[str]:
        """Revoke every live session of the user except ``keep``; return their sids."""
        ...

    async def revoke_child_sessions(self, parent_sid: str, *, now: float) -> list[str]:
        """Revoke every unrevoked session whose ``parent_sid`` is ``parent_sid``; return
        their sids, sorted."""
        ...

    async def revoke_client_sessions(
        self, user_id: str, client_id: str, *, now: float
    ) -> list[str]:
        """Revoke every unrevoked session of the user issued to ``client_id``; return
        their sids, sorted."""
        ...

    async def purge_sessions(self, *, before: float) -> int:
        """Delete sessions (and their tokens) revoked or expired before ``before``."""
        ...


@dataclass(frozen=True, slots=True)
class WebLoginRecord:
    """A hosted-login browser session, by the SHA-256 digest (hex) of its cookie's value;
    it belongs to one row of ``sessions`` (``sid``, no refresh token)."""

    digest: str
    sid: str
    user_id: str
    created_at: float
    last_seen_at: float
    idle_expires_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class WebLoginState:
    """A web login with its session and its user (None if gone), read in one transaction."""

    login: WebLoginRecord
    session: SessionRecord
    user: UserRecord | None


class WebLoginStore(Protocol):
    """The hosted login's browser sessions, stored as digests of their cookies."""

    async def create_web_login(
        self, session: SessionRecord, login: WebLoginRecord, *, password_hash: str | None
    ) -> LiveUser | None:
        """As ``create_session``, but the session's one credential is the web login (no
        refresh token): in one transaction, the user as read (it exists, is not disabled
        and, with ``password_hash``, still has that hash), the session and the login
        inserted; or None and nothing written."""
        ...

    async def web_login_state(self, digest: str) -> WebLoginState | None:
        """The web login with this digest, its session and user; None if unknown."""
        ...

    async def touch_web_login(self, digest: str, *, now: float, idle_expires_at: float) -> None:
        """Record a use of the web login: ``last_seen_at`` and the new idle deadline."""
        ...

    async def delete_web_login(self, digest: str) -> WebLoginRecord | None:
        """Delete the web login with this digest; what it was, or None if unknown."""
        ...

    async def purge_web_logins(self, *, before: float) -> int:
        """Delete the web logins idle or expired before ``before``; how many."""
        ...


class RevocationStore(Protocol):
    """The revocation feed."""

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
        ...

    async def revocations_after(
        self, cursor: int | None, *, now: float, limit: int
    ) -> list[RevocationEvent]:
        """Unexpired events with id > cursor (all when None), in id order."""
        ...

    async def is_revoked(self, kind: RevocationKind, value: str, *, now: float) -> bool:
        """True if an unexpired event of this kind and value exists."""
        ...

    async def latest_revocation_id(self) -> int:
        """The highest event id ever issued (0 if none)."""
        ...

    async def purge_revocations(self, *, now: float) -> int:
        """Delete expired events; return how many."""
        ...


class KeyStore(Protocol):
    """Signing keys, encrypted at rest."""

    async def list_keys(self) -> list[KeyRecord]:
        """Every stored key, oldest first."""
        ...

    async def insert_key(self, key: KeyRecord) -> None:
        """Store a new key; Conflict if the kid exists."""
        ...

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
        """Move a key to ``state``, setting the given times."""
        ...

    def key_lock(self) -> AbstractAsyncContextManager[None]:
        """Held while rotating, so that only one instance rotates at a time."""
        ...


class AuditLog(Protocol):
    """Security events, append-only."""

    async def append_audit(self, entry: AuditEntry) -> None:
        """Append an event to the chain: under a lock, so that appends never fork it;
        ``detail`` must be JSON-serialisable (TypeError otherwise)."""
        ...

    async def query_audit(
        self,
        *,
        user_id: str | None = None,
        event: str | None = None,
        after: int | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> list[AuditRecord]:
        """Events in id order (``newest_first``: the reverse, so that ``limit`` keeps the
        latest), filtered."""
        ...

    async def audit_chain(self, *, after: int | None, limit: int) -> list[AuditRecord]:
        """Every event (unfiltered) with id > ``after``, in id order, with its hashes."""
        ...


class ClientStore(Protocol):
    """Service clients, and the single-use record of client-assertion ids."""

    async def create_client(self, client: ClientRecord) -> None:
        """Insert a client; Conflict if the id exists."""
        ...

    async def get_client(self, client_id: str) -> ClientRecord | None:
        """A client by id (revoked ones too)."""
        ...

    async def list_clients(self) -> list[ClientRecord]:
        """Every client, oldest first."""
        ...

    async def revoke_client(self, client_id: str, *, now: float) -> bool:
        """Mark a client revoked; False if unknown or already revoked."""
        ...

    async def replace_client_secret(self, client_id: str, *, old: str, new: str) -> bool:
        """Store ``new`` as the client's secret hash if it is still ``old`` (a
        compare-and-set); False otherwise."""
        ...

    async def use_assertion_id(self, client_id: str, jti: str, *, expires_at: float) -> bool:
        """Record a client assertion's jti; False if it was seen before (a replay). Records
        may be dropped once ``expires_at`` has passed."""
        ...

    async def purge_assertion_ids(self, *, now: float) -> int:
        """Drop assertion ids whose assertions have expired."""
        ...


class OidcStore(Protocol):
    """Authorization codes (single use) and remembered consents."""

    async def create_auth_code(self, code: AuthCodeRecord) -> None:
        """Insert a code; Conflict if its digest exists."""
        ...

    async def get_auth_code(self, digest: str) -> AuthCodeRecord | None:
        """A code by digest (used ones too)."""
        ...

    async def use_auth_code(self, digest: str, *, now: float, sid: str) -> AuthCodeRecord | None:
        """Mark an unused code used at ``now`` and record ``sid`` as the session it
        opens, in one compare-and-set; the code, now used, or None if it is unknown or
        was used already (of concurrent callers, exactly one wins)."""
        ...

    async def purge_auth_codes(self, *, before: float) -> int:
        """Delete codes that expired before ``before``; return how many."""
        ...

    async def put_consent(self, consent: ConsentRecord) -> None:
        """Insert or replace the user's consent for the client."""
        ...

    async def get_consent(self, user_id: str, client_id: str) -> ConsentRecord | None:
        """The user's consent for the client, or None."""
        ...

    async def list_consents(self, user_id: str) -> list[ConsentRecord]:
        """The user's consents, by client id."""
        ...

    async def delete_consent(self, user_id: str, client_id: str) -> bool:
        """Forget a consent; False if there was none."""
        ...


class LinkTokenStore(Protocol):
    """Single-use tokens mailed as links (email verification, password reset, email
    change), stored as digests."""

    async def issue_link_token(self, token: LinkTokenRecord) -> bool:
        """In one transaction: end (``superseded``) every live token of the same user and
        purpose, and insert ``token``; False (nothing written) if there is no such user."""
        ...

    async def get_link_token(self, digest: str) -> LinkTokenRecord | None:
        """A token by digest, in whatever state."""
        ...

    async def redeem_link_token(
        self,
        digest: str,
        *,
        purpose: LinkPurpose,
        now: float,
        password_hash: str | None = None,
    ) -> LinkRedemption | None:
        """Use a live token of ``purpose`` and apply it, all in one transaction, or change
        nothing and return None (unknown, another purpose, used, ended or expired):

        - ``verify_email``: mark the address verified, if it is still the user's;
        - ``reset_password``: store ``password_hash``, mark the address verified if it is
          still the user's, revoke every live session of the user and end the user's other
          reset tokens (``password_changed``);
        - ``change_email``: make ``token.email`` the user's verified address, increment
          ``ver``, and end every other live token of the user (``email_changed``); Conflict
          (nothing changed, the token still live) if another account has that address.
        """
        ...

    async def purge_link_tokens(self, *, before: float) -> int:
        """Delete tokens that expired before ``before``; how many."""
        ...


class MfaStore(Protocol):
    """Second factors: TOTP secrets, recovery codes, and logins waiting for their second
    factor."""

    async def get_totp(self, user_id: str) -> TotpRecord | None:
        """The user's TOTP record (active or being enrolled), if any."""
        ...

    async def put_pending_totp(self, user_id: str, secret: bytes, *, now: float) -> bool:
        """Store a secret being enrolled (replacing an earlier one being enrolled; the
        active secret stays until the new one is confirmed); False if no such user."""
        ...

    async def confirm_totp(
        self,
        user_id: str,
        *,
        pending: bytes,
        step: int,
        now: float,
        recovery_digests: Sequence[str],
    ) -> bool:
        """In one transaction, if ``pending`` is still the secret being enrolled: make it
        the active secret with ``step`` as its last step, and replace the user's recovery
        codes by ``recovery_digests``. False (nothing changed) otherwise."""
        ...

    async def use_totp_step(self, user_id: str, step: int) -> bool:
        """Atomic compare-and-set: accept time step ``step`` of the active secret only if
        it is later than the last one accepted; False otherwise (a replay)."""
        ...

    async def delete_totp(self, user_id: str, *, keep_recovery_codes: bool) -> bool:
        """Remove the user's TOTP (and, unless kept, the recovery codes) in one
        transaction; False if there was none."""
        ...

    async def replace_recovery_codes(
        self, user_id: str, digests: Sequence[str], *, now: float
    ) -> None:
        """Replace every recovery code of the user, in one transaction."""
        ...

    async def use_recovery_code(self, user_id: str, digest: str, *, now: float) -> bool:
        """Atomic compare-and-set: mark an unused code used; False if unknown or used."""
        ...

    async def recovery_codes_left(self, user_id: str) -> int:
        """How many unused recovery codes the user has."""
        ...

    async def mfa_summary(self, user_id: str) -> tuple[bool, int, int]:
        """Whether the user has an active TOTP, how many unused recovery codes and how
        many passkeys, read in one statement (a login's one second-factor read)."""
        ...

    async def mfa_summaries(self, user_ids: Sequence[str]) -> dict[str, tuple[bool, int, int]]:
        """``mfa_summary`` of each of these users (a page of them), in one statement;
        unknown ids are left out."""
        ...

    async def create_mfa_login(self, login: MfaLoginRecord) -> None:
        """Record a login waiting for its second factor."""
        ...

    async def get_mfa_login(self, jti: str) -> MfaLoginRecord | None:
        """A pending login by jti, in whatever state."""
        ...

    async def use_mfa_login(self, jti: str, *, now: float) -> MfaLoginRecord | None:
        """Atomic compare-and-set: mark an unused, unexpired pending login used and return
        it; None otherwise."""
        ...

    async def release_mfa_login(self, jti: str, *, used_at: float, burn_after: int) -> bool:
        """A failed attempt on a claimed pending login (if ``used_at`` is still its claim):
        count it, and mark the login unused again unless that makes ``burn_after``
        failures; True if it may be tried again."""
        ...

    async def purge_mfa_logins(self, *, before: float) -> int:
        """Delete pending logins that expired before ``before``; how many."""
        ...


class PasskeyStore(Protocol):
    """Passkeys (WebAuthn credentials) and the server-side challenges of their ceremonies."""

    async def add_passkey(self, passkey: PasskeyRecord) -> bool:
        """Store a new passkey; False (nothing written) if there is no such user, Conflict
        if the credential id is registered already (to anyone)."""
        ...

    async def get_passkey(self, credential_id: str) -> PasskeyRecord | None:
        """A passkey by its credential id."""
        ...

    async def list_passkeys(self, user_id: str) -> list[PasskeyRecord]:
        """The user's passkeys, oldest first."""
        ...

    async def count_passkeys(self, user_id: str) -> int:
        """How many passkeys the user has."""
        ...

    async def rename_passkey(self, user_id: str, passkey_id: str, name: str) -> bool:
        """Rename one of the user's passkeys; False if the user has no such passkey."""
        ...

    async def delete_passkey(self, user_id: str, passkey_id: str) -> bool:
        """Delete one of the user's passkeys; False if the user has no such passkey."""
        ...

    async def delete_passkeys(self, user_id: str) -> int:
        """Delete every passkey of the user; how many."""
        ...

    async def use_passkey(
        self, passkey_id: str, *, sign_count: int, backed_up: bool, now: float
    ) -> bool:
        """Atomic compare-and-set: record a use with signature counter ``sign_count`` only
        if it is greater than the stored one, or both are 0 (an authenticator without a
        counter); False otherwise (a cloned authenticator, or a concurrent use that won)."""
        ...

    async def create_webauthn_challenge(self, challenge: WebauthnChallengeRecord) -> None:
        """Store an issued challenge."""
        ...

    async def use_webauthn_challenge(
        self, digest: str, *, purpose: WebauthnPurpose, now: float
    ) -> WebauthnChallengeRecord | None:
        """Atomic compare-and-set: mark an unused, unexpired challenge of ``purpose`` used
        and return it; None otherwise (unknown, another purpose, used or expired)."""
        ...

    async def purge_webauthn_challenges(self, *, before: float) -> int:
        """Delete challenges that expired before ``before``; how many."""
        ...


class Counters(Protocol):
    """Fixed-window counters for throttling, shared by every instance."""

    async def hit(self, key: str, *, now: float, window: float) -> CounterState:
        """Add one to ``key``'s window (starting a new one if it has passed); return it."""
        ...

    async def peek(self, key: str, *, now: float, window: float) -> CounterState:
        """The current window of ``key`` (count 0 if none or passed)."""
        ...

    async def reset(self, key: str) -> None:
        """Forget ``key``."""
        ...

    async def release(self, key: str, *, window_start: float) -> None:
        """Take back one hit from ``key`` if its window still starts at ``window_start``
        (never below zero): an attempt counted by :meth:`hit` that was not a failure."""
        ...

    async def peek_many(
        self, keys: Sequence[str], *, now: float, window: float
    ) -> tuple[CounterState, ...]:
        """:meth:`peek` of each of ``keys``, in their order, in one read."""
        ...

    async def hit_guarded(
        self, guard: str, key: str, *, limit: int, now: float, window: float
    ) -> tuple[CounterState, CounterState | None]:
        """Add one to ``guard``'s window; if it is then over ``limit``, take that hit back
        and return ``(guard's state, None)``; else add one to ``key``'s window too and
        return both. One atomic step: no other call sees the guard's hit alone."""
        ...

    async def settle(
        self, *, release: Sequence[tuple[str, float]] = (), reset: Sequence[str] = ()
    ) -> None:
        """:meth:`release` each ``(key, window_start)`` of ``release`` in order, then
        :meth:`reset` each key of ``reset``: one atomic step."""
        ...


class Database(Protocol):
    """Lifecycle and health of a backend."""

    async def ping(self) -> None:
        """Raise StorageUnavailable if the database cannot answer."""
        ...

    async def close(self) -> None:
        """Release every connection."""
        ...


class Storage(
    UserStore,
    SessionStore,
    RevocationStore,
    KeyStore,
    AuditLog,
    ClientStore,
    OidcStore,
    LinkTokenStore,
    MfaStore,
    PasskeyStore,
    WebLoginStore,
    Counters,
    Database,
    Protocol,
):
    """Everything a backend provides; the service takes the narrow Protocols above."""
