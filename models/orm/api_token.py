"""Bearer tokens: stored as a SHA-256 hash, each owned by a user or by an integration."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from models.orm.base import Base, Timestamped, new_id


class ApiRole(StrEnum):
    """The one-role-per-token vocabulary of migration 0003, kept for the 0006 migration and for
    test helpers; roles now come from the catalogue (``config/roles.yaml``) through users."""

    INTEGRATION = "integration"  # a billing system: balances, payments, adjustments
    STAFF = "staff"
    SUPERVISOR = "supervisor"
    BILLING_LEAD = "billing_lead"


class ApiToken(Timestamped, Base):
    """A named token. Only the hash is kept: the token itself is shown once, at creation.

    The token carries 256 random bits, so a plain SHA-256 (not a slow password hash) is the right
    tool: there is nothing to brute-force, and every request can be checked with one index lookup.
    A token with a user acts with that user's roles (while the user is active); one without is an
    integration's, which may only post intake.
    """

    __tablename__ = "api_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    revoked_at: Mapped[dt.datetime | None]
