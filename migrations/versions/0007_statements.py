"""Statements a patient understands: each visit's remittance facts (issue 15).

Who paid (the payer's name), the claim's status, and why the rest is the patient's (deductible,
co-insurance, copay, not covered), as the practice's system takes them from the insurer's
remittance. The letter explains each visit in plain words from them.

Revision ID: 0007_statements
Revises: 0007_protect
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_statements"
down_revision: str | None = "0007_protect"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AMOUNTS = ("deductible_cents", "coinsurance_cents", "copay_cents", "not_covered_cents")


def upgrade() -> None:
    op.add_column("charge_lines", sa.Column("payer", sa.String(100), nullable=True))
    op.add_column("charge_lines", sa.Column("claim_status", sa.String(16), nullable=True))
    for name in AMOUNTS:
        op.add_column(
            "charge_lines", sa.Column(name, sa.Integer(), server_default="0", nullable=False)
        )
        op.create_check_constraint(
            op.f(f"ck_charge_lines_{name.removesuffix('_cents')}_not_negative"),
            "charge_lines",
            f"{name} >= 0",
        )


def downgrade() -> None:
    for name in reversed(AMOUNTS):
        op.drop_constraint(
            f"ck_charge_lines_{name.removesuffix('_cents')}_not_negative", "charge_lines"
        )
        op.drop_column("charge_lines", name)
    op.drop_column("charge_lines", "claim_status")
    op.drop_column("charge_lines", "payer")
