"""Multi-factor authentication: TOTP secrets, recovery codes, logins waiting for their second
factor, and the ``amr`` and ``auth_time`` of each session (a refresh keeps them)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"


def upgrade() -> None:
    # Plain ALTER TABLE (no batch copy on SQLite: see 0004).
    op.add_column("sessions", sa.Column("amr", sa.String(64), nullable=True))
    op.add_column("sessions", sa.Column("auth_time", sa.Float(), nullable=True))
    op.create_table(
        "mfa_totp",
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=True),
        sa.Column("confirmed_at", sa.Float(), nullable=True),
        sa.Column("last_step", sa.Integer(), nullable=True),
        sa.Column("pending_secret", sa.LargeBinary(), nullable=True),
        sa.Column("pending_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("user_id", name="pk_mfa_totp"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_mfa_totp_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "recovery_codes",
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("used_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("user_id", "digest", name="pk_recovery_codes"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_recovery_codes_user_id_users",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "mfa_logins",
        sa.Column("jti", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("used_at", sa.Float(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("jti", name="pk_mfa_logins"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_mfa_logins_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_mfa_logins_expires_at", "mfa_logins", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_mfa_logins_expires_at", table_name="mfa_logins")
    op.drop_table("mfa_logins")
    op.drop_table("recovery_codes")
    op.drop_table("mfa_totp")
    for column in ("auth_time", "amr"):
        if op.get_bind().dialect.name == "sqlite":
            op.execute(sa.text(f'ALTER TABLE "sessions" DROP COLUMN "{column}"'))
        else:
            op.drop_column("sessions", column)
