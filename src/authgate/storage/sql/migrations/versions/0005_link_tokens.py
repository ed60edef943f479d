"""Email verification, password reset and email change: ``users.email_verified`` and the
single-use tokens mailed as links (``link_tokens``, by digest)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"


def upgrade() -> None:
    # Plain ALTER TABLE (no batch copy on SQLite: see 0004).
    op.add_column(
        "users",
        sa.Column("email_verified", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "link_tokens",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("used_at", sa.Float(), nullable=True),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("ended_by", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("digest", name="pk_link_tokens"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_link_tokens_user_id_users",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_link_tokens_expires_at", "link_tokens", ["expires_at"])
    op.create_index("ix_link_tokens_user_id_purpose", "link_tokens", ["user_id", "purpose"])


def downgrade() -> None:
    op.drop_index("ix_link_tokens_user_id_purpose", table_name="link_tokens")
    op.drop_index("ix_link_tokens_expires_at", table_name="link_tokens")
    op.drop_table("link_tokens")
    if op.get_bind().dialect.name == "sqlite":
        op.execute(sa.text('ALTER TABLE "users" DROP COLUMN "email_verified"'))
    else:
        op.drop_column("users", "email_verified")
