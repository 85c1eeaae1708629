"""Privacy requests made real (issue 18): the kind of a guarantor's phone number (a work number
under "no calls at work", Reg F 12 CFR 1006.6(b)(3)) and a channel's restriction kept apart from
its opt-out, so that lifting a restriction never clears a STOP; a staff task kind for a message
refused at send time for its wording.

Revision ID: 0007_protect
Revises: 0007_imports
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_protect"
down_revision: str | None = "0007_imports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A message refused at the moment of sending for its wording: a staff task says why.
    op.execute("ALTER TYPE task_kind ADD VALUE IF NOT EXISTS 'content'")
    op.add_column(
        "guarantors", sa.Column("phone_kind", sa.String(8), nullable=False, server_default="")
    )
    op.add_column(
        "channel_preferences",
        sa.Column("restricted_at", sa.DateTime(timezone=True), nullable=True),
    )
    # Restrictions in force before this revision wrote opted_out_at. They are kept as opt-outs
    # (the conservative reading: nothing is sent that was not before) and marked restricted too;
    # lifting one then clears only the restriction, and fresh consent restores the channel.
    op.execute(
        """
        UPDATE channel_preferences p SET restricted_at = p.opted_out_at
        WHERE p.opted_out_at IS NOT NULL AND EXISTS (
            SELECT 1 FROM channel_restrictions r
            WHERE r.guarantor_id = p.guarantor_id AND r.lifted_at IS NULL)
        """
    )


def downgrade() -> None:
    op.drop_column("channel_preferences", "restricted_at")
    op.drop_column("guarantors", "phone_kind")
