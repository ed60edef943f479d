"""Chain the audit log: each event stores its predecessor's hash and its own."""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from authgate.storage.base import audit_hash

revision: str = "0003"
down_revision: str | None = "0002"


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("prev_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(64), nullable=True))
    # Chain the events written before this migration, in id order.
    conn = op.get_bind()
    table = sa.table(
        "audit_events",
        sa.column("id", sa.Integer),
        sa.column("at", sa.Float),
        sa.column("event", sa.String),
        sa.column("user_id", sa.String),
        sa.column("sid", sa.String),
        sa.column("ip", sa.String),
        sa.column("detail", sa.Text),
        sa.column("prev_hash", sa.String),
        sa.column("hash", sa.String),
    )
    prev = None
    for row in conn.execute(sa.select(table).order_by(table.c.id)).all():
        digest = audit_hash(
            id=row.id,
            at=row.at,
            event=row.event,
            user_id=row.user_id,
            sid=row.sid,
            ip=row.ip,
            detail=json.loads(row.detail),
            prev_hash=prev,
        )
        conn.execute(
            sa.update(table).where(table.c.id == row.id).values(prev_hash=prev, hash=digest)
        )
        prev = digest


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
