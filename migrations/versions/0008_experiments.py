"""Champion and challenger experiments: experiments, arms, assignments, the stored default policy
(issue 14).

Revision ID: 0008_experiments
Revises: 0007_console
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008_experiments"
down_revision: str | None = "0007_console"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("config", postgresql.JSONB(), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column(
            "status",
            sa.Enum("running", "stopped", "promoted", name="experiment_status"),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("started_by", sa.String(64), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stop_reason", sa.String(300), nullable=True),
        sa.Column("promoted_arm", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_experiments"),
        sa.UniqueConstraint("key", name="uq_experiments_key"),
    )
    op.create_table(
        "experiment_arms",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("experiment_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("champion", sa.Boolean(), nullable=False),
        sa.Column("policy_name", sa.String(64), nullable=False),
        sa.Column("policy_hash", sa.String(64), nullable=False),
        sa.Column("share_bp", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("active", "stopped", name="experiment_arm_status"),
            nullable=False,
        ),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stop_reason", sa.String(300), nullable=True),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name="fk_experiment_arms_experiment_id_experiments",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_experiment_arms"),
        sa.UniqueConstraint("experiment_id", "name", name="uq_experiment_arms_experiment_id"),
    )
    op.create_index("ix_experiment_arms_experiment_id", "experiment_arms", ["experiment_id"])
    op.create_table(
        "experiment_assignments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("experiment_id", sa.Uuid(), nullable=False),
        sa.Column("arm_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("bucket", sa.Float(), nullable=False),
        sa.Column("policy_hash", sa.String(64), nullable=False),
        sa.Column("balance_cents", sa.BigInteger(), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name="fk_experiment_assignments_experiment_id_experiments",
        ),
        sa.ForeignKeyConstraint(
            ["arm_id"],
            ["experiment_arms.id"],
            name="fk_experiment_assignments_arm_id_experiment_arms",
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_experiment_assignments_account_id_accounts"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_experiment_assignments"),
        sa.UniqueConstraint("account_id", name="uq_experiment_assignments_account_id"),
    )
    op.create_index(
        "ix_experiment_assignments_experiment_id", "experiment_assignments", ["experiment_id"]
    )
    op.create_index("ix_experiment_assignments_arm_id", "experiment_assignments", ["arm_id"])
    op.create_table(
        "default_policies",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("policy_name", sa.String(64), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("set_by", sa.String(64), nullable=False),
        sa.Column("experiment_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name="fk_default_policies_experiment_id_experiments",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_default_policies"),
    )


def downgrade() -> None:
    op.drop_table("default_policies")
    op.drop_index("ix_experiment_assignments_arm_id", table_name="experiment_assignments")
    op.drop_index("ix_experiment_assignments_experiment_id", table_name="experiment_assignments")
    op.drop_table("experiment_assignments")
    op.drop_index("ix_experiment_arms_experiment_id", table_name="experiment_arms")
    op.drop_table("experiment_arms")
    op.drop_table("experiments")
    sa.Enum(name="experiment_arm_status").drop(op.get_bind(), checkfirst=True)
    sa.Enum(name="experiment_status").drop(op.get_bind(), checkfirst=True)
