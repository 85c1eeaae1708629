"""Request and response bodies of the HTTP API (validated at the edge, documented in OpenAPI)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from models.actions import AdjustmentKind, ClosingPurpose, HoldReason
from models.common import REFERENCE_FIELD
from models.payloads import CallResult
from models.phones import to_e164
from models.protections import PhoneKind
from models.statement import ClaimStatus

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _printable(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("control characters are not allowed")
    return value


Text = Annotated[str, AfterValidator(_printable)]
MAX_CENTS = 10_000_000
"""$100,000: the ledger holds 32-bit cents per account."""
ACCOUNT_NUMBER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._#-]{0,63}$"
AccountNumber = Annotated[
    str, Path(pattern=ACCOUNT_NUMBER_PATTERN, description="the practice's account number")
]


class Strict(BaseModel):
    """A request body: no unknown fields; amounts, counts and flags are strict JSON types
    (``"100"``, ``100.0`` or ``true`` is not an amount, ``1`` or ``"yes"`` not a flag)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# -- intake -------------------------------------------------------------------------------------


class GuarantorIn(Strict):
    """The person responsible for paying. Kept in PostgreSQL only, never in a workflow."""

    id: Text = Field(min_length=1, max_length=64, description="the practice's guarantor id")
    first_name: Text = Field(min_length=1, max_length=100)
    last_name: Text = Field(min_length=1, max_length=100)
    email: Text | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: Annotated[Text | None, AfterValidator(to_e164)] = Field(
        default=None, pattern=r"^\+?[0-9 ().-]{7,20}$", description="normalised to E.164"
    )
    phone_kind: PhoneKind = Field(
        default=PhoneKind.UNKNOWN,
        description='mobile, home or work; "" when unknown (read as work under "no calls at work")',
    )
    sms_consent: bool = Field(default=False, strict=True)
    address_line1: Text | None = Field(default=None, max_length=200)
    address_line2: Text | None = Field(default=None, max_length=200)
    city: Text | None = Field(default=None, max_length=100)
    state: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    postal_code: str | None = Field(default=None, pattern=r"^\d{5}(-\d{4})?$")
    time_zone: Text = Field(default="", max_length=64)
    language: str = Field(default="en", pattern=r"^[a-z]{2}$")
    date_of_birth: dt.date | None = Field(
        default=None, description="a guarantor under 18 is refused: a minor cannot be responsible"
    )


class PatientIn(Strict):
    """The person who received care, when not the guarantor; messages still go to the guarantor."""

    id: Text = Field(min_length=1, max_length=64, description="the practice's patient id")
    first_name: Text = Field(min_length=1, max_length=100)
    last_name: Text = Field(min_length=1, max_length=100)
    date_of_birth: dt.date | None = None


class ChargeIn(Strict):
    """One visit: charges - insurance paid - insurance adjustment - patient paid."""

    reference: str = REFERENCE_FIELD
    service_date: dt.date
    description: Text = Field(min_length=1, max_length=200)
    charges_cents: int = Field(strict=True, ge=0, le=MAX_CENTS)
    insurance_paid_cents: int = Field(strict=True, default=0, ge=0, le=MAX_CENTS)
    insurance_adjustment_cents: int = Field(strict=True, default=0, ge=0, le=MAX_CENTS)
    patient_paid_cents: int = Field(strict=True, default=0, ge=0, le=MAX_CENTS)
    good_faith_estimate_cents: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=MAX_CENTS,
        description="No Surprises Act good-faith estimate; billed $400 or more above it is"
        " dispute-eligible",
    )
    nsa_protected_cents: int = Field(
        default=0,
        strict=True,
        ge=0,
        le=MAX_CENTS,
        description="a balance bill the No Surprises Act protects the patient from: not owed",
    )
    payer: Text | None = Field(default=None, min_length=1, max_length=100, description="insurer")
    claim_status: ClaimStatus | None = None
    deductible_cents: int = Field(strict=True, default=0, ge=0, le=MAX_CENTS)
    coinsurance_cents: int = Field(strict=True, default=0, ge=0, le=MAX_CENTS)
    copay_cents: int = Field(strict=True, default=0, ge=0, le=MAX_CENTS)
    not_covered_cents: int = Field(strict=True, default=0, ge=0, le=MAX_CENTS)
    patient: PatientIn | None = None


