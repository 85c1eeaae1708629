"""CSV rows as a practice-management export has them, validated with row number and field.

One row per charge line (visit); several rows may share an account. Amounts are dollars.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from models.common import REFERENCE_FIELD
from models.money import DollarsAsCents


def _blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def _zone(name: str) -> str:
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


Optional = Annotated[str | None, BeforeValidator(_blank_to_none)]
Money0 = Annotated[DollarsAsCents, BeforeValidator(lambda v: "0" if v in (None, "") else v)]


class BalanceRow(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    account_number: str = Field(min_length=1, max_length=64)
    guarantor_id: str = Field(min_length=1, max_length=64)
    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(min_length=1, max_length=100)
    email: Optional = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: Optional = Field(default=None, pattern=r"^\+?[0-9 ()-]{7,20}$")
    sms_consent: Annotated[bool, BeforeValidator(_yes_no)] = False
    address_line1: Optional = None
    address_line2: Optional = None
    city: Optional = None
    state: Optional = Field(default=None, pattern=r"^[A-Z]{2}$")
    postal_code: Optional = Field(default=None, pattern=r"^\d{5}(-\d{4})?$")
    time_zone: Annotated[str, AfterValidator(_zone)] = "America/New_York"
    language: str = Field(default="en", pattern=r"^[a-z]{2}$")
    charge_ref: str = REFERENCE_FIELD
    service_date: dt.date
    description: str = Field(min_length=1, max_length=200)
    charges: DollarsAsCents = Field(ge=0)
    insurance_paid: Money0 = 0
    insurance_adjustment: Money0 = 0
    patient_paid: Money0 = 0
    policy: Optional = None

    @property
    def balance_cents(self) -> int:
        return self.charges - self.insurance_paid - self.insurance_adjustment - self.patient_paid


class PaymentRow(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    account_number: str = Field(min_length=1, max_length=64)
    reference: str = REFERENCE_FIELD
    amount: DollarsAsCents = Field(gt=0)
    received_on: dt.date | None = None
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


def parse_rows(
    text: str | Path, model: type[RowT], required: Iterable[str] = ()
) -> tuple[list[tuple[int, RowT]], list[RowError]]:
    """Validate every row; return the good ones with their line numbers, and all the errors."""
    if isinstance(text, Path):
        text = text.read_text(encoding="utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    missing = [
        name
        for name, info in model.model_fields.items()
        if (info.is_required() or name in required) and name not in header
    ]
    if missing:
        return [], [RowError(1, name, "missing column") for name in missing]
    rows: list[tuple[int, RowT]] = []
    errors: list[RowError] = []
    for record in reader:
        line = reader.line_num
        if None in record:
            errors.append(RowError(line, "(row)", "more values than columns"))
            continue
        try:
            rows.append((line, model.model_validate(record)))
        except ValidationError as exc:
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"]) or "(row)"
                message = err["msg"].removeprefix("Value error, ")
                if err["type"] == "string_pattern_mismatch":
                    message = "has an unexpected format"
                errors.append(RowError(line, field, message))
    return rows, errors
