"""Claims of X12 835 remittances posted to the ledger, one row per payment trace and claim."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.orm.base import Base, Timestamped, new_id


class RemittanceClaim(Timestamped, Base):
    """What a payer paid and adjusted on one claim, and why the patient owes the rest.

    ``posting_key`` (a digest of trace number, payer, claim reference, status, payer claim number
    and occurrence) makes a re-imported file change nothing. ``patient_reasons`` keeps the
    patient-responsibility amounts by reason (deductible, co-insurance, co-payment, not covered)
    so that a statement can explain them; ``adjustments`` keeps every CAS amount by group.
    """

    __tablename__ = "remittance_claims"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    posting_key: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    trace_number: Mapped[str] = mapped_column(String(50))
    payer_id: Mapped[str] = mapped_column(String(80))
    claim_ref: Mapped[str] = mapped_column(String(50))
    claim_status: Mapped[str] = mapped_column(String(2))
    payer_claim_id: Mapped[str] = mapped_column(String(50))
    paid_on: Mapped[dt.date | None]
    service_date: Mapped[dt.date | None]
    charge_cents: Mapped[int] = mapped_column(BigInteger)
    paid_cents: Mapped[int] = mapped_column(BigInteger)
    patient_responsibility_cents: Mapped[int] = mapped_column(BigInteger)
    balance_change_cents: Mapped[int] = mapped_column(BigInteger)
    adjustments: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    patient_reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    posted_by: Mapped[str] = mapped_column(String(64))
