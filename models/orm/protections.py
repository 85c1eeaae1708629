"""Patients' protections in PostgreSQL: patients apart from guarantors, flags and tasks for staff,
consent by purpose, channel restrictions and confidential addresses (issue 18).

Kept out of Temporal: names, birth dates and addresses are protected health information.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.orm.base import Base, Timestamped, new_id
from models.protections import RestrictionKind as RestrictionKind  # the pure rules own it


class Patient(Timestamped, Base):
    """The person who received care; the guarantor (who pays and is written to) may differ."""

    __tablename__ = "patients"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    external_ref: Mapped[str] = mapped_column(String(64), unique=True)
    guarantor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("guarantors.id"), index=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    date_of_birth: Mapped[dt.date | None] = mapped_column(default=None)


class FlagKind(StrEnum):
    """Something a person must see or do about an account."""

    NSA_DISPUTE_ELIGIBLE = "nsa_dispute_eligible"  # billed >= $400 above the good-faith estimate
    TIME_BARRED = "time_barred"  # the statute of limitations has run
    REACHED_MAJORITY = "reached_majority"  # a patient turned 18: review who is responsible
    REFUND_DUE = "refund_due"  # paid above what is owed after financial assistance (501(r))
    AGENCY_RECALL = "agency_recall"  # recall a placed account (FA approved)
    FA_INFO_MISSING = "fa_info_missing"  # an incomplete FA application: notice sent, deadline


class FlagStatus(StrEnum):
    OPEN = "open"
    DONE = "done"


class ProtectionFlag(Base):
    """A flag or task for staff, once per account, kind and reference."""

    __tablename__ = "protection_flags"
    __table_args__ = (UniqueConstraint("account_id", "kind", "reference"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    reference: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(16), default=FlagStatus.OPEN.value, index=True)
    amount_cents: Mapped[int | None] = mapped_column(BigInteger, default=None)
    due_on: Mapped[dt.date | None] = mapped_column(default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    resolved_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class ConsentPurpose(StrEnum):
    """What a consent to be texted or called covers (TCPA consent is given for a purpose)."""

    BILLING = "billing"
    APPOINTMENT_REMINDERS = "appointment_reminders"
    TREATMENT = "treatment"
    MARKETING = "marketing"


class Consent(Base):
    """A consent for one channel and purpose, with where it came from; revoked, never deleted."""

    __tablename__ = "consents"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    guarantor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("guarantors.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(200))
    given_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    recorded_by: Mapped[str] = mapped_column(String(64), default="system")


class ChannelRestriction(Base):
    """A restriction for a guarantor (all accounts) or one account; lifted, never deleted."""

    __tablename__ = "channel_restrictions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    guarantor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("guarantors.id"), index=True)
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id"), default=None)
    kind: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    lifted_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    recorded_by: Mapped[str] = mapped_column(String(64), default="system")


class ConfidentialAddress(Base):
    """Confidential communications (HIPAA 45 CFR 164.522(b)): all mail to this address, and no
    other channel, unless the request names one."""

    __tablename__ = "confidential_addresses"

    guarantor_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("guarantors.id", ondelete="CASCADE"), primary_key=True
    )
    address_line1: Mapped[str] = mapped_column(String(200))
    address_line2: Mapped[str | None] = mapped_column(String(200), default=None)
    city: Mapped[str] = mapped_column(String(100))
    region: Mapped[str] = mapped_column(String(2))
    postal_code: Mapped[str] = mapped_column(String(10))
    email: Mapped[str | None] = mapped_column(String(254), default=None)
    phone: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    recorded_by: Mapped[str] = mapped_column(String(64), default="system")
