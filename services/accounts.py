"""Account look-ups for people: search by number, guarantor name or phone, one account's ledger
lines in order, and the messages sent for it."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from models.orm import Account, Adjustment, ChargeLine, Communication, Guarantor, Payment
from models.policy import Channel

SEARCH_LIMIT = 50


@dataclass(frozen=True)
class Found:
    number: str
    status: str
    balance_cents: int
    opened_at: dt.datetime
    guarantor: str = ""
    """The guarantor's name, to tell apart the accounts a name or a phone number finds."""


@dataclass(frozen=True)
class Sent:
    """One message of an account's outbox: what went (or did not), when, by which channel."""

    id: str
    at: dt.datetime
    step_id: str
    channel: str
    template: str
    status: str
    letter: bool
    """A letter: its PDF can be composed again (``activities.letters.letter_pdf``)."""


@dataclass(frozen=True)
class LedgerLine:
    """One line of the ledger: a charge (by visit), insurance, an adjustment or a payment.
    ``cents`` is what it adds to (positive) or takes from (negative) what the patient owes."""

    on: dt.date
    kind: str
    description: str
    cents: int


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


MIN_PHONE_DIGITS = 4
"""A phone search needs at least this many digits (fewer would match almost everyone)."""


def search(session: Session, text: str) -> list[Found]:
    """Accounts whose number starts with ``text``, whose guarantor's name contains it (first,
    last or "first last"), or whose guarantor's phone contains its digits; case-insensitive, at
    most SEARCH_LIMIT, by account number."""
    text = text.strip()
    if not text:
        return []
    escaped = _like(text)
    full_name = func.concat(Guarantor.first_name, " ", Guarantor.last_name)
    matches: list[ColumnElement[bool]] = [
        Account.account_number.ilike(escaped + "%", escape="\\"),
        full_name.ilike(f"%{escaped}%", escape="\\"),
        func.concat(Guarantor.last_name, ", ", Guarantor.first_name).ilike(
            f"%{escaped}%", escape="\\"
        ),
    ]
    digits = re.sub(r"\D", "", text)
    if len(digits) >= MIN_PHONE_DIGITS and re.fullmatch(r"[0-9 ()+.-]+", text):
        stored = func.regexp_replace(func.coalesce(Guarantor.phone, ""), r"\D", "", "g")
        matches.append(stored.contains(digits))
    rows = session.execute(
        select(Account, full_name)
        .join(Guarantor, Account.guarantor_id == Guarantor.id)
        .where(or_(*matches))
        .order_by(Account.account_number)
        .limit(SEARCH_LIMIT)
    )
    return [
        Found(a.account_number, a.status.value, a.balance_cents, a.opened_at, name)
        for a, name in rows
    ]


def sent(session: Session, number: str) -> list[Sent]:
    """The account's messages (letters, emails, texts, calls), newest first."""
    account = session.scalars(select(Account).where(Account.account_number == number)).first()
    if account is None:
        return []
    rows = session.scalars(
        select(Communication)
        .where(Communication.account_id == account.id)
        .order_by(Communication.created_at.desc())
    )
    return [
        Sent(
            str(c.id),
            c.sent_at or c.created_at,
            c.step_id,
            c.channel.value if c.channel else "",
            c.template,
            c.status.value,
            c.channel is Channel.LETTER,
        )
        for c in rows
    ]


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


@dataclass(frozen=True)
class Contact:
    """The guarantor's name and where they are reached, for staff answering the phone."""

    name: str
    phone: str
    email: str
    address: list[str]


def contact(session: Session, number: str) -> Contact | None:
    """The guarantor of account ``number``, or None for no such account."""
    row = session.execute(
        select(Guarantor)
        .join(Account, Account.guarantor_id == Guarantor.id)
        .where(Account.account_number == number)
    ).first()
    if row is None:
        return None
    g: Guarantor = row[0]
    place = " ".join(p for p in (g.city and f"{g.city},", g.region, g.postal_code) if p)
    lines = [line for line in (g.address_line1, g.address_line2, place) if line]
    return Contact(f"{g.first_name} {g.last_name}", g.phone or "", g.email or "", lines)


def aging(session: Session, number: str, today: dt.date) -> list[tuple[str, int]]:
    """The account's balance by age of its visits (days since the date of service), as its
    statements show it (``activities.messaging.composition.aging_of``); empty for no account."""
    from activities.messaging.composition import aging_of, statement_line

    account = session.scalars(select(Account).where(Account.account_number == number)).first()
    if account is None:
        return []
    rows = [
        statement_line(c)
        for c in session.scalars(select(ChargeLine).where(ChargeLine.account_id == account.id))
    ]
    return list(aging_of(rows, account.balance_cents, today))
