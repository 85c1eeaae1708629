"""The ledger records what a workflow wrote off itself: financial assistance and approved
write-offs become adjustments (``services.write_offs``).

Revision ID: 0009_write_offs
Revises: 0008_experiments
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_write_offs"
down_revision: str | None = "0008_experiments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # PostgreSQL adds enum values in a transaction; they are usable once it commits.
    op.execute("ALTER TYPE adjustment_kind ADD VALUE IF NOT EXISTS 'financial_assistance'")
    op.execute("ALTER TYPE adjustment_kind ADD VALUE IF NOT EXISTS 'write_off'")


def downgrade() -> None:
    # An enum value cannot be dropped while rows use it; the values stay, unused.
    pass
