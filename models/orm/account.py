"""Accounts, their charge lines and payments. Money is integer cents."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, Enum, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.actions import AdjustmentKind
from models.orm.base import Base, Timestamped, new_id
from models.orm.guarantor import Guarantor
from models.protections import nsa_dispute_eligible


class AccountStatus(StrEnum):
    OPEN = "open"
    PAID = "paid"
    CLOSED = "closed"
    SETTLED = "settled"
    WRITTEN_OFF = "written_off"
    PLACED = "placed"  # with a collection agency
    STOPPED = "stopped"  # bankruptcy: automatic stay
    ESTATE = "estate"  # the guarantor died: estate queue
    RECALLED = "recalled"  # taken back from the agency


CLOSED_FOR_IMPORT = frozenset(
    {
        AccountStatus.PLACED,
        AccountStatus.WRITTEN_OFF,
        AccountStatus.SETTLED,
        AccountStatus.STOPPED,
        AccountStatus.ESTATE,
        AccountStatus.RECALLED,
    }
)
"""Balances an import never reopens: new lines start a balance of their own
(``services.lifecycle``)."""


class Account(Timestamped, Base):
    """A guarantor's account at the practice; one escalation workflow follows its balance."""

    __tablename__ = "accounts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_number: Mapped[str] = mapped_column(String(64), unique=True)
    guarantor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("guarantors.id"), index=True)
    policy_name: Mapped[str] = mapped_column(String(64))
    status: Mapped[AccountStatus] = mapped_column(
        Enum(AccountStatus, name="account_status", values_callable=lambda e: [m.value for m in e]),
        default=AccountStatus.OPEN,
    )
    balance_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    opened_at: Mapped[dt.datetime]
    first_statement_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None]
    placed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    continues_account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("accounts.id"), index=True, default=None
    )
    """The closed account this balance began after (a charge after placement or a filing)."""

    guarantor: Mapped[Guarantor] = relationship(lazy="raise")
    charges: Mapped[list[ChargeLine]] = relationship(
        back_populates="account", lazy="raise", order_by="ChargeLine.service_date"
    )

    @property
    def workflow_id(self) -> str:
        # Opaque: an account number is an identifier under HIPAA and must not name a workflow.
        return f"balance-{self.id}"


class ChargeLine(Timestamped, Base):
    """One visit on the statement: charges - insurance paid - adjustment - patient paid."""

    __tablename__ = "charge_lines"
    __table_args__ = (
        UniqueConstraint("account_id", "external_ref"),
        CheckConstraint("charges_cents >= 0", name="charges_not_negative"),
        CheckConstraint("nsa_protected_cents >= 0", name="nsa_protected_not_negative"),
        CheckConstraint("deductible_cents >= 0", name="deductible_not_negative"),
        CheckConstraint("coinsurance_cents >= 0", name="coinsurance_not_negative"),
        CheckConstraint("copay_cents >= 0", name="copay_not_negative"),
        CheckConstraint("not_covered_cents >= 0", name="not_covered_not_negative"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    external_ref: Mapped[str] = mapped_column(String(64))
    service_date: Mapped[dt.date]
    description: Mapped[str] = mapped_column(String(200))
    charges_cents: Mapped[int] = mapped_column(BigInteger)
    insurance_paid_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    insurance_adjustment_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    patient_paid_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    # No Surprises Act: the good-faith estimate given before the visit (uninsured or self-pay);
    # a bill $400 or more above it may be disputed (45 CFR 149.610, 149.620).
    good_faith_estimate_cents: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # No Surprises Act: a balance bill the law protects the patient from (45 CFR 149.410-.440);
    # never part of what the patient owes.
    nsa_protected_cents: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    patient_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("patients.id"), index=True, default=None
    )
    # The insurer's remittance, as the practice's system has it: who paid, the claim's status,
    # and why the rest is the patient's. The statement explains each visit from these.
    payer: Mapped[str | None] = mapped_column(String(100), default=None)
    claim_status: Mapped[str | None] = mapped_column(String(16), default=None)
    deductible_cents: Mapped[int] = mapped_column(default=0, server_default="0")
    coinsurance_cents: Mapped[int] = mapped_column(default=0, server_default="0")
    copay_cents: Mapped[int] = mapped_column(default=0, server_default="0")
    not_covered_cents: Mapped[int] = mapped_column(default=0, server_default="0")

    account: Mapped[Account] = relationship(back_populates="charges", lazy="raise")

    @property
    def balance_cents(self) -> int:
        return (
            self.charges_cents
            - self.insurance_paid_cents
            - self.insurance_adjustment_cents
            - self.patient_paid_cents
            - self.nsa_protected_cents
        )

    @property
    def nsa_dispute_eligible(self) -> bool:
        """Billed $400 or more above the good-faith estimate (No Surprises Act, 45 CFR 149.620)."""
        return nsa_dispute_eligible(self.charges_cents, self.good_faith_estimate_cents)


class Payment(Timestamped, Base):
    __tablename__ = "payments"
    __table_args__ = (CheckConstraint("amount_cents > 0", name="amount_positive"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[dt.datetime]
    method: Mapped[str] = mapped_column(String(32), default="other")
    posted_by: Mapped[str] = mapped_column(String(64), default="system")


class Adjustment(Timestamped, Base):
    """A change of the patient's responsibility besides charges and payments; once per reference."""

    __tablename__ = "adjustments"
    __table_args__ = (CheckConstraint("amount_cents <> 0", name="amount_not_zero"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[AdjustmentKind] = mapped_column(
        Enum(AdjustmentKind, name="adjustment_kind", values_callable=lambda e: [m.value for m in e])
    )
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    posted_by: Mapped[str] = mapped_column(String(64), default="system")
