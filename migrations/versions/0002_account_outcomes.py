"""Account outcomes beyond paid (settled, written off, placed, stopped, estate) and estate tasks.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_STATUSES = ("settled", "written_off", "placed", "stopped", "estate")


def upgrade() -> None:
    for value in NEW_STATUSES:
        op.execute(f"ALTER TYPE account_status ADD VALUE IF NOT EXISTS '{value}'")
    op.execute("ALTER TYPE task_kind ADD VALUE IF NOT EXISTS 'estate'")


def downgrade() -> None:
    # PostgreSQL cannot drop enum values; map them back and rebuild the types.
    op.execute(
        "UPDATE accounts SET status = 'closed' WHERE status::text IN "
        "('settled', 'written_off', 'placed', 'stopped', 'estate')"
    )
    op.execute("DELETE FROM staff_tasks WHERE kind::text = 'estate'")
    op.execute("ALTER TYPE account_status RENAME TO account_status_old")
    op.execute("CREATE TYPE account_status AS ENUM ('open', 'paid', 'closed')")
    op.execute(
        "ALTER TABLE accounts ALTER COLUMN status TYPE account_status "
        "USING status::text::account_status"
    )
    op.execute("DROP TYPE account_status_old")
    op.execute("ALTER TYPE task_kind RENAME TO task_kind_old")
    op.execute("CREATE TYPE task_kind AS ENUM ('approval', 'call')")
    op.execute(
        "ALTER TABLE staff_tasks ALTER COLUMN kind TYPE task_kind USING kind::text::task_kind"
    )
    op.execute("DROP TYPE task_kind_old")
