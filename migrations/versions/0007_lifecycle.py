"""Lifecycle that sticks and the agency kept informed (issue 17 items 3 and 4, issues 11 and 18).

- ``accounts.continues_account_id``: a balance that began after its account closed (a charge after
  placement, after a bankruptcy filing, after a write-off or settlement) is an account of its own
  that names the one it continues; its statements list only its own lines.
- ``accounts.placed_at``: when the account went to the agency (the placement and update files).
- ``account_status`` gains ``recalled``: taken back from the agency.
- ``agency_updates``: every change the agency must hear of after placement (payments,
  adjustments, disputes, bankruptcy, death, recalls), once per reference; the dated update file is
  written from it.

Revision ID: 0007_lifecycle
Revises: 0007_statements
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_lifecycle"
down_revision: str | None = "0007_statements"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TYPE account_status ADD VALUE IF NOT EXISTS 'recalled'")
    op.add_column("accounts", sa.Column("continues_account_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_accounts_continues_account_id_accounts"),
        "accounts",
        "accounts",
        ["continues_account_id"],
        ["id"],
    )
    op.create_index(
        op.f("ix_accounts_continues_account_id"), "accounts", ["continues_account_id"]
    )
    op.add_column("accounts", sa.Column("placed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "agency_updates",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("reference", sa.String(120), nullable=False),
        sa.Column("change", sa.String(32), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("balance_cents", sa.Integer(), nullable=False),
        sa.Column("reported_by", sa.String(64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_agency_updates_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agency_updates")),
        sa.UniqueConstraint("reference", name=op.f("uq_agency_updates_reference")),
    )
    op.create_index(op.f("ix_agency_updates_account_id"), "agency_updates", ["account_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_agency_updates_account_id"), table_name="agency_updates")
    op.drop_table("agency_updates")
    op.drop_column("accounts", "placed_at")
    op.drop_index(op.f("ix_accounts_continues_account_id"), table_name="accounts")
    op.drop_constraint(
        op.f("fk_accounts_continues_account_id_accounts"), "accounts", type_="foreignkey"
    )
    op.drop_column("accounts", "continues_account_id")
    op.execute("UPDATE accounts SET status = 'closed' WHERE status::text = 'recalled'")
    op.execute("ALTER TYPE account_status RENAME TO account_status_old")
    op.execute(
        "CREATE TYPE account_status AS ENUM ('open', 'paid', 'closed', 'settled', 'written_off',"
        " 'placed', 'stopped', 'estate')"
    )
    op.execute(
        "ALTER TABLE accounts ALTER COLUMN status TYPE account_status"
        " USING status::text::account_status"
    )
    op.execute("DROP TYPE account_status_old")
