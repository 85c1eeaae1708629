"""How a payment made against a family statement is spread over the guarantor's accounts.

Pure: the service (``services.family``) reads the accounts, this decides, the service posts one
payment per account through the ordinary payment use case. The rule is the policy's
``statements.payment_allocation``:

- ``oldest_first`` (the default): the account with the oldest visit still owed is paid off first,
  then the next; ties by account number. Older balances are the ones closest to a final notice or
  an agency, so paying them first keeps the family furthest from escalation.
- ``largest_first``: the largest balance first; ties by the oldest visit, then account number.

A payment above the family's total is refused: which account should hold the credit is a person's
decision.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from models.policy import PaymentAllocation


@dataclass(frozen=True, slots=True)
class Owed:
    """One account of the family as an allocation sees it."""

    account_number: str
    balance_cents: int
    oldest_visit: dt.date


class OverAllocation(ValueError):
    """The payment is more than the family owes."""


def allocate(
    amount_cents: int,
    accounts: Sequence[Owed],
    rule: PaymentAllocation = PaymentAllocation.OLDEST_FIRST,
) -> list[tuple[str, int]]:
    """``(account number, cents)`` for each account that receives part of the payment, in order.

    Raises:
        ValueError: the amount is not positive.
        OverAllocation: the amount is more than the accounts owe together.
    """
    if amount_cents <= 0:
        raise ValueError("amount: must be more than zero")
    owed = [a for a in accounts if a.balance_cents > 0]
    total = sum(a.balance_cents for a in owed)
    if amount_cents > total:
        raise OverAllocation(
            f"amount: {amount_cents} cents is more than the {total} cents the family owes"
        )
    if rule is PaymentAllocation.LARGEST_FIRST:
        order = sorted(owed, key=lambda a: (-a.balance_cents, a.oldest_visit, a.account_number))
    else:
        order = sorted(owed, key=lambda a: (a.oldest_visit, a.account_number))
    left = amount_cents
    parts: list[tuple[str, int]] = []
    for account in order:
        if left == 0:
            break
        share = min(left, account.balance_cents)
        parts.append((account.account_number, share))
        left -= share
    return parts
