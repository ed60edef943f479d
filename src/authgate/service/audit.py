"""Security events: written to the audit table and to the log, never with secrets."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from authgate.clock import Clock
from authgate.storage.base import AuditEntry, AuditLog, AuditRecord, record_hash

log = logging.getLogger("authgate.audit")


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The result of walking the audit chain: ``broken_at`` is the id of the first row
    whose link does not hold (None when the whole chain holds)."""

    checked: int
    broken_at: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        """True when every link holds."""
        return self.broken_at is None


class Audit:
    """Records security events (login ok/failed, refresh reuse, revoke, role change, ...)."""

    def __init__(self, store: AuditLog, *, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self.listeners: list[Callable[[str], None]] = []

    async def record(
        self,
        event: str,
        *,
        user_id: str | None = None,
        sid: str | None = None,
        ip: str | None = None,
        **detail: Any,
    ) -> None:
        """Append one event."""
        await self.record_entry(self.entry(event, user_id=user_id, sid=sid, ip=ip, **detail))

    def entry(
        self,
        event: str,
        *,
        user_id: str | None = None,
        sid: str | None = None,
        ip: str | None = None,
        **detail: Any,
    ) -> AuditEntry:
        """An event stamped now, for a store write that appends it in its own transaction
        (``SessionStore.create_session``); :meth:`published` once that has committed."""
        return AuditEntry(
            event=event,
            at=self._clock.now(),
            user_id=user_id,
            sid=sid,
            ip=ip,
            detail=detail or None,
        )

    async def record_entry(self, entry: AuditEntry) -> None:
        """Append an event made by :meth:`entry`."""
        await self._store.append_audit(entry)
        self.published(entry)

    async def record_anyway(self, entry: AuditEntry) -> None:
        """Append an event on the way out of a failed request (the write that was to carry
        it failed): a failure here is logged, never raised over the request's own error."""
        try:
            await self.record_entry(entry)
        except Exception:  # the storage is failing already: the original error goes on
            log.warning("audit %s could not be recorded", entry.event, exc_info=True)

    def published(self, entry: AuditEntry) -> None:
        """Tell the listeners and the log of an event now in the chain."""
        for listener in self.listeners:
            listener(entry.event)
        log.info(
            "audit %s",
            entry.event,
            extra={
                "event": entry.event,
                "user_id": entry.user_id,
                "sid": entry.sid,
                "ip": entry.ip,
            },
        )

    async def recent(self, user_id: str, *, limit: int = 20) -> list[AuditRecord]:
        """The user's latest ``limit`` events, newest first (the account page's list)."""
        return await self._store.query_audit(user_id=user_id, limit=limit, newest_first=True)

    async def verify(self, *, page: int = 1000) -> ChainReport:
        """Walk the chain from the first event; report the first row that was edited
        (its hash no longer matches), or that follows a deleted or moved row (its
        ``prev_hash`` is not the hash of the row before it)."""
        checked = 0
        prev_hash: str | None = None
        after: int | None = None
        while True:
            rows = await self._store.audit_chain(after=after, limit=page)
            for row in rows:
                if row.prev_hash != prev_hash:
                    return ChainReport(
                        checked,
                        row.id,
                        "the link to the previous event is broken "
                        "(an event before it was deleted, inserted or moved)",
                    )
                if row.hash != record_hash(row):
                    return ChainReport(
                        checked, row.id, "the event was changed after it was written"
                    )
                prev_hash = row.hash
                checked += 1
            if len(rows) < page:
                return ChainReport(checked)
            after = rows[-1].id
