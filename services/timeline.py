"""The money side of an account's timeline, from the ledger, in dollars.

Payments, adjustments (insurance payments and denials included) and credits (a visit's line that
insurance paid above its charges) come from their ledger rows, and so do financial assistance and
approved write-offs; the other write-offs (settled, small balances) from the workflow's record of
them (the ledger keeps only the balance they leave). Every amount is shown as dollars
("-$15.00"), never as cents; the workflow's own events are reworded the same way.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.actions import WORKFLOW_WRITE_OFFS, AccountEvent, AccountState, AdjustmentKind
from models.money import format_cents
from models.orm import Account, Payment
from models.orm.account import Adjustment, ChargeLine
from models.payloads import LedgerEntry

_CENTS = re.compile(r"([+-]?\d+) cents")
_WRITTEN_OFF = re.compile(r"^(\d+) cents")
LEDGER_EVENTS = frozenset(k.value for k in AdjustmentKind)
"""Workflow events the ledger lists itself (with their dates and references)."""


def ledger_entries(
    session: Session, account_number: str, currency: str = "USD"
) -> list[LedgerEntry]:
    """The account's payments, adjustments and credits, oldest first."""
    account = session.scalars(
        select(Account).where(Account.account_number == account_number)
    ).one_or_none()
    if account is None:
        return []
    currency = account.currency or currency
    entries: list[LedgerEntry] = []

    def add(at: object, kind: str, cents: int, reference: str) -> None:
        entries.append(
            LedgerEntry.model_validate(
                {
                    "at": at,
                    "kind": kind,
                    "amount_cents": cents,
                    "amount": format_cents(cents, currency),
                    "reference": reference,
                }
            )
        )

    for payment in session.scalars(select(Payment).where(Payment.account_id == account.id)):
        add(payment.received_at, "payment", -payment.amount_cents, payment.reference)
    for adjustment in session.scalars(
        select(Adjustment).where(Adjustment.account_id == account.id)
    ):
        add(
            adjustment.created_at,
            adjustment.kind.value,
            adjustment.amount_cents,
            adjustment.reference,
        )
    for line in session.scalars(select(ChargeLine).where(ChargeLine.account_id == account.id)):
        if line.balance_cents < 0:  # insurance paid above the visit's charges: owed back
            add(line.created_at, "credit", line.balance_cents, line.external_ref)
    return sorted(entries, key=lambda e: e.at)


def written_off(
    actions: AccountState, currency: str = "USD", ledger: Sequence[LedgerEntry] = ()
) -> list[LedgerEntry]:
    """The write-offs the workflow recorded (approved, hardship, settled, small balances), but
    those the ``ledger`` lists itself (financial assistance and approved write-offs are recorded
    as adjustments too: one entry each, not two)."""
    recorded = Counter(
        e.amount_cents for e in ledger if e.kind in {k.value for k in WORKFLOW_WRITE_OFFS}
    )
    entries = []
    for event in actions.events:
        found = _WRITTEN_OFF.match(event.detail) if event.kind == "written_off" else None
        if found:
            cents = -int(found.group(1))
            if recorded[cents] > 0:
                recorded[cents] -= 1
                continue
            entries.append(
                LedgerEntry(
                    at=event.at,
                    kind="written_off",
                    amount_cents=cents,
                    amount=format_cents(cents, currency),
                    reference=event.detail[found.end() :].lstrip(": ")[:100],
                )
            )
    return entries


def in_dollars(actions: AccountState, currency: str = "USD") -> AccountState:
    """The workflow's events with every amount in dollars; those the ledger lists left out."""

    def reword(event: AccountEvent) -> AccountEvent:
        detail = _CENTS.sub(lambda m: format_cents(int(m.group(1)), currency), event.detail)
        return event.model_copy(update={"detail": detail})

    events = [reword(e) for e in actions.events if e.kind not in LEDGER_EVENTS]
    return actions.model_copy(update={"events": events})
