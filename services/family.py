"""A payment made against a family statement: spread over the guarantor's accounts, then posted.

The family statement (``statements.family``) shows every open account of a guarantor and one
total; the guarantor pays the total, or part of it, once. This use case finds the family from any
of its account numbers, spreads the amount by the policy's rule (``workflows.family``: oldest visit
first by default) and posts one ordinary payment per account (``services.facts.pay``: ledger
first, then the workflow), each with the reference ``<reference>/<n>``. Posting the same reference
again changes nothing: the parts already posted are found and reported as they were.
"""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from models.orm import Account, AccountStatus, Payment
from models.orm import repositories as repo
from services import facts
from services.context import Services
from services.errors import Refused
from services.identity import Actor
from services.protections import policy_of
from services.staff import refuse
from workflows.contract import Rejection
from workflows.family import OverAllocation, Owed, allocate

ACTION = "family_payment_posted"
MAX_REFERENCE = 56
"""The payments table holds 64 characters: room for ``/<n>``."""


class FamilyPart(BaseModel):
    """What one account of the family received."""

    account_number: str
    amount_cents: int
    reference: str
    new: bool
    balance_cents: int


class FamilyPaymentPosted(BaseModel):
    reference: str
    amount_cents: int
    rule: str
    parts: list[FamilyPart]


def _plan(
    session: Session, account_number: str, amount_cents: int, reference: str
) -> tuple[str, list[tuple[str, int, str]]]:
    """The allocation rule and ``(account number, cents, reference)`` of each part."""
    account = repo.account_by_number(session, account_number)
    if account is None:
        raise Refused(Rejection.ACCOUNT_UNKNOWN, f"account: no account {account_number!r}")
    rule = policy_of(session, account).policy.statements.payment_allocation
    family = session.scalars(
        select(Account)
        .where(Account.guarantor_id == account.guarantor_id)
        .options(selectinload(Account.charges))
    ).all()
    ids = {a.id: a.account_number for a in family}
    earlier = session.scalars(
        select(Payment)
        .where(Payment.reference.startswith(f"{reference}/", autoescape=True))
        .order_by(Payment.reference)
    ).all()
    if earlier:  # posted before: report the same parts
        if any(p.account_id not in ids for p in earlier):
            raise Refused(
                Rejection.REFERENCE_CONFLICT,
                f"reference: {reference!r} was used for another guarantor's payment",
            )
        return rule.value, [(ids[p.account_id], p.amount_cents, p.reference) for p in earlier]
    owed = [
        Owed(
            a.account_number,
            a.balance_cents,
            min((c.service_date for c in a.charges), default=a.opened_at.date()),
        )
        for a in family
        if a.status is AccountStatus.OPEN
    ]
    try:
        parts = allocate(amount_cents, owed, rule)
    except OverAllocation as exc:
        raise Refused(Rejection.INVALID_REQUEST, str(exc)) from None
    return rule.value, [(n, c, f"{reference}/{i}") for i, (n, c) in enumerate(parts, start=1)]


async def pay_family(
    svc: Services,
    actor: Actor,
    account_number: str,
    amount_cents: int,
    reference: str,
    *,
    method: str = "other",
) -> FamilyPaymentPosted:
    """Spread a payment over the family of ``account_number`` and post each part once."""
    detail = {"account_number": account_number}
    problem = ""
    if amount_cents <= 0:
        problem = "amount: must be more than zero"
    elif not reference or len(reference) > MAX_REFERENCE:
        problem = f"reference: 1 to {MAX_REFERENCE} characters"
    if problem:
        raise await refuse(
            svc, actor, ACTION, None, Refused(Rejection.INVALID_REQUEST, problem), detail
        )
    try:
        rule, plan = await svc.db(lambda s: _plan(s, account_number, amount_cents, reference))
    except Refused as exc:
        raise await refuse(svc, actor, ACTION, None, exc, detail) from None
    parts: list[FamilyPart] = []
    for number, cents, ref in plan:
        posted = await facts.pay(svc, actor, number, cents, ref, method=method)
        parts.append(
            FamilyPart(
                account_number=number,
                amount_cents=cents,
                reference=ref,
                new=posted.new,
                balance_cents=posted.balance_cents,
            )
        )
    return FamilyPaymentPosted(
        reference=reference,
        amount_cents=sum(p.amount_cents for p in parts),
        rule=rule,
        parts=parts,
    )
