"""A patient's reply nobody can classify opens a staff task of its own kind.

Revision ID: 0006_edges1
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_edges1"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TYPE task_kind ADD VALUE IF NOT EXISTS 'reply'")


def downgrade() -> None:
    # PostgreSQL cannot drop an enum value; an unused 'reply' label is harmless.
    pass
