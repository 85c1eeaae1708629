"""Adjustments in the ledger: insurance payments and denials, corrections; once per reference.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "adjustments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("adjustment", "insurance_payment", "insurance_denial", name="adjustment_kind"),
            nullable=False,
        ),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("posted_by", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint("amount_cents <> 0", name=op.f("ck_adjustments_amount_not_zero")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_adjustments_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adjustments")),
        sa.UniqueConstraint("reference", name=op.f("uq_adjustments_reference")),
    )
    op.create_index(op.f("ix_adjustments_account_id"), "adjustments", ["account_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_adjustments_account_id"), table_name="adjustments")
    op.drop_table("adjustments")
    op.execute("DROP TYPE IF EXISTS adjustment_kind")
