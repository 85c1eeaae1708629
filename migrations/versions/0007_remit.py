"""X12 835 remittances: the claims posted, with their trace numbers and patient-responsibility
reasons (issue 20, item 5).

Revision ID: 0007_remit
Revises: 0007_lifecycle
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_remit"
down_revision: str | None = "0007_lifecycle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "remittance_claims",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("posting_key", sa.String(64), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("trace_number", sa.String(50), nullable=False),
        sa.Column("payer_id", sa.String(80), nullable=False),
        sa.Column("claim_ref", sa.String(50), nullable=False),
        sa.Column("claim_status", sa.String(2), nullable=False),
        sa.Column("payer_claim_id", sa.String(50), nullable=False),
        sa.Column("paid_on", sa.Date(), nullable=True),
        sa.Column("service_date", sa.Date(), nullable=True),
        sa.Column("charge_cents", sa.BigInteger(), nullable=False),
        sa.Column("paid_cents", sa.BigInteger(), nullable=False),
        sa.Column("patient_responsibility_cents", sa.BigInteger(), nullable=False),
        sa.Column("balance_change_cents", sa.BigInteger(), nullable=False),
        sa.Column("adjustments", postgresql.JSONB(), nullable=False),
        sa.Column("patient_reasons", postgresql.JSONB(), nullable=False),
        sa.Column("posted_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_remittance_claims_account_id_accounts"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_remittance_claims"),
        sa.UniqueConstraint("posting_key", name="uq_remittance_claims_posting_key"),
    )
    op.create_index("ix_remittance_claims_account_id", "remittance_claims", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_remittance_claims_account_id", table_name="remittance_claims")
    op.drop_table("remittance_claims")
