"""The pure rules of an experiment: the assignment hash, the arm a bucket falls in, eligibility.

No I/O here: the intake hook, the tests and anyone auditing an assignment run the same functions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from models.experiment import Eligibility

SCALE = 2**64


def bucket(experiment_key: str, account_id: str) -> float:
    """Where a balance falls on [0, 1): the first 8 bytes of sha256("key:account id").

    Deterministic and independent of arrival order, so an assignment is reproducible by anyone
    with the two ids, and an experiment's buckets are independent of another's (the key differs).
    """
    digest = hashlib.sha256(f"{experiment_key}:{account_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / SCALE


@dataclass(frozen=True)
class ArmSlot:
    """An arm on the unit interval: name, share in basis points, whether it takes balances."""

    name: str
    share_bp: int
    active: bool = True


def pick_arm(slots: Sequence[ArmSlot], point: float) -> str:
    """The arm whose slice of [0, 1) holds ``point``; the first slot is the champion.

    A stopped arm's slice goes to the champion: the other arms' slices do not move, so a guard
    that stops one challenger never changes which arm any other balance would have had.
    """
    if not slots:
        raise ValueError("an experiment has at least one arm")
    edge = 0
    for slot in slots:
        edge += slot.share_bp
        if point * 10_000 < edge:
            return slot.name if slot.active else slots[0].name
    return slots[0].name


@dataclass(frozen=True)
class Candidate:
    """What eligibility looks at for a balance entering the ladder."""

    policy: str
    balance_cents: int
    oldest_service_date: dt.date
    state: str | None
    language: str
    today: dt.date


def ineligible_because(rules: Eligibility, policies: Sequence[str], c: Candidate) -> str | None:
    """None when the balance may enter, else the first condition it fails (for the audit)."""
    if c.policy not in policies:
        return "policy"
    if rules.balance_min is not None and c.balance_cents < _cents(rules.balance_min):
        return "balance_min"
    if rules.balance_max is not None and c.balance_cents > _cents(rules.balance_max):
        return "balance_max"
    age = (c.today - c.oldest_service_date).days
    if rules.age_days_min is not None and age < rules.age_days_min:
        return "age_days_min"
    if rules.age_days_max is not None and age > rules.age_days_max:
        return "age_days_max"
    if rules.states and (c.state or "").upper() not in rules.states:
        return "states"
    if rules.languages and c.language not in rules.languages:
        return "languages"
    return None


def _cents(dollars: Decimal) -> int:
    return int((dollars * 100).to_integral_value())