class AccountIn(Strict):
    """Create or update an account's balance and charge lines; idempotent by ``reference``."""

    reference: str = REFERENCE_FIELD
    guarantor: GuarantorIn
    charges: list[ChargeIn] = Field(min_length=1, max_length=100)
    policy: str | None = Field(
        default=None, pattern=r"^[a-z0-9][a-z0-9-]{0,63}$", description="a policy's name"
    )


class AccountOut(BaseModel):
    account_number: str
    new_charges: int
    balance_cents: int
    queued: bool = Field(
        default=False,
        description="true (HTTP 202) when the ledger holds the fact and its workflow signal waits "
        "in the outbox for Temporal",
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="a closed account the charges disagree with, a pre-petition charge, or a "
        "charge that started a balance of its own: for a person to resolve",
    )


class PaymentIn(Strict):
    reference: str = REFERENCE_FIELD
    amount_cents: int = Field(strict=True, gt=0, le=MAX_CENTS)
    received_at: dt.datetime | None = None
    method: str = Field(default="other", pattern=r"^[a-z_-]{1,32}$")


class PaymentOut(BaseModel):
    reference: str
    new: bool
    balance_cents: int
    credit_cents: int = Field(default=0, description="owed to the patient (balance below zero)")
    queued: bool = Field(
        default=False,
        description="true (HTTP 202) when the ledger holds the fact and its workflow signal waits "
        "in the outbox for Temporal",
    )


class AdjustmentIn(Strict):
    """Positive raises what the patient owes, negative lowers it."""

    reference: str = REFERENCE_FIELD
    kind: AdjustmentKind
    amount_cents: int = Field(strict=True, ge=-MAX_CENTS, le=MAX_CENTS)


class AdjustmentOut(BaseModel):
    reference: str
    balance_cents: int
    queued: bool = Field(
        default=False,
        description="true (HTTP 202) when the ledger holds the fact and its workflow signal waits "
        "in the outbox for Temporal",
    )


# -- staff --------------------------------------------------------------------------------------


class HoldIn(Strict):
    reason: HoldReason
    until: dt.datetime | None = Field(default=None, description="the hold ends by itself then")
    note: Text = Field(default="", max_length=300)


class HardshipIn(Strict):
    discount_percent: int = Field(strict=True, ge=1, le=100)
    program: str = Field(default="financial-assistance", pattern=r"^[a-z0-9-]{1,64}$")


class InstallmentIn(Strict):
    due_on: dt.date
    amount_cents: int = Field(strict=True, gt=0, le=MAX_CENTS)


class PlanIn(Strict):
    installments: list[InstallmentIn] = Field(min_length=1, max_length=120)
    monthly_income_cents: int | None = Field(
        default=None,
        strict=True,
        gt=0,
        le=MAX_CENTS,
        description="the household's monthly income; needed where a state caps plans at a share"
        " of it (Colorado, Maryland)",
    )


class SettlementIn(Strict):
    amount_cents: int = Field(strict=True, gt=0, le=MAX_CENTS)
    days: int = Field(strict=True, default=14, ge=1, le=90, description="the offer is valid for")


class WriteOffIn(Strict):
    reason: Text = Field(min_length=1, max_length=200)
    amount_cents: int | None = Field(
        strict=True, default=None, gt=0, le=MAX_CENTS, description="default the whole balance"
    )


class ReferralIn(Strict):
    note: Text = Field(default="", max_length=300)


class DecisionIn(Strict):
    reason: Text = Field(default="", max_length=500)
    purpose: ClosingPurpose | None = Field(
        default=None,
        description="a closing notice only (Reg F 1006.6(c)): what the one letter says",
    )


class DenyIn(Strict):
    reason: Text = Field(min_length=1, max_length=500)


class CallOutcomeIn(Strict):
    result: CallResult
    promised_date: dt.date | None = None
    promised_cents: int | None = Field(strict=True, default=None, gt=0, le=MAX_CENTS)


class ActionOut(BaseModel):
    """What the workflow answered: a message, a task id, or the balance left."""

    account_number: str
    result: str


class TaskOut(BaseModel):
    task_id: str
    account_number: str
    kind: str
    title: str
    approvers: list[str]
    due_at: dt.datetime | None
    status: str
    requested_by: str


class Problem(BaseModel):
    """An error: for a refused staff action, ``kind`` is the workflow's rule."""

    detail: str
    kind: str = ""
