"""Patients' protections: good-faith estimates and NSA-protected amounts per visit, patients apart
from guarantors with dates of birth, flags and tasks for staff, consent by purpose, channel
restrictions and confidential addresses (issue 18).

Revision ID: 0006_protections
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_protections"
down_revision: str | None = "0006_edges1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("guarantors", sa.Column("date_of_birth", sa.Date(), nullable=True))
    op.create_table(
        "patients",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("external_ref", sa.String(64), nullable=False),
        sa.Column("guarantor_id", sa.Uuid(), nullable=False),
        sa.Column("first_name", sa.String(100), nullable=False),
        sa.Column("last_name", sa.String(100), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["guarantor_id"], ["guarantors.id"], name=op.f("fk_patients_guarantor_id_guarantors")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patients")),
        sa.UniqueConstraint("external_ref", name=op.f("uq_patients_external_ref")),
    )
    op.create_index("ix_patients_guarantor_id", "patients", ["guarantor_id"])
    op.add_column("charge_lines", sa.Column("good_faith_estimate_cents", sa.Integer()))
    op.add_column(
        "charge_lines",
        sa.Column("nsa_protected_cents", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column("charge_lines", sa.Column("patient_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_charge_lines_patient_id_patients"), "charge_lines", "patients", ["patient_id"], ["id"]
    )
    op.create_index("ix_charge_lines_patient_id", "charge_lines", ["patient_id"])
    op.create_check_constraint(
        op.f("ck_charge_lines_nsa_protected_not_negative"), "charge_lines", "nsa_protected_cents >= 0"
    )
    op.create_table(
        "protection_flags",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("reference", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=True),
        sa.Column("due_on", sa.Date(), nullable=True),
        sa.Column("detail", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_protection_flags_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_protection_flags")),
        sa.UniqueConstraint(
            "account_id", "kind", "reference", name=op.f("uq_protection_flags_account_id")
        ),
    )
    op.create_index("ix_protection_flags_account_id", "protection_flags", ["account_id"])
    op.create_index("ix_protection_flags_status", "protection_flags", ["status"])
    op.create_table(
        "consents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("guarantor_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column(
            "given_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recorded_by", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["guarantor_id"], ["guarantors.id"], name=op.f("fk_consents_guarantor_id_guarantors")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
    )
    op.create_index("ix_consents_guarantor_id", "consents", ["guarantor_id"])
    op.create_table(
        "channel_restrictions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("guarantor_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recorded_by", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["guarantor_id"],
            ["guarantors.id"],
            name=op.f("fk_channel_restrictions_guarantor_id_guarantors"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_channel_restrictions_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_restrictions")),
    )
    op.create_index(
        "ix_channel_restrictions_guarantor_id", "channel_restrictions", ["guarantor_id"]
    )
    op.create_table(
        "confidential_addresses",
        sa.Column("guarantor_id", sa.Uuid(), nullable=False),
        sa.Column("address_line1", sa.String(200), nullable=False),
        sa.Column("address_line2", sa.String(200), nullable=True),
        sa.Column("city", sa.String(100), nullable=False),
        sa.Column("region", sa.String(2), nullable=False),
        sa.Column("postal_code", sa.String(10), nullable=False),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("recorded_by", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["guarantor_id"],
            ["guarantors.id"],
            name=op.f("fk_confidential_addresses_guarantor_id_guarantors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("guarantor_id", name=op.f("pk_confidential_addresses")),
    )


def downgrade() -> None:
    op.drop_table("confidential_addresses")
    op.drop_table("channel_restrictions")
    op.drop_table("consents")
    op.drop_table("protection_flags")
    op.drop_constraint("ck_charge_lines_nsa_protected_not_negative", "charge_lines")
    op.drop_index("ix_charge_lines_patient_id", "charge_lines")
    op.drop_constraint("fk_charge_lines_patient_id_patients", "charge_lines")
    op.drop_column("charge_lines", "patient_id")
    op.drop_column("charge_lines", "nsa_protected_cents")
    op.drop_column("charge_lines", "good_faith_estimate_cents")
    op.drop_index("ix_patients_guarantor_id", "patients")
    op.drop_table("patients")
    op.drop_column("guarantors", "date_of_birth")
