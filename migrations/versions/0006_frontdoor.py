"""Staff notes (free text out of workflow history) and reported legal facts.

Revision ID: 0006_frontdoor
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_frontdoor"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "staff_notes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("task_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_staff_notes_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_notes")),
    )
    op.create_index(op.f("ix_staff_notes_account_id"), "staff_notes", ["account_id"])
    op.create_index(op.f("ix_staff_notes_task_id"), "staff_notes", ["task_id"])
    op.create_table(
        "legal_facts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("reference", sa.String(length=128), nullable=False),
        sa.Column("detail", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("reported_by", sa.String(length=64), nullable=False),
        sa.Column(
            "reported_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_legal_facts_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_facts")),
        sa.UniqueConstraint("reference", name=op.f("uq_legal_facts_reference")),
    )
    op.create_index(op.f("ix_legal_facts_account_id"), "legal_facts", ["account_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_legal_facts_account_id"), table_name="legal_facts")
    op.drop_table("legal_facts")
    op.drop_index(op.f("ix_staff_notes_task_id"), table_name="staff_notes")
    op.drop_index(op.f("ix_staff_notes_account_id"), table_name="staff_notes")
    op.drop_table("staff_notes")
