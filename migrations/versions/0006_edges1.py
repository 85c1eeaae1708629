"""Reply tasks; stored phone numbers in E.164.

A patient's reply nobody can classify opens a staff task of its own kind (``reply``). Phone
numbers are normalised to E.164 at intake from now on; the numbers already stored are rewritten
the same way where they are valid, and left exactly as they are where they are not (nothing
stored is lost; staff correct those).

Revision ID: 0006_edges1
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import phonenumbers
import sqlalchemy as sa
from alembic import op

revision: str = "0006_edges1"
down_revision: str | None = "0006_edges2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _e164(raw: str) -> str | None:
    try:
        parsed = phonenumbers.parse(raw, "US")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def upgrade() -> None:
    op.execute("ALTER TYPE task_kind ADD VALUE IF NOT EXISTS 'reply'")
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, phone FROM guarantors WHERE phone IS NOT NULL")).all()
    for ident, phone in rows:
        normal = _e164(phone)
        if normal is not None and normal != phone:
            bind.execute(
                sa.text("UPDATE guarantors SET phone = :phone WHERE id = :id"),
                {"phone": normal, "id": ident},
            )


def downgrade() -> None:
    # PostgreSQL cannot drop an enum value; an unused 'reply' label is harmless. E.164 numbers
    # are valid input everywhere, so they stay.
    pass
