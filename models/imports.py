"""CSV rows as a practice-management export has them, validated with row number and field.

One row per charge line (visit); several rows may share an account. Amounts are dollars.

Column names are matched loosely: case, spaces and punctuation are ignored ("Acct #" is
``acct``), and the aliases below, common in practice-management exports, name the same fields.
A canonical column wins over an alias when a file has both. "Patient Balance" (or "Balance")
stands for ``charges`` only when the file has no charges column: the patient's balance is then
taken as the charge line's whole amount. Dates may be ISO (2026-10-01) or US (10/01/2026).

============================  ==========================================================
field                         also accepted
============================  ==========================================================
account_number                Acct #, Acct No, Account, Account #, Account No, Account ID
guarantor_id                  Guarantor, Guarantor ID, Guar ID, Guarantor #, Resp Party ID
first_name / last_name        Guarantor First Name / Guarantor Last Name, First / Last
email                         E-mail, Email Address, Guarantor Email
phone                         Phone Number, Mobile, Cell, Cell Phone, Mobile Phone
phone_kind                    Phone Type, Phone Kind (mobile, home, work; blank: unknown)
sms_consent                   Text Consent, SMS Opt In, OK to Text
address_line1 / 2             Address, Address 1, Street / Address 2
state / postal_code           ST / Zip, Zip Code, Postal
time_zone                     Timezone, TZ
charge_ref                    Charge ID, Visit ID, Encounter, Encounter ID, Invoice #
service_date                  DOS, Date of Service, Svc Date
description                   Procedure, Service, Description of Service
charges                       Charge, Charge Amount, Total Charges, Billed
insurance_paid                Ins Paid, Insurance Payment(s)
insurance_adjustment          Ins Adj, Contractual Adjustment, Adjustment(s)
patient_paid                  Pt Paid, Patient Payment(s)
guarantor_dob                 Guarantor DOB, Guarantor Date of Birth, Guar DOB
patient_id                    Patient #, Pt ID, MRN (when the patient is not the guarantor)
patient_first_name / _last    Patient First Name / Patient Last Name, Pt First / Pt Last
patient_dob                   Patient DOB, Patient Date of Birth, Pt DOB, DOB
good_faith_estimate           GFE, GFE Amount, Good Faith Estimate Amount, Estimate
nsa_protected                 NSA Protected, NSA Protected Amount (a balance bill not owed)
payer                         Insurance, Insurer, Primary Insurance, Payer Name, Carrier
claim_status                  Claim Status (paid, partly_paid, denied, pending, not_filed)
deductible / coinsurance      Deductible, Ded / Co-insurance, Coins (the patient's share, why)
copay / not_covered           Co-pay, Copayment / Not Covered, Non-covered, PR-96
(payments) reference          Payment ID, Payment Ref, Receipt #, Check #, Transaction ID
(payments) amount             Payment Amount, Amount Paid, Amt
(payments) received_on        Payment Date, Date Received, Deposit Date, Post Date
(payments) method             Payment Method, Payment Type, Pay Type
============================  ==========================================================
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Self, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from models.common import REFERENCE_FIELD
from models.import_files import read_table
from models.money import DollarsAsCents, format_cents
from models.phones import to_e164
from models.protections import AGE_OF_MAJORITY, PhoneKind, age_on, parse_phone_kind
from models.statement import ClaimStatus


def _blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def _zone(name: str) -> str:
    if not name.strip():
        return ""  # unknown: the address's and the phone's zones, else the policy's default
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc
    return name


def _yes_no(value: object) -> object:
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("y", "yes", "true", "1"):
            return True
        if v in ("", "n", "no", "false", "0"):
            return False
    return value


def _us_date(value: object) -> object:
    """Accept 10/01/2026 (a US export's date) besides ISO 2026-10-01."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d{1,2})/(\d{1,2})/(\d{4})\s*", value)
        if m:
            month, day, year = (int(g) for g in m.groups())
            try:
                return dt.date(year, month, day)
            except ValueError as exc:
                raise ValueError(f"not a date: {value.strip()!r}") from exc
    return value


def _adult(birth: dt.date | None) -> dt.date | None:
    if birth is None:
        return None
    today = dt.date.today()
    if birth > today:
        raise ValueError("a date of birth in the future")
    if age_on(birth, today) < AGE_OF_MAJORITY:
        raise ValueError(
            f"the guarantor is under {AGE_OF_MAJORITY}; a minor cannot be responsible for the"
            " bill: name a parent or guardian as guarantor and the minor as patient"
        )
    return birth


MAX_AMOUNT_CENTS = 100_000_000_000
"""The largest amount one cell may hold, $1,000,000,000.00: far above any medical balance, far
below what 64-bit cents (the ledger's columns) and a JSON number (the API) can carry. Checked
while validating, so a dry run refuses exactly what the real import would."""


def _within_limit(cents: int) -> int:
    if abs(cents) > MAX_AMOUNT_CENTS:
        raise ValueError(f"expected an amount of at most {format_cents(MAX_AMOUNT_CENTS)}")
    return cents


def _not_future(day: dt.date) -> dt.date:
    if day > dt.date.today():
        raise ValueError("expected the date of a visit that has happened, not a future date")
    return day


def _usd(value: object) -> object:
    if value is None or (
        isinstance(value, str) and value.strip().upper() in ("", "USD", "US$", "$")
    ):
        return "USD"
    raise ValueError(
        "expected USD: amounts are US dollars; convert the file's amounts or leave this out"
    )


def _policy_name(value: str | None) -> str | None:
    if value is None:
        return None
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", value):
        # Never echo the value: it may be a path, and no file's content or name is repeated.
        raise ValueError(
            "expected the name of a policy in the configured policy folder (such as"
            " 'physician'), not a file path"
        )
    return value


Optional = Annotated[str | None, BeforeValidator(_blank_to_none)]
ExportDate = Annotated[dt.date, BeforeValidator(_us_date)]
Amount = Annotated[DollarsAsCents, AfterValidator(_within_limit)]
Money0 = Annotated[Amount, BeforeValidator(lambda v: "0" if v in (None, "") else v)]


class BalanceRow(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    account_number: str = Field(min_length=1, max_length=64)
    guarantor_id: str = Field(min_length=1, max_length=64)
    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(min_length=1, max_length=100)
    email: Optional = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: Annotated[Optional, AfterValidator(to_e164)] = Field(
        default=None, pattern=r"^\+?[0-9 ().-]{7,20}$"
    )
    phone_kind: Annotated[PhoneKind, BeforeValidator(parse_phone_kind)] = PhoneKind.UNKNOWN
    sms_consent: Annotated[bool, BeforeValidator(_yes_no)] = False
    address_line1: Optional = None
    address_line2: Optional = None
    city: Optional = None
    state: Optional = Field(default=None, pattern=r"^[A-Z]{2}$")
    postal_code: Optional = Field(default=None, pattern=r"^\d{5}(-\d{4})?$")
    time_zone: Annotated[str, AfterValidator(_zone)] = ""
    language: str = Field(default="en", pattern=r"^[a-z]{2}$")
    charge_ref: str = REFERENCE_FIELD
    service_date: Annotated[ExportDate, AfterValidator(_not_future)]
    description: str = Field(min_length=1, max_length=200)
    charges: Amount = Field(ge=0)
    insurance_paid: Money0 = 0
    insurance_adjustment: Money0 = 0
    patient_paid: Money0 = 0
    policy: Annotated[Optional, AfterValidator(_policy_name)] = None
    currency: Annotated[str, BeforeValidator(_usd)] = "USD"
    guarantor_dob: Annotated[
        ExportDate | None, BeforeValidator(_blank_to_none), AfterValidator(_adult)
    ] = None
    patient_id: Optional = Field(default=None, max_length=64)
    patient_first_name: Optional = Field(default=None, max_length=100)
    patient_last_name: Optional = Field(default=None, max_length=100)
    patient_dob: Annotated[ExportDate | None, BeforeValidator(_blank_to_none)] = None
    good_faith_estimate: Annotated[
        Annotated[Amount, Field(ge=0)] | None, BeforeValidator(_blank_to_none)
    ] = None
    nsa_protected: Money0 = Field(default=0, ge=0)
    payer: Optional = Field(default=None, max_length=100)
    claim_status: Annotated[
        ClaimStatus | None, BeforeValidator(ClaimStatus.parse), BeforeValidator(_blank_to_none)
    ] = None
    deductible: Money0 = Field(default=0, ge=0)
    coinsurance: Money0 = Field(default=0, ge=0)
    copay: Money0 = Field(default=0, ge=0)
    not_covered: Money0 = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _protections_consistent(self) -> Self:
        owed = self.charges - self.insurance_paid - self.insurance_adjustment - self.patient_paid
        if self.nsa_protected > max(owed, 0):
            raise ValueError(
                "nsa_protected: more than the visit's balance (charges - insurance paid -"
                " adjustment - patient paid)"
            )
        share = self.deductible + self.coinsurance + self.copay + self.not_covered
        if share > max(self.charges - self.insurance_paid - self.insurance_adjustment, 0):
            raise ValueError(
                "deductible: deductible + coinsurance + copay + not_covered is more than what"
                " insurance left to the patient (charges - insurance paid - adjustment)"
            )
        named = (self.patient_first_name, self.patient_last_name, self.patient_dob)
        if any(v is not None for v in named) and self.patient_id is None:
            raise ValueError("patient_id: needed when patient name or date of birth is given")
        if self.patient_id is not None and (
            self.patient_first_name is None or self.patient_last_name is None
        ):
            raise ValueError("patient_first_name: a patient needs a first and a last name")
        return self

    @property
    def balance_cents(self) -> int:
        """What the patient owes for the visit; an NSA-protected balance bill is not owed."""
        return (
            self.charges
            - self.insurance_paid
            - self.insurance_adjustment
            - self.patient_paid
            - self.nsa_protected
        )


class PaymentRow(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    account_number: str = Field(min_length=1, max_length=64)
    reference: str = REFERENCE_FIELD
    amount: Amount = Field(gt=0)
    received_on: Annotated[ExportDate | None, BeforeValidator(_blank_to_none)] = None
    method: str = Field(default="other", max_length=32)


@dataclass(frozen=True)
class RowError:
    row: int  # the line in the file; the header is line 1
    field: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.field}: {self.message}"


class CsvImportError(Exception):
    def __init__(self, errors: list[RowError]) -> None:
        super().__init__(f"{len(errors)} bad row(s):\n" + "\n".join(str(e) for e in errors))
        self.errors = errors


RowT = TypeVar("RowT", bound=BaseModel)

_COMMON_ALIASES: dict[str, tuple[str, ...]] = {
    "account_number": (
        "acct",
        "acct_no",
        "acct_num",
        "account",
        "account_no",
        "account_num",
        "account_id",
        "account_number",
    ),
}
BALANCE_ALIASES: dict[str, tuple[str, ...]] = {
    **_COMMON_ALIASES,
    "guarantor_id": (
        "guarantor",
        "guarantor_no",
        "guar_id",
        "guar_no",
        "resp_party_id",
        "responsible_party_id",
    ),
    "first_name": ("guarantor_first_name", "guar_first_name", "first", "fname"),
    "last_name": ("guarantor_last_name", "guar_last_name", "last", "lname"),
    "email": ("e_mail", "email_address", "guarantor_email"),
    "phone": ("phone_number", "mobile", "cell", "cell_phone", "mobile_phone", "guarantor_phone"),
    "phone_kind": ("phone_type", "guarantor_phone_type", "phone_kind"),
    "sms_consent": ("text_consent", "sms_opt_in", "ok_to_text"),
    "address_line1": ("address", "address_1", "address1", "street", "addr1"),
    "address_line2": ("address_2", "address2", "addr2"),
    "state": ("st",),
    "postal_code": ("zip", "zip_code", "zipcode", "postal"),
    "time_zone": ("timezone", "tz"),
    "charge_ref": ("charge_id", "visit_id", "encounter", "encounter_id", "invoice", "invoice_no"),
    "service_date": ("dos", "date_of_service", "svc_date", "service_dt"),
    "description": ("procedure", "service", "description_of_service"),
    "charges": (
        "charge",
        "charge_amount",
        "total_charges",
        "billed",
        "patient_balance",
        "pt_balance",
        "balance",
    ),
    "insurance_paid": ("ins_paid", "insurance_payment", "insurance_payments"),
    "currency": ("curr", "ccy", "currency_code"),
    "insurance_adjustment": ("ins_adj", "contractual_adjustment", "adjustment", "adjustments"),
    "patient_paid": ("pt_paid", "patient_payment", "patient_payments"),
    "guarantor_dob": ("guarantor_date_of_birth", "guarantor_birth_date", "guar_dob"),
    "patient_id": ("patient", "patient_no", "patient_number", "pt_id", "mrn"),
    "patient_first_name": ("pt_first_name", "pt_first", "patient_first"),
    "patient_last_name": ("pt_last_name", "pt_last", "patient_last"),
    "patient_dob": ("patient_date_of_birth", "pt_dob", "dob", "date_of_birth", "birth_date"),
    "good_faith_estimate": ("gfe", "gfe_amount", "good_faith_estimate_amount", "estimate"),
    "nsa_protected": ("nsa_protected_amount", "nsa_protected_balance"),
    "payer": ("insurance", "insurer", "primary_insurance", "payer_name", "carrier"),
    "claim_status": ("status_of_claim",),
    "deductible": ("ded", "deductible_amount"),
    "coinsurance": ("co_insurance", "coins", "coinsurance_amount"),
    "copay": ("co_pay", "copayment", "copay_amount"),
    "not_covered": ("non_covered", "noncovered", "not_covered_amount", "pr_96"),
}
PAYMENT_ALIASES: dict[str, tuple[str, ...]] = {
    **_COMMON_ALIASES,
    "reference": (
        "payment_id",
        "payment_ref",
        "payment_reference",
        "receipt",
        "receipt_no",
        "check",
        "check_no",
        "transaction_id",
    ),
    "amount": ("payment_amount", "amount_paid", "amt", "paid_amount"),
    "received_on": ("payment_date", "date_received", "received", "deposit_date", "post_date"),
    "method": ("payment_method", "payment_type", "pay_type"),
}


def normalise_column(name: str) -> str:
    """``"Acct #"`` -> ``acct``; ``"Date of Service"`` -> ``date_of_service``."""
    return "_".join(re.findall(r"[a-z0-9]+", name.lower()))


def map_columns(header: list[str], model: type[BaseModel]) -> dict[str, str]:
    """The file's column for each model field it has: the canonical name first, else an alias."""
    aliases = PAYMENT_ALIASES if model is PaymentRow else BALANCE_ALIASES
    by_norm: dict[str, str] = {}
    for column in header:
        by_norm.setdefault(normalise_column(column), column)
    mapping: dict[str, str] = {}
    for name in model.model_fields:
        if name in by_norm:
            mapping[name] = by_norm[name]
            continue
        for alias in aliases.get(name, ()):
            if alias in by_norm and by_norm[alias] not in mapping.values():
                mapping[name] = by_norm[alias]
                break
    return mapping


def read_records(
    text: str | Path | bytes,
) -> tuple[list[str], list[tuple[int, dict[str, str]]], list[RowError]]:
    """The header, each record with its line number (the header is line 1), and the problems.

    Any encoding, delimiter and BOM a spreadsheet writes is read (see ``models/import_files``);
    a row with a control character or too many values is a problem of that row.
    """
    table = read_table(text)
    errors = [RowError(e.row, e.column, e.message) for e in table.errors]
    return table.header, table.records, errors


def parse_rows(
    text: str | Path | bytes, model: type[RowT], required: Iterable[str] = ()
) -> tuple[list[tuple[int, RowT]], list[RowError]]:
    """Validate every row; return the good ones with their line numbers, and all the errors.

    Columns are matched by name or by a practice-management export's alias (see the module's
    table); an error names the field, and the file's column when it was an alias.
    """
    header, records, errors = read_records(text)
    if any(e.row == 1 for e in errors):
        return [], errors
    mapping = map_columns(header, model)
    shown = {f: f if c == f else f"{c} ({f})" for f, c in mapping.items()}
    missing = [
        name
        for name, info in model.model_fields.items()
        if (info.is_required() or name in required) and name not in mapping
    ]
    if missing:
        return [], [RowError(1, name, "missing column") for name in missing]
    bad = {e.row for e in errors}
    rows: list[tuple[int, RowT]] = []
    for line, record in records:
        if line in bad:
            continue
        data = {name: record[column] for name, column in mapping.items()}
        try:
            rows.append((line, model.model_validate(data)))
        except ValidationError as exc:
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"]) or "(row)"
                message = err["msg"].removeprefix("Value error, ")
                if err["type"] == "string_pattern_mismatch":
                    message = "has an unexpected format"
                errors.append(RowError(line, shown.get(field, field), message))
    return rows, sorted(errors, key=lambda e: e.row)


def check_charge_refs(
    rows: list[tuple[int, BalanceRow]],
) -> tuple[list[tuple[int, BalanceRow]], list[RowError]]:
    """One line per charge reference in an account: an identical repeat is merged, another is
    an error of the later row (a second visit under one reference would be silently dropped).
    """
    seen: dict[tuple[str, str], tuple[int, BalanceRow]] = {}
    kept: list[tuple[int, BalanceRow]] = []
    errors: list[RowError] = []
    for line, row in rows:
        key = (row.account_number, row.charge_ref)
        if key not in seen:
            seen[key] = (line, row)
            kept.append((line, row))
        elif seen[key][1] != row:
            errors.append(
                RowError(
                    line,
                    "charge_ref",
                    f"the same charge reference as row {seen[key][0]} of this account with other"
                    " values: expected each visit line once, under its own reference",
                )
            )
    return kept, errors


def write_records(path: Path, header: list[str], records: Iterable[dict[str, str]]) -> Path:
    """Write records (as :func:`read_records` returned them) under ``header``."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    return path


AGING_BUCKETS = (("0-30", 0), ("31-60", 31), ("61-90", 61), ("91-120", 91), ("120+", 121))
"""The receivables' age buckets (DOMAIN: 0-30, 31-60, 61-90, 91-120, 120+ days)."""


def aging_totals(rows: Iterable[BalanceRow], as_of: dt.date) -> dict[str, int]:
    """What the rows leave the patients owing (cents), by the age of each line's service date."""
    totals = {label: 0 for label, _ in AGING_BUCKETS}
    for row in rows:
        age = (as_of - row.service_date).days
        label = next(lab for lab, start in reversed(AGING_BUCKETS) if age >= start or start == 0)
        totals[label] += row.balance_cents
    return totals
