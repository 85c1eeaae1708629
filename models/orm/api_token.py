"""Bearer tokens of the HTTP API: stored as a SHA-256 hash, each with one role."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from sqlalchemy import Enum, String
from sqlalchemy.orm import Mapped, mapped_column

from models.orm.base import Base, Timestamped, new_id


class ApiRole(StrEnum):
    """What a token may do; see ``api.auth.PERMISSIONS``."""

    INTEGRATION = "integration"  # a billing system: balances, payments, adjustments
    STAFF = "staff"  # status, worklist, hold, resume, plan, settle, request write-off/referral
    SUPERVISOR = "supervisor"  # staff, and approve or deny tasks
    BILLING_LEAD = "billing_lead"  # everything


class ApiToken(Timestamped, Base):
    """A named API token. Only the hash is kept: the token itself is shown once, at creation.

    The token carries 256 random bits, so a plain SHA-256 (not a slow password hash) is the right
    tool: there is nothing to brute-force, and every request can be checked with one index lookup.
    """

    __tablename__ = "api_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[ApiRole] = mapped_column(
        Enum(ApiRole, name="api_role", values_callable=lambda e: [m.value for m in e])
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    revoked_at: Mapped[dt.datetime | None]
