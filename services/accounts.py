"""Account look-ups for people: search by number, and one account's ledger lines in order."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.orm import Account, Adjustment, ChargeLine, Payment

SEARCH_LIMIT = 50


@dataclass(frozen=True)
class Found:
    number: str
    status: str
    balance_cents: int
    opened_at: dt.datetime


@dataclass(frozen=True)
class LedgerLine:
    """One line of the ledger: a charge (by visit), insurance, an adjustment or a payment.
    ``cents`` is what it adds to (positive) or takes from (negative) what the patient owes."""

    on: dt.date
    kind: str
    description: str
    cents: int


def search(session: Session, text: str) -> list[Found]:
    """Accounts whose number starts with ``text`` (case-insensitive), at most SEARCH_LIMIT."""
    text = text.strip()
    if not text:
        return []
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = session.scalars(
        select(Account)
        .where(Account.account_number.ilike(escaped + "%", escape="\\"))
        .order_by(Account.account_number)
        .limit(SEARCH_LIMIT)
    )
    return [Found(a.account_number, a.status.value, a.balance_cents, a.opened_at) for a in rows]


def ledger_lines(session: Session, number: str) -> list[LedgerLine]:
    """The account's charges, insurance, adjustments and payments, oldest first."""
    account = session.scalars(select(Account).where(Account.account_number == number)).first()
    if account is None:
        return []
    lines: list[LedgerLine] = []
    for c in session.scalars(select(ChargeLine).where(ChargeLine.account_id == account.id)):
        lines.append(LedgerLine(c.service_date, "charge", c.description, c.charges_cents))
        if c.insurance_paid_cents:
            lines.append(
                LedgerLine(c.service_date, "insurance paid", c.description, -c.insurance_paid_cents)
            )
        if c.insurance_adjustment_cents:
            lines.append(
                LedgerLine(
                    c.service_date,
                    "insurance adjustment",
                    c.description,
                    -c.insurance_adjustment_cents,
                )
            )
        if c.patient_paid_cents:
            lines.append(
                LedgerLine(c.service_date, "paid at visit", c.description, -c.patient_paid_cents)
            )
    for a in session.scalars(select(Adjustment).where(Adjustment.account_id == account.id)):
        lines.append(
            LedgerLine(
                a.created_at.date(), a.kind.value.replace("_", " "), a.reference, a.amount_cents
            )
        )
    for p in session.scalars(select(Payment).where(Payment.account_id == account.id)):
        lines.append(LedgerLine(p.received_at.date(), "payment", p.method, -p.amount_cents))
    return sorted(lines, key=lambda line: line.on)
