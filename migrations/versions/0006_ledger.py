"""The ledger is the truth: a signal outbox, drift records and refund tasks.

Revision ID: 0006_ledger
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_ledger"
down_revision: str | None = "0006_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signal_outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=48), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("start_input", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_signal_outbox_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signal_outbox")),
    )
    op.create_index(
        "ix_signal_outbox_pending",
        "signal_outbox",
        ["account_id", "id"],
        postgresql_where=sa.text("delivered_at IS NULL"),
    )
    op.create_table(
        "drift_records",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("workflow_id", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("detail", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("repaired", sa.Boolean(), nullable=False),
        sa.Column(
            "found_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift_records")),
    )
    op.execute("ALTER TYPE task_kind ADD VALUE IF NOT EXISTS 'refund'")
    # Webhook events are claimed (inserted) before they are applied, then marked applied.
    op.add_column(
        "webhook_events", sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute("UPDATE webhook_events SET applied_at = received_at")


def downgrade() -> None:
    op.drop_column("webhook_events", "applied_at")
    op.drop_table("drift_records")
    op.drop_index("ix_signal_outbox_pending", table_name="signal_outbox")
    op.drop_table("signal_outbox")
