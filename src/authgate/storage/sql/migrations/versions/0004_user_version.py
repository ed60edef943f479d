"""Revoke by a per-user privilege version instead of by time; bind the grace replay.

``users.ver`` replaces ``users.epoch``: every change to a user's privileges (roles, a role's
permissions, disabling, logging out everywhere) increments it in the same transaction, and
every access token carries the version it was issued under. ``revocations.ver`` carries it to
the guards. ``sessions.replayed_at`` records the one replay the grace window allows a family.
Access tokens issued before this migration carry no version and are refused from then on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"


# Plain ALTER TABLE, never a batch "copy and move" on SQLite: dropping the old users table
# there would cascade to every session and refresh token (ON DELETE CASCADE).


def upgrade() -> None:
    op.add_column("users", sa.Column("ver", sa.Integer(), nullable=False, server_default="0"))
    _drop_column("users", "epoch")
    op.add_column("revocations", sa.Column("ver", sa.Integer(), nullable=True))
    op.add_column("sessions", sa.Column("replayed_at", sa.Float(), nullable=True))


def downgrade() -> None:
    _drop_column("sessions", "replayed_at")
    _drop_column("revocations", "ver")
    op.add_column("users", sa.Column("epoch", sa.Float(), nullable=False, server_default="0"))
    _drop_column("users", "ver")


def _drop_column(table: str, column: str) -> None:
    if op.get_bind().dialect.name == "sqlite":  # native since SQLite 3.35
        op.execute(sa.text(f'ALTER TABLE "{table}" DROP COLUMN "{column}"'))
    else:
        op.drop_column(table, column)
