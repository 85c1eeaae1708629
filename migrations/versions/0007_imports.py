"""Money in 64-bit cents: a balance above $21,474,836.47 no longer overflows the ledger (issue 20).

The import checks every amount against ``models.imports.MAX_AMOUNT_CENTS`` before anything is
written, so a dry run and the real import agree; the columns are wide enough for any sum of
such amounts.

Revision ID: 0007_imports
Revises: 0006_protections
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_imports"
down_revision: str | None = "0006_protections"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY_COLUMNS = {
    "accounts": ("balance_cents",),
    "charge_lines": (
        "charges_cents",
        "insurance_paid_cents",
        "insurance_adjustment_cents",
        "patient_paid_cents",
        "good_faith_estimate_cents",
        "nsa_protected_cents",
    ),
    "payments": ("amount_cents",),
    "adjustments": ("amount_cents",),
    "protection_flags": ("amount_cents",),
}


def upgrade() -> None:
    for table, columns in MONEY_COLUMNS.items():
        for column in columns:
            op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer())


def downgrade() -> None:
    for table, columns in MONEY_COLUMNS.items():
        for column in columns:
            op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger())
