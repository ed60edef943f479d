"""The SQL schema, as SQLAlchemy Core tables. The migrations in ``migrations/`` build
exactly this schema (a test compares them). Times are POSIX seconds as floats."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    false,
)

# Named constraints, so that later migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

users = Table(
    "users",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("name", Text, nullable=True),
    Column("disabled", Boolean, nullable=False),
    # Incremented with every change to the user's privileges; access tokens carry it.
    Column("ver", Integer, nullable=False, server_default="0"),
    Column("created_at", Float, nullable=False),
    Column("email_verified", Boolean, nullable=False, server_default=false()),
)

roles = Table(
    "roles",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("permissions", Text, nullable=False),  # a JSON array of strings
    Column("created_at", Float, nullable=False),
)

# No foreign key to roles: a role is checked by the service, and delete_role removes it here.
user_roles = Table(
    "user_roles",
    metadata,
    Column(
        "user_id",
        String(128),
        ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("role", String(128), primary_key=True),
    Index(None, "role"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("sid", String(128), primary_key=True),
    Column(
        "user_id",
        String(128),
        ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("client_id", String(255), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_used_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("ip", String(64), nullable=True),
    Column("user_agent", Text, nullable=True),
    Column("scope", Text, nullable=True),
    Column("revoked_at", Float, nullable=True),
    Column("replayed_at", Float, nullable=True),  # the family's one grace-window replay
    # How the session's login was made (RFC 8176 values, space-separated) and when: a
    # refresh keeps both as they were.
    Column("amr", String(64), nullable=True),
    Column("auth_time", Float, nullable=True),
    # The hosted-login session a client's session came from (OpenID Connect code flow):
    # ending that login ends it too.
    Column("parent_sid", String(128), nullable=True, index=True),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column(
        "sid",
        String(128),
        ForeignKey("sessions.sid", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("created_at", Float, nullable=False),
    Column("idle_expires_at", Float, nullable=False),
    Column("parent", String(64), nullable=True),
    Column("rotated_at", Float, nullable=True),
    Column("successor", String(64), nullable=True),
)

# sqlite_autoincrement: SQLite must never hand out an id twice, or a feed cursor would skip.
revocations = Table(
    "revocations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(8), nullable=False),
    Column("value", String(255), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
    Column("not_before", Float, nullable=True),
    Column("ver", Integer, nullable=True),  # kind "user": tokens with a lower ver are dead
    Index(None, "kind", "value"),
    sqlite_autoincrement=True,
)

keys = Table(
    "keys",
    metadata,
    Column("kid", String(255), primary_key=True),
    Column("alg", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("public_jwk", Text, nullable=True),
    Column("encrypted_private", LargeBinary, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("activated_at", Float, nullable=True),
    Column("retired_at", Float, nullable=True),
    Column("expires_at", Float, nullable=True),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("event", String(128), nullable=False, index=True),
    Column("user_id", String(128), nullable=True, index=True),  # no FK: the log outlives users
    Column("sid", String(128), nullable=True),
    Column("ip", String(64), nullable=True),
    Column("detail", Text, nullable=False),  # a JSON object
    Column("prev_hash", String(64), nullable=True),  # None for the first event only
    Column("hash", String(64), nullable=True),  # set in the same transaction as the insert
    sqlite_autoincrement=True,
)

clients = Table(
    "clients",
    metadata,
    Column("client_id", String(255), primary_key=True),
    Column("name", Text, nullable=False),
    Column("scopes", Text, nullable=False),  # a JSON array of strings
    Column("secret_hash", Text, nullable=True),  # argon2id; None for a private_key_jwt client
    Column("public_jwk", Text, nullable=True),  # JSON
    Column("access_ttl", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    # OpenID Connect: JSON arrays of exact URIs; a public client has no secret (PKCE only);
    # a first-party client skips consent; the ID token's algorithm (RS256 when None).
    Column("redirect_uris", Text, nullable=True),
    Column("post_logout_redirect_uris", Text, nullable=True),
    Column("public", Boolean, nullable=False, server_default=false()),
    Column("first_party", Boolean, nullable=False, server_default=false()),
    Column("id_token_alg", String(16), nullable=True),
)

# Seen client-assertion ids. ``jti`` holds the SHA-256 (hex) of the assertion's jti, which
# the client chooses: any length, and PostgreSQL caps the size of an index entry. No FK
# to clients: clients are revoked, never deleted, and the insert stays one row.
client_assertions = Table(
    "client_assertions",
    metadata,
    Column("client_id", String(255), primary_key=True),
    Column("jti", String(64), primary_key=True),
    Column("expires_at", Float, nullable=False, index=True),
)

# Single-use tokens mailed as links, by the SHA-256 (hex) of their value.
link_tokens = Table(
    "link_tokens",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("purpose", String(32), nullable=False),
    Column(
        "user_id",
        String(128),
        ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("email", String(320), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
    Column("used_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("ended_by", String(32), nullable=True),
    Index(None, "user_id", "purpose"),
)

# A user's TOTP: the active secret and the one being enrolled, each AES-256-GCM under a
# subkey of the master key (AAD: the user id); ``last_step`` is the last time step accepted,
# so that no code works twice.
mfa_totp = Table(
    "mfa_totp",
    metadata,
    Column("user_id", String(128), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("secret", LargeBinary, nullable=True),
    Column("confirmed_at", Float, nullable=True),
    Column("last_step", Integer, nullable=True),
    Column("pending_secret", LargeBinary, nullable=True),
    Column("pending_at", Float, nullable=True),
)

# Recovery codes, by keyed digest; each works once.
recovery_codes = Table(
    "recovery_codes",
    metadata,
    Column("user_id", String(128), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("digest", String(64), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("used_at", Float, nullable=True),
)

# A login waiting for its second factor: the mfa_token's jti, single use, short-lived, with
# the password hash that was checked (the session opens only while it is still the stored one).
mfa_logins = Table(
    "mfa_logins",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("user_id", String(128), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
    Column("used_at", Float, nullable=True),
    Column("failures", Integer, nullable=False, server_default="0"),
)

# Passkeys (WebAuthn credentials). ``credential_id`` is the authenticator's id (base64url of
# at most 1023 bytes); ``public_key`` its COSE key; ``sign_count`` the last counter accepted.
passkeys = Table(
    "passkeys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("credential_id", String(1400), nullable=False, unique=True),
    Column(
        "user_id",
        String(128),
        ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("public_key", LargeBinary, nullable=False),
    Column("sign_count", BigInteger, nullable=False),
    Column("transports", Text, nullable=False),  # a JSON array of strings
    Column("name", String(128), nullable=False),
    Column("aaguid", String(36), nullable=True),
    Column("backup_eligible", Boolean, nullable=False),
    Column("backed_up", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_used_at", Float, nullable=True),
)

# WebAuthn challenges, by the SHA-256 (hex) of their bytes: single use, short-lived, bound to
# a purpose and to a user or a login waiting for its second factor (none: passwordless).
webauthn_challenges = Table(
    "webauthn_challenges",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("purpose", String(16), nullable=False),
    Column("user_id", String(128), ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
    Column("login_jti", String(64), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
    Column("used_at", Float, nullable=True),
)

# The hosted login's browser sessions: the cookie's value by its SHA-256 (hex); each is a
# row of ``sessions`` (no refresh token), so every way of ending a session ends it.
web_logins = Table(
    "web_logins",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column(
        "sid",
        String(128),
        ForeignKey("sessions.sid", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column(
        "user_id",
        String(128),
        ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("created_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=False),
    Column("idle_expires_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
)

# OpenID Connect authorization codes, by the SHA-256 (hex) of their value: single use,
# bound to the client, the redirect URI and the PKCE challenge. ``issued_sid`` is the
# session the exchange created, ended if the code is presented again.
auth_codes = Table(
    "auth_codes",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("client_id", String(255), nullable=False),
    Column(
        "user_id",
        String(128),
        ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("login_sid", String(128), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("code_challenge", String(128), nullable=False),
    Column("scope", Text, nullable=False),
    Column("nonce", Text, nullable=True),
    Column("auth_time", Float, nullable=False),
    Column("amr", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
    Column("used_at", Float, nullable=True),
    Column("issued_sid", String(128), nullable=True),
)

# Consents a user gave to third-party clients: remembered, revocable.
consents = Table(
    "consents",
    metadata,
    Column("user_id", String(128), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("client_id", String(255), primary_key=True),
    Column("scope", Text, nullable=False),
    Column("granted_at", Float, nullable=False),
)

counters = Table(
    "counters",
    metadata,
    Column("key", String(512), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("window_start", Float, nullable=False),
)

__all__ = [
    "audit_events",
    "auth_codes",
    "client_assertions",
    "clients",
    "consents",
    "counters",
    "keys",
    "link_tokens",
    "metadata",
    "mfa_logins",
    "mfa_totp",
    "passkeys",
    "recovery_codes",
    "refresh_tokens",
    "revocations",
    "roles",
    "sessions",
    "user_roles",
    "users",
    "web_logins",
    "webauthn_challenges",
]
