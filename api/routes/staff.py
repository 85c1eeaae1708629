"""Staff actions over HTTP: thin adapters over ``services.staff`` and ``services.queries``.

The caller's token is the actor (``Principal.actor()``); the service checks its roles against the
task's approvers, audits every action done or refused, and keeps notes out of workflow history.
A refusal answers ``{"detail", "kind"}`` with the catalogue's status (``api.errors``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel

from api.auth import Permission, Principal, require
from api.schemas import (
    AccountNumber,
    CallOutcomeIn,
    DecisionIn,
    DenyIn,
    HardshipIn,
    HoldIn,
    PlanIn,
    Problem,
    ReferralIn,
    SettlementIn,
    WriteOffIn,
)
from api.state import State
from models.actions import AccountState, Installment
from models.payloads import CallResult, Decision, StatusView
from services import facts, queries, staff
from services.queries import TaskView
from workflows.contract import (
    DecisionResult,
    HardshipResult,
    HoldResult,
    PlanResult,
    ResumeResult,
    SettlementResult,
    TaskOpened,
)

router = APIRouter(tags=["staff"])
Reader = Annotated[Principal, Depends(require(Permission.READ))]
Actor = Annotated[Principal, Depends(require(Permission.ACT))]
Decider = Annotated[Principal, Depends(require(Permission.DECIDE))]
TaskId = Annotated[
    str,
    Path(
        pattern=r"^[0-9a-fA-F][0-9a-fA-F-]{0,35}$",
        description="the task's id, or a unique prefix of it (as the worklist shows it)",
    ),
]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem},
    403: {"model": Problem},
    404: {"model": Problem, "description": "no such account or task"},
    409: {"model": Problem, "description": "a rule refused the action; kind names it"},
    422: {"model": Problem},
    503: {"model": Problem, "description": "Temporal is not reachable"},
}


@router.get("/accounts/{account_number}/status", response_model=StatusView, responses=ERRORS)
async def account_status(account_number: AccountNumber, state: State, who: Reader) -> StatusView:
    """State, balance, next step and when, and what was sent."""
    view = await queries.account_status(state.services, who.actor(), account_number)
    return view.status


@router.get("/accounts/{account_number}/actions", response_model=AccountState, responses=ERRORS)
async def account_actions(account_number: AccountNumber, state: State, who: Reader) -> AccountState:
    """Holds, plan, settlement offer, open approval tasks and the account's events."""
    view = await queries.account_status(state.services, who.actor(), account_number)
    return view.actions


@router.get("/worklist", response_model=list[TaskView], responses=ERRORS)
async def worklist(
    state: State, who: Reader, all_tasks: Annotated[bool, Query(alias="all")] = False
) -> list[TaskView]:
    """Open approval, call and estate tasks, oldest first (``all=true``: decided ones too)."""
    return await queries.worklist(state.services, who.actor(), all_tasks=all_tasks)


@router.get("/aging", response_model=dict[str, int], responses=ERRORS)
async def aging(state: State, who: Reader) -> dict[str, int]:
    """Open receivables in cents by age: 0-30, 31-60, 61-90, 91-120, 120+ days."""
    return await queries.aging(state.services, who.actor())


@router.post("/accounts/{account_number}/hold", response_model=HoldResult, responses=ERRORS)
async def hold(account_number: AccountNumber, body: HoldIn, state: State, who: Actor) -> HoldResult:
    """Hold the ladder: a dispute, an itemised-bill request, insurance pending, an application."""
    return await staff.hold(
        state.services, who.actor(), account_number, body.reason, until=body.until, note=body.note
    )


@router.post("/accounts/{account_number}/resume", response_model=ResumeResult, responses=ERRORS)
async def resume(account_number: AccountNumber, state: State, who: Actor) -> ResumeResult:
    """Lift a hold; the later steps move by the time held."""
    return await staff.resume(state.services, who.actor(), account_number)


