"""Security events: written to the audit table and to the log, never with secrets."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from authgate.clock import Clock
from authgate.storage.base import AuditLog

log = logging.getLogger("authgate.audit")


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
        await self._store.append_audit(
            event, at=self._clock.now(), user_id=user_id, sid=sid, ip=ip, detail=detail or None
        )
        for listener in self.listeners:
            listener(event)
        log.info(
            "audit %s", event, extra={"event": event, "user_id": user_id, "sid": sid, "ip": ip}
        )
