"""The PostgreSQL advisory-lock ids: named once, in ``authgate.storage.sql.locks``, and
distinct, so that no two locks can serialise each other by accident. The PostgreSQL side
(an audit append and a migration never wait for each other) is in test_sql_postgresql.py."""

from __future__ import annotations

from pathlib import Path

import authgate
from authgate.storage.sql import locks

_PACKAGE = Path(authgate.__file__).resolve().parent
_LOCKS_MODULE = Path(locks.__file__).resolve()
_NEEDED = {"PG_KEY_LOCK", "PG_REVOCATION_LOCK", "PG_AUDIT_LOCK", "PG_MIGRATE_LOCK"}


def _lock_ids() -> dict[str, int]:
    return {
        name: value
        for name, value in vars(locks).items()
        if name.startswith("PG_") and name.endswith("_LOCK") and isinstance(value, int)
    }


def test_advisory_lock_collision_every_id_is_distinct() -> None:
    ids = _lock_ids()
    assert set(ids) >= _NEEDED
    assert len(set(ids.values())) == len(ids), ids
    assert ids["PG_AUDIT_LOCK"] != ids["PG_MIGRATE_LOCK"]
    # pg_advisory_xact_lock takes a signed bigint.
    assert all(-(2**63) <= value < 2**63 for value in ids.values())


def test_advisory_lock_collision_ids_are_named_in_one_module() -> None:
    """Nothing else in the package takes an advisory lock or spells an id."""
    elsewhere = [
        str(path.relative_to(_PACKAGE))
        for path in sorted(_PACKAGE.rglob("*.py"))
        if path.resolve() != _LOCKS_MODULE
        and (
            "pg_advisory" in (source := path.read_text(encoding="utf-8")).lower()
            or "0x61757468676174" in source.lower()
        )
    ]
    assert elsewhere == []