@router.post("/accounts/{account_number}/hardship", response_model=HardshipResult, responses=ERRORS)
async def hardship(
    account_number: AccountNumber, body: HardshipIn, state: State, who: Actor
) -> HardshipResult:
    """Grant financial assistance: a discount, or 100 for a full write-off."""
    return await staff.hardship(
        state.services, who.actor(), account_number, body.discount_percent, program=body.program
    )


@router.post("/accounts/{account_number}/plan", response_model=PlanResult, responses=ERRORS)
async def plan(account_number: AccountNumber, body: PlanIn, state: State, who: Actor) -> PlanResult:
    """Agree a payment plan; the installments must add up to the balance."""
    items = [Installment(due_on=i.due_on, amount_cents=i.amount_cents) for i in body.installments]
    return await staff.plan(
        state.services,
        who.actor(),
        account_number,
        items,
        monthly_income_cents=body.monthly_income_cents,
    )


@router.post(
    "/accounts/{account_number}/settlement", response_model=SettlementResult, responses=ERRORS
)
async def settle(
    account_number: AccountNumber, body: SettlementIn, state: State, who: Actor
) -> SettlementResult:
    """Offer to close the balance for less; above the staff limit it needs approval (a task)."""
    return await staff.settle(
        state.services, who.actor(), account_number, body.amount_cents, days=body.days
    )


@router.post("/accounts/{account_number}/write-off", response_model=TaskOpened, responses=ERRORS)
async def write_off(
    account_number: AccountNumber, body: WriteOffIn, state: State, who: Actor
) -> TaskOpened:
    """Request a write-off; the policy's approvers decide. The reason stays in PostgreSQL."""
    return await staff.write_off(
        state.services, who.actor(), account_number, body.reason, amount_cents=body.amount_cents
    )


@router.post("/accounts/{account_number}/referral", response_model=TaskOpened, responses=ERRORS)
async def refer(
    account_number: AccountNumber, body: ReferralIn, state: State, who: Actor
) -> TaskOpened:
    """Request an agency referral (refused inside a 501(r) waiting period)."""
    return await staff.refer(state.services, who.actor(), account_number, body.note)


@router.post("/tasks/{task_id}/approve", response_model=DecisionResult, responses=ERRORS)
async def approve(task_id: TaskId, body: DecisionIn, state: State, who: Decider) -> DecisionResult:
    """Approve a task (four eyes: never your own request; the policy names the roles)."""
    return await staff.decide(
        state.services,
        who.actor(),
        str(task_id),
        Decision.APPROVE,
        body.reason,
        purpose=body.purpose,
    )


@router.post("/tasks/{task_id}/deny", response_model=DecisionResult, responses=ERRORS)
async def deny(task_id: TaskId, body: DenyIn, state: State, who: Decider) -> DecisionResult:
    """Deny a task, with a reason (kept in PostgreSQL, out of workflow history)."""
    return await staff.decide(state.services, who.actor(), str(task_id), Decision.DENY, body.reason)


@router.post(
    "/accounts/{account_number}/closing-notice", response_model=TaskOpened, responses=ERRORS
)
async def closing_notice(account_number: AccountNumber, state: State, who: Actor) -> TaskOpened:
    """Open the closing-notice task after a cease-communication request (at most one, ever)."""
    return await staff.request_closing_notice(state.services, who.actor(), account_number)


class CallOutcomeOut(BaseModel):
    task_id: str
    account_number: str
    result: CallResult


@router.post("/tasks/{task_id}/call-outcome", response_model=CallOutcomeOut, responses=ERRORS)
async def call_outcome(
    task_id: TaskId, body: CallOutcomeIn, state: State, who: Actor
) -> CallOutcomeOut:
    """Record a call: a conversation blocks calls for 7 days (Reg F)."""
    number, outcome = await facts.call_outcome(
        state.services,
        who.actor(),
        str(task_id),
        body.result,
        promised_date=body.promised_date,
        promised_cents=body.promised_cents,
    )
    return CallOutcomeOut(task_id=outcome.task_id, account_number=number, result=outcome.result)
