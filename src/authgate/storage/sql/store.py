"""SqlStorage: every storage Protocol of ``authgate.storage.base`` on SQLAlchemy Core.

One class serves SQLite (aiosqlite) and PostgreSQL (asyncpg); the statements are
dialect-neutral except for the upserts (both dialects spell ``ON CONFLICT`` alike) and
the locks. Every public method maps driver errors with ``engine.translate``: callers see
only Conflict, StorageUnavailable or StorageError.

Each Protocol has its own module (``users``, ``sessions``, ``revocations``, ``keys``,
``audit``, ``clients``, ``oidc``, ``links``, ``mfa``, ``passkeys``, ``weblogins``,
``counters``) on the shared ``_base.SqlBase``: its engine, transactions with their
serialization retry, and error
translation. The advisory-lock ids are in ``locks``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from authgate.storage.sql._base import MAX_RETRY_PAUSE_S, RETRY_PAUSE_S, WRITE_ATTEMPTS
from authgate.storage.sql.audit import SqlAudit
from authgate.storage.sql.clients import SqlClients
from authgate.storage.sql.counters import SqlCounters
from authgate.storage.sql.keys import SqlKeys
from authgate.storage.sql.links import SqlLinkTokens
from authgate.storage.sql.locks import PG_AUDIT_LOCK, PG_KEY_LOCK, PG_REVOCATION_LOCK
from authgate.storage.sql.mfa import SqlMfa
from authgate.storage.sql.oidc import SqlOidc
from authgate.storage.sql.passkeys import SqlPasskeys
from authgate.storage.sql.revocations import SqlRevocations
from authgate.storage.sql.sessions import SqlSessions
from authgate.storage.sql.users import SqlUsers
from authgate.storage.sql.weblogins import SqlWebLogins

if TYPE_CHECKING:
    from authgate.storage.base import Storage


class SqlStorage(
    SqlUsers,
    SqlSessions,
    SqlRevocations,
    SqlKeys,
    SqlAudit,
    SqlClients,
    SqlOidc,
    SqlLinkTokens,
    SqlMfa,
    SqlPasskeys,
    SqlWebLogins,
    SqlCounters,
):
    """Every storage Protocol (``authgate.storage.base.Storage``) on one AsyncEngine.

    Build it with ``open_storage(url)``; the schema must be migrated (``migrate(url)``).
    Methods raise ``Conflict`` for a uniqueness violation, ``StorageUnavailable`` when the
    database cannot be reached (or stays locked past the busy timeout), and
    ``StorageError`` for any other database failure.

    Sets of names (a user's roles, a role's permissions, a client's scopes) come back
    unique and sorted. ``retries`` counts the write transactions run again after a
    serialization failure or a deadlock (PostgreSQL).
    """


if TYPE_CHECKING:

    def _conforms(store: SqlStorage) -> Storage:
        """mypy checks here that SqlStorage implements every storage Protocol."""
        return store


__all__ = [
    "MAX_RETRY_PAUSE_S",
    "PG_AUDIT_LOCK",
    "PG_KEY_LOCK",
    "PG_REVOCATION_LOCK",
    "RETRY_PAUSE_S",
    "WRITE_ATTEMPTS",
    "SqlStorage",
]
