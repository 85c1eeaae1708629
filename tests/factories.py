"""Synthetic balances for tests: invented names and numbers, never a real patient."""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path
from typing import Any

HEADER = [
    "account_number", "guarantor_id", "first_name", "last_name", "email", "phone", "sms_consent",
    "address_line1", "city", "state", "postal_code", "time_zone", "charge_ref", "service_date",
    "description", "charges", "insurance_paid", "insurance_adjustment", "patient_paid", "policy",
]


def balance_row(**overrides: Any) -> dict[str, Any]:
    n = uuid.uuid4().hex[:8].upper()
    row = {
        "account_number": f"T-{n}", "guarantor_id": f"G-{n}", "first_name": "Testy",
        "last_name": "Synthetic", "email": f"t{n.lower()}@example.test", "phone": "+15550100123",
        "sms_consent": "yes", "address_line1": "1 Example Way", "city": "Springfield",
        "state": "NY", "postal_code": "10001", "time_zone": "America/New_York",
        "charge_ref": f"C-{n}", "service_date": "2026-10-01", "description": "Office visit",
        "charges": "185.00", "insurance_paid": "90.00", "insurance_adjustment": "40.00",
        "patient_paid": "0.00", "policy": "physician",
    }
    row.update(overrides)
    return row


def write_csv(path: Path, rows: list[dict[str, Any]], header: list[str] | None = None) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header or HEADER, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path
