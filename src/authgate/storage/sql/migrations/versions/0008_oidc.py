"""OpenID Connect and the hosted login: client redirect URIs and kinds, the hosted login's
browser sessions, authorization codes (by digest) and remembered consents."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("redirect_uris", sa.Text(), nullable=True))
        batch.add_column(sa.Column("post_logout_redirect_uris", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("public", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("first_party", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("id_token_alg", sa.String(16), nullable=True))
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("parent_sid", sa.String(128), nullable=True))
    op.create_index("ix_sessions_parent_sid", "sessions", ["parent_sid"])
    op.create_table(
        "web_logins",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("sid", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_seen_at", sa.Float(), nullable=False),
        sa.Column("idle_expires_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name="pk_web_logins"),
        sa.ForeignKeyConstraint(
            ["sid"], ["sessions.sid"], name="fk_web_logins_sid_sessions", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_web_logins_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_web_logins_sid", "web_logins", ["sid"])
    op.create_index("ix_web_logins_user_id", "web_logins", ["user_id"])
    op.create_index("ix_web_logins_expires_at", "web_logins", ["expires_at"])
    op.create_table(
        "auth_codes",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("login_sid", sa.String(128), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("code_challenge", sa.String(128), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("nonce", sa.Text(), nullable=True),
        sa.Column("auth_time", sa.Float(), nullable=False),
        sa.Column("amr", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("used_at", sa.Float(), nullable=True),
        sa.Column("issued_sid", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("digest", name="pk_auth_codes"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_auth_codes_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_auth_codes_user_id", "auth_codes", ["user_id"])
    op.create_index("ix_auth_codes_expires_at", "auth_codes", ["expires_at"])
    op.create_table(
        "consents",
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("granted_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "client_id", name="pk_consents"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_consents_user_id_users", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("consents")
    op.drop_index("ix_auth_codes_expires_at", table_name="auth_codes")
    op.drop_index("ix_auth_codes_user_id", table_name="auth_codes")
    op.drop_table("auth_codes")
    op.drop_index("ix_web_logins_expires_at", table_name="web_logins")
    op.drop_index("ix_web_logins_user_id", table_name="web_logins")
    op.drop_index("ix_web_logins_sid", table_name="web_logins")
    op.drop_table("web_logins")
    op.drop_index("ix_sessions_parent_sid", table_name="sessions")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("parent_sid")
    with op.batch_alter_table("clients") as batch:
        for name in (
            "id_token_alg",
            "first_party",
            "public",
            "post_logout_redirect_uris",
            "redirect_uris",
        ):
            batch.drop_column(name)
