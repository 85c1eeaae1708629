"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24 10:11:17.034828
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "guarantors",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("external_ref", sa.String(length=64), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=False),
        sa.Column("last_name", sa.String(length=100), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("address_line1", sa.String(length=200), nullable=True),
        sa.Column("address_line2", sa.String(length=200), nullable=True),
        sa.Column("city", sa.String(length=100), nullable=True),
        sa.Column("region", sa.String(length=2), nullable=True),
        sa.Column("postal_code", sa.String(length=10), nullable=True),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guarantors")),
        sa.UniqueConstraint("external_ref", name=op.f("uq_guarantors_external_ref")),
    )
    op.create_table(
        "policy_versions",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("source_path", sa.String(length=500), nullable=False),
        sa.Column("document", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("hash", name=op.f("pk_policy_versions")),
    )
    op.create_index(op.f("ix_policy_versions_name"), "policy_versions", ["name"], unique=False)
    op.create_table(
        "accounts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_number", sa.String(length=64), nullable=False),
        sa.Column("guarantor_id", sa.Uuid(), nullable=False),
        sa.Column("policy_name", sa.String(length=64), nullable=False),
        sa.Column(
            "status", sa.Enum("open", "paid", "closed", name="account_status"), nullable=False
        ),
        sa.Column("balance_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_statement_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["guarantor_id"], ["guarantors.id"], name=op.f("fk_accounts_guarantor_id_guarantors")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("account_number", name=op.f("uq_accounts_account_number")),
    )
    op.create_index(op.f("ix_accounts_guarantor_id"), "accounts", ["guarantor_id"], unique=False)
    op.create_table(
        "channel_preferences",
        sa.Column("guarantor_id", sa.Uuid(), nullable=False),
        sa.Column(
            "channel", sa.Enum("letter", "email", "sms", "call", name="channel"), nullable=False
        ),
        sa.Column("consent", sa.Boolean(), nullable=False),
        sa.Column("opted_out_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "deliverability",
            sa.Enum("ok", "bounced", "undeliverable", "returned", name="deliverability"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["guarantor_id"],
            ["guarantors.id"],
            name=op.f("fk_channel_preferences_guarantor_id_guarantors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("guarantor_id", "channel", name=op.f("pk_channel_preferences")),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("detail", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_audit_events_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(
        op.f("ix_audit_events_account_id"), "audit_events", ["account_id"], unique=False
    )
    op.create_index(op.f("ix_audit_events_at"), "audit_events", ["at"], unique=False)
    op.create_table(
        "charge_lines",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("external_ref", sa.String(length=64), nullable=False),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("charges_cents", sa.Integer(), nullable=False),
        sa.Column("insurance_paid_cents", sa.Integer(), nullable=False),
        sa.Column("insurance_adjustment_cents", sa.Integer(), nullable=False),
        sa.Column("patient_paid_cents", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("charges_cents >= 0", name=op.f("ck_charge_lines_charges_not_negative")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_charge_lines_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_charge_lines")),
        sa.UniqueConstraint("account_id", "external_ref", name=op.f("uq_charge_lines_account_id")),
    )
    op.create_index(
        op.f("ix_charge_lines_account_id"), "charge_lines", ["account_id"], unique=False
    )
    op.create_table(
        "communications",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("step_id", sa.String(length=48), nullable=False),
        sa.Column("policy_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "channel",
            postgresql.ENUM("letter", "email", "sms", "call", name="channel", create_type=False),
            nullable=True,
        ),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "sent",
                "suppressed",
                "failed",
                "unconfirmed",
                name="communication_status",
            ),
            nullable=False,
        ),
        sa.Column("recipient", sa.String(length=300), nullable=True),
        sa.Column("subject", sa.String(length=200), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("provider_id", sa.String(length=100), nullable=True),
        sa.Column("file_path", sa.String(length=500), nullable=True),
        sa.Column("reasons", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_communications_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_communications")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_communications_idempotency_key")),
    )
    op.create_index(
        op.f("ix_communications_account_id"), "communications", ["account_id"], unique=False
    )
    op.create_table(
        "payments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("posted_by", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_payments_amount_positive")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_payments_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("reference", name=op.f("uq_payments_reference")),
    )
    op.create_index(op.f("ix_payments_account_id"), "payments", ["account_id"], unique=False)
    op.create_table(
        "staff_tasks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.Enum("approval", "call", name="task_kind"), nullable=False),
        sa.Column(
            "status",
            sa.Enum("open", "approved", "denied", "done", "expired", name="task_status"),
            nullable=False,
        ),
        sa.Column("step_id", sa.String(length=48), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("approvers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detail", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_staff_tasks_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_tasks")),
    )
    op.create_index(op.f("ix_staff_tasks_account_id"), "staff_tasks", ["account_id"], unique=False)
    op.create_index(op.f("ix_staff_tasks_status"), "staff_tasks", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_staff_tasks_status"), table_name="staff_tasks")
    op.drop_index(op.f("ix_staff_tasks_account_id"), table_name="staff_tasks")
    op.drop_table("staff_tasks")
    op.drop_index(op.f("ix_payments_account_id"), table_name="payments")
    op.drop_table("payments")
    op.drop_index(op.f("ix_communications_account_id"), table_name="communications")
    op.drop_table("communications")
    op.drop_index(op.f("ix_charge_lines_account_id"), table_name="charge_lines")
    op.drop_table("charge_lines")
    op.drop_index(op.f("ix_audit_events_at"), table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_account_id"), table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_table("channel_preferences")
    op.drop_index(op.f("ix_accounts_guarantor_id"), table_name="accounts")
    op.drop_table("accounts")
    op.drop_index(op.f("ix_policy_versions_name"), table_name="policy_versions")
    op.drop_table("policy_versions")
    op.drop_table("guarantors")
    for name in (
        "task_status",
        "task_kind",
        "communication_status",
        "deliverability",
        "channel",
        "account_status",
    ):
        op.execute(f"DROP TYPE IF EXISTS {name}")
