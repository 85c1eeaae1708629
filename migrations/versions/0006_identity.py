"""Users with roles of the catalogue; API tokens belong to a user or to an integration.

Each existing token with a staff role (staff, supervisor, billing_lead) becomes a user of the same
name holding that role, and the token is that user's; an ``integration`` token keeps no user.

Revision ID: 0006_identity
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_identity"
down_revision: str | None = "0006_frontdoor"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column(
            "roles",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    op.add_column("api_tokens", sa.Column("user_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_api_tokens_user_id_users"), "api_tokens", "users", ["user_id"], ["id"]
    )
    op.create_index(op.f("ix_api_tokens_user_id"), "api_tokens", ["user_id"])
    # A staff token becomes its own user, with the token's one role.
    op.execute(
        """
        INSERT INTO users (id, name, roles)
        SELECT gen_random_uuid(), t.name, jsonb_build_array(t.role::text)
        FROM api_tokens t
        WHERE t.role <> 'integration'
        ON CONFLICT (name) DO NOTHING
        """
    )
    op.execute(
        """
        UPDATE api_tokens t SET user_id = u.id
        FROM users u
        WHERE u.name = t.name AND t.role <> 'integration'
        """
    )
    op.drop_column("api_tokens", "role")
    op.execute("DROP TYPE IF EXISTS api_role")


def downgrade() -> None:
    api_role = postgresql.ENUM(
        "integration", "staff", "supervisor", "billing_lead", name="api_role", create_type=True
    )
    api_role.create(op.get_bind(), checkfirst=True)
    op.add_column(
        "api_tokens",
        sa.Column(
            "role",
            postgresql.ENUM(name="api_role", create_type=False),
            nullable=True,
        ),
    )
    # The closest of the old roles: everything, approve, or act; integration without a user.
    op.execute(
        """
        UPDATE api_tokens t SET role = CASE
            WHEN t.user_id IS NULL THEN 'integration'
            WHEN u.roles ? 'billing_lead' THEN 'billing_lead'
            WHEN u.roles ?| array['supervisor','manager','director','office-manager','dentist',
                                  'financial-counselor','revenue-cycle-director'] THEN 'supervisor'
            ELSE 'staff' END::api_role
        FROM api_tokens t2 LEFT JOIN users u ON u.id = t2.user_id
        WHERE t2.id = t.id
        """
    )
    op.alter_column("api_tokens", "role", nullable=False)
    op.drop_index(op.f("ix_api_tokens_user_id"), table_name="api_tokens")
    op.drop_constraint(op.f("fk_api_tokens_user_id_users"), "api_tokens", type_="foreignkey")
    op.drop_column("api_tokens", "user_id")
    op.drop_table("users")
