"""Synthetic balances for tests: invented names and numbers, never a real patient."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from config.settings import Settings

HEADER = [
    "account_number",
    "guarantor_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "sms_consent",
    "address_line1",
    "city",
    "state",
    "postal_code",
    "time_zone",
    "charge_ref",
    "service_date",
    "description",
    "charges",
    "insurance_paid",
    "insurance_adjustment",
    "patient_paid",
    "policy",
    "good_faith_estimate",
    "nsa_protected",
    "guarantor_dob",
    "patient_id",
    "patient_first_name",
    "patient_last_name",
    "patient_dob",
]


UNLOCATED_PHONE = "+15005550123"
"""A valid number with no place (NANP 500: personal communication service): it adds no time zone.

Synthetic guarantors are located by their ``time_zone`` alone. A geographic number or a real ZIP
code would add its zone to the allowed window (Reg F: every known location), and a real-time
test whose patient lives at midday somewhere (``midday_zone``) would wait for New York's morning
whenever it runs at New York's night. Tests of locations give their own number and ZIP code."""

UNLOCATED_ZIP = "99999"
"""A well-formed ZIP code that no ZIP database places: it adds no time zone either."""


def balance_row(**overrides: Any) -> dict[str, Any]:
    n = uuid.uuid4().hex[:8].upper()
    row = {
        "account_number": f"T-{n}",
        "guarantor_id": f"G-{n}",
        "first_name": "Testy",
        "last_name": "Synthetic",
        "email": f"t{n.lower()}@example.test",
        "phone": UNLOCATED_PHONE,
        "sms_consent": "yes",
        "address_line1": "1 Example Way",
        "city": "Springfield",
        "state": "NY",
        "postal_code": UNLOCATED_ZIP,
        "time_zone": "America/New_York",
        "charge_ref": f"C-{n}",
        "service_date": "2026-10-01",
        "description": "Office visit",
        "charges": "185.00",
        "insurance_paid": "90.00",
        "insurance_adjustment": "40.00",
        "patient_paid": "0.00",
        "policy": "physician",
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


def midday_zone(now: dt.datetime | None = None) -> str:
    """An IANA zone in which it is about 13:00 now, so that real-time tests are inside hours."""
    now = now or dt.datetime.now(dt.UTC)
    offset = 13 - now.hour
    if offset > 14:
        offset -= 24
    if offset < -12:
        offset += 24
    # Etc/GMT names carry the inverted sign: Etc/GMT-3 is UTC+03:00.
    return "Etc/GMT" + ("" if offset == 0 else f"{-offset:+d}")


def instant_policy(directory: Path, time_zone: str, **overrides: str) -> Path:
    """A policy whose first statement is due at once on any day, for real-time dev-server tests."""
    text = INSTANT_POLICY.format(tz=time_zone)
    for key, value in overrides.items():
        text = text.replace(f"__{key}__", value)
    path = directory / "instant.yaml"
    path.write_text(text, encoding="utf-8")
    return path


INSTANT_POLICY = """
name: instant
practice: {{name: Example Clinic, phone: (555) 010-0199, pay_url: https://pay.example.test}}
thresholds: {{minimum_balance: 5.00}}
contact:
  practice_time_zone: {tz}
  default_patient_time_zone: {tz}
  business_days: [mon, tue, wed, thu, fri, sat, sun]
  min_spacing_hours: 0
steps:
  - {{id: statement-1, day: 0, channels: [letter], template: statement}}
  - {{id: notice-1, day: 4, channels: [email, sms], template: statement-notice}}
  - {{id: statement-2, day: 30, channels: [letter], template: statement, tone: neutral}}
"""


PATIENT_ZONE = ZoneInfo("America/New_York")
"""The time zone of ``balance_row``'s guarantors."""


def patient_day(at: dt.datetime, start: dt.datetime) -> int:
    """Which day of the ladder ``at`` falls on: calendar days in the patient's zone since ``start``.

    A policy's "day 21" is a date on the patient's calendar, sent in the patient's allowed hours;
    elapsed 24-hour periods would make a 10:00 send count as day 20 for a balance opened at 10:15.
    """
    return (at.astimezone(PATIENT_ZONE).date() - start.astimezone(PATIENT_ZONE).date()).days


def policy_in(settings: Settings, path: Path) -> str:
    """The name an import row gives ``path``'s policy: its folder joins the policy folders."""
    if path.parent not in settings.practice.policy_dirs:
        settings.practice.policy_dirs.append(path.parent)
    return path.stem
