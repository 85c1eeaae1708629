"""Edges: the moment a contact was due, and the tasks returned mail, unreachable patients and
unconfirmed sends open.

- ``communications.due_at``: when the step was due; rolling caps count a contact from it, as the
  decision core does, not from the moment a retry got it out.
- ``task_kind``: ``address`` (a letter came back: find the corrected address), ``locate`` (no
  usable channel at all: find the patient), ``unconfirmed`` (a send cut off mid-request: check
  with the provider whether it went out).

Revision ID: 0006_edges2
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_edges2"
down_revision: str | None = "0006_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS = ("address", "locate", "unconfirmed")


def upgrade() -> None:
    op.add_column("communications", sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
    for kind in _KINDS:
        op.execute(f"ALTER TYPE task_kind ADD VALUE IF NOT EXISTS '{kind}'")


def downgrade() -> None:
    op.execute(
        "DELETE FROM staff_tasks WHERE kind::text IN (" + ", ".join(f"'{k}'" for k in _KINDS) + ")"
    )
    op.execute("ALTER TYPE task_kind RENAME TO task_kind_old")
    op.execute("CREATE TYPE task_kind AS ENUM ('approval', 'call', 'estate')")
    op.execute(
        "ALTER TABLE staff_tasks ALTER COLUMN kind TYPE task_kind USING kind::text::task_kind"
    )
    op.execute("DROP TYPE task_kind_old")
    op.drop_column("communications", "due_at")
