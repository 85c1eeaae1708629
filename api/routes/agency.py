"""The agency recall over HTTP: a thin adapter over ``services.recall``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from api.auth import Permission, Principal, require
from api.schemas import AccountNumber, Problem
from api.state import State
from services import recall as recall_service
from services.agency import Recalled

router = APIRouter(tags=["agency"])
Actor = Annotated[Principal, Depends(require(Permission.ACT))]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem},
    403: {"model": Problem},
    404: {"model": Problem, "description": "no such account"},
    409: {"model": Problem, "description": "the account is not with an agency (NotPlaced)"},
    422: {"model": Problem},
}


class RecallIn(BaseModel):
    reason: str = Field(
        default="staff",
        description="staff, financial_assistance, dispute or patient_request",
        max_length=32,
    )


@router.post("/accounts/{account_number}/recall", response_model=Recalled, responses=ERRORS)
async def recall(
    account_number: AccountNumber, body: RecallIn, state: State, who: Actor
) -> Recalled:
    """Recall a placed account from the collection agency (written to the agency update file)."""
    return await recall_service.recall(state.services, who.actor(), account_number, body.reason)
