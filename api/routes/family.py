"""A payment against a family statement: spread over the guarantor's accounts (issue 17).

Thin: parse, call ``services.family``, render. Idempotent by the caller's reference, like every
payment: a repeat returns what was posted the first time.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from api.auth import Permission, Principal, require
from api.routes.intake import ERRORS
from api.schemas import AccountNumber, PaymentIn
from api.state import State
from services import family

router = APIRouter(tags=["intake"])
Integration = Annotated[Principal, Depends(require(Permission.INTAKE))]


class FamilyPartOut(BaseModel):
    account_number: str
    amount_cents: int
    reference: str
    new: bool
    balance_cents: int


class FamilyPaymentOut(BaseModel):
    reference: str
    amount_cents: int
    rule: str
    parts: list[FamilyPartOut]


@router.post(
    "/accounts/{account_number}/family-payments",
    response_model=FamilyPaymentOut,
    responses={**ERRORS, 422: {"description": "more than the family owes"}},
    summary="Post a payment against a family statement (spread over the guarantor's accounts)",
)
async def post_family_payment(
    account_number: AccountNumber, body: PaymentIn, state: State, who: Integration
) -> FamilyPaymentOut:
    """Spreads the amount by the policy's rule (oldest visit first by default) and posts one
    payment per account, referenced ``<reference>/<n>``."""
    posted = await family.pay_family(
        state.services,
        who.actor(),
        account_number,
        body.amount_cents,
        body.reference,
        method=body.method,
    )
    return FamilyPaymentOut.model_validate(posted.model_dump())
