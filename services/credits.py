"""One balance, the ledger's: how new charge lines reach a workflow when the account has credit.

Pure functions, shared by the intake and the reconciliation. A credit (the ledger below zero:
an overpayment, or insurance that paid above the charges) is owed to the patient: it is never
billed, and a new charge nets against it first. Only what remains above zero starts a ladder.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Routing:
    """What the new lines tell the workflow: charges (positive) and, for a running ladder,
    adjustments (negative lines, e.g. insurance above the visit's charges)."""

    charges: list[tuple[str, int]] = field(default_factory=list)
    adjustments: list[tuple[str, int]] = field(default_factory=list)


def route_new_lines(before_cents: int, running: bool, lines: list[tuple[str, int]]) -> Routing:
    """Split new charge lines (reference, balance in cents) into workflow messages.

    Args:
        before_cents: the ledger balance before the lines (negative: a credit).
        running: whether the account's workflow runs (the account is open with a positive
            balance); it then follows every line, negative ones as adjustments.
        lines: the new lines in posting order, each line's balance (may be zero or negative).

    Without a running workflow the lines are netted against the credit (and against each other)
    first, in order; only the rest is charged, so the charges sum to the net amount owed.
    """
    if running:
        return Routing(
            charges=[(ref, cents) for ref, cents in lines if cents > 0],
            adjustments=[(ref, cents) for ref, cents in lines if cents < 0],
        )
    credit = max(0, -before_cents) + sum(-cents for _, cents in lines if cents < 0)
    charges: list[tuple[str, int]] = []
    for ref, cents in lines:
        if cents <= 0:
            continue
        used = min(credit, cents)
        credit -= used
        if cents - used > 0:
            charges.append((ref, cents - used))
    return Routing(charges=charges)


def credit_cents(balance_cents: int) -> int:
    """What the practice owes the patient: the part of the balance below zero."""
    return max(0, -balance_cents)
