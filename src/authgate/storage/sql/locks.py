"""Every PostgreSQL advisory lock authgate takes, and the one way it takes them.

The ids live in one 64-bit key space per database (the bytes of "authgate", then a
number). Each lock has its own id, and an id is never renumbered or reused: instances of
different versions take these locks side by side during a rolling upgrade.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

# The prefix: "authgate" in ASCII, its last byte left for the lock's number.
_PREFIX: Final = 0x6175746867617400

# Held while one instance rotates signing keys (key_lock).
PG_KEY_LOCK: Final = _PREFIX | 0x01
# Held while appending a revocation event, so that cursor ids become visible in order.
PG_REVOCATION_LOCK: Final = _PREFIX | 0x02
# Held while appending an audit event, so that the hash chain never forks.
PG_AUDIT_LOCK: Final = _PREFIX | 0x03
# Held while migrating the schema, so that concurrent migrators queue.
PG_MIGRATE_LOCK: Final = _PREFIX | 0x04


async def xact_lock(conn: AsyncConnection, lock_id: int) -> None:
    """Take the advisory lock ``lock_id`` until ``conn``'s transaction ends (PostgreSQL)."""
    await conn.execute(select(func.pg_advisory_xact_lock(lock_id)))
