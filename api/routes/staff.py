"""Staff actions: everything the staff CLI does, with the same validation and the same errors.

The caller's token names who acts (``requested_by``, ``decided_by``) and, for decisions, in which
role; the workflow still checks that role against the policy's approvers. A refused action is
409 (422 for an invalid request) with the workflow's rule as ``kind``. Every action, refused or
not, is written to the audit trail with the token's name.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import JSONResponse
from sqlalchemy import select
from temporalio.service import RPCError, RPCStatusCode

import starter
from activities.calls import CallTaskError
from api.auth import Permission, Principal, require
from api.schemas import (
    AccountNumber,
    ActionOut,
    CallOutcomeIn,
    DecisionIn,
    DenyIn,
    HardshipIn,
    HoldIn,
    PlanIn,
    Problem,
    ReferralIn,
    SettlementIn,
    TaskOut,
    WriteOffIn,
)
from api.state import AppState, State
from models.actions import (
    AccountState,
    HardshipRequest,
    HoldRequest,
    Installment,
    PlanRequest,
    ReferralRequest,
    ResumeRequest,
    SettlementRequest,
    WriteOffRequest,
)
from models.orm import Account, AuditEvent, StaffTask, TaskKind, TaskStatus
from models.orm import repositories as repo
from models.payloads import Decision, StatusView, StepDecision
from services import ledger_status

router = APIRouter(tags=["staff"])
Reader = Annotated[Principal, Depends(require(Permission.READ))]
Actor = Annotated[Principal, Depends(require(Permission.ACT))]
Decider = Annotated[Principal, Depends(require(Permission.DECIDE))]
T = TypeVar("T")
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem},
    403: {"model": Problem},
    404: {"model": Problem},
    409: {"model": Problem, "description": "the workflow refused the action; kind names why"},
}
INVALID_KINDS = frozenset({"InvalidRequest"})


def _account_id(state: AppState, account_number: str) -> str:
    try:
        return state.intake.account_id(account_number)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None


def _audit(
    state: AppState, who: Principal, action: str, account_id: str, detail: dict[str, Any]
) -> None:
    with state.session_factory.begin() as session:
        session.add(
            AuditEvent(
                actor=who.name,
                action=action,
                account_id=uuid.UUID(account_id),
                detail={"role": who.role.value, **detail},
            )
        )


async def _act(
    state: AppState,
    who: Principal,
    action: str,
    account_number: str,
    call: Callable[[str], Awaitable[object]],
    detail: dict[str, Any] | None = None,
) -> ActionOut | JSONResponse:
    """Run a workflow update for a staff action, audit it, and map a refusal to 409 or 422."""
    account_id = _account_id(state, account_number)
    try:
        result = await call(account_id)
    except starter.ActionRejected as exc:
        _audit(
            state,
            who,
            action,
            account_id,
            {**(detail or {}), "outcome": "refused", "kind": exc.kind},
        )
        code = 422 if exc.kind in INVALID_KINDS else 409
        return JSONResponse({"detail": str(exc), "kind": exc.kind}, status_code=code)
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            return JSONResponse(
                {
                    "detail": "no running workflow: the balance is not being followed up",
                    "kind": "NotRunning",
                },
                status_code=409,
            )
        raise
    _audit(state, who, action, account_id, {**(detail or {}), "outcome": "done"})
    return ActionOut(account_number=account_number, result=str(result))


async def _query(state: AppState, account_number: str, call: Callable[[str], Awaitable[T]]) -> T:
    account_id = _account_id(state, account_number)
    try:
        return await call(account_id)
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            raise HTTPException(404, "account: no workflow for this account yet") from None
        raise


@router.get("/accounts/{account_number}/status", response_model=StatusView, responses=ERRORS)
async def account_status(account_number: AccountNumber, state: State, who: Reader) -> StatusView:
    """State, balance, next step and when, and what was sent."""
    try:
        return await ledger_status.account_status(
            state.session_factory, state.client, account_number
        )
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/accounts/{account_number}/actions", response_model=AccountState, responses=ERRORS)
async def account_actions(account_number: AccountNumber, state: State, who: Reader) -> AccountState:
    """Holds, plan, settlement offer, open approval tasks and the account's events."""
    return await _query(state, account_number, lambda a: starter.get_account(state.client, a))


@router.get("/worklist", response_model=list[TaskOut], responses=ERRORS)
def worklist(
    state: State, who: Reader, all_tasks: Annotated[bool, Query(alias="all")] = False
) -> list[TaskOut]:
    """Open approval, call and estate tasks, oldest first (``all=true``: decided ones too)."""
    with state.session_factory() as session:
        query = (
            select(StaffTask, Account.account_number).join(Account).order_by(StaffTask.created_at)
        )
        if not all_tasks:
            query = query.where(StaffTask.status == TaskStatus.OPEN)
        rows = session.execute(query).all()
    return [
        TaskOut(
            task_id=str(t.id),
            account_number=n,
            kind=t.kind.value,
            title=t.title,
            approvers=list(t.approvers),
            due_at=t.due_at,
            status=t.status.value,
            requested_by=t.requested_by,
        )
        for t, n in rows
    ]


@router.get("/aging", response_model=dict[str, int], responses=ERRORS)
def aging(state: State, who: Reader) -> dict[str, int]:
    """Open receivables in cents by age: 0-30, 31-60, 61-90, 91-120, 120+ days."""
    with state.session_factory() as session:
        return repo.aging(session, dt.datetime.now(dt.UTC))


@router.post("/accounts/{account_number}/hold", response_model=ActionOut, responses=ERRORS)
async def hold(account_number: AccountNumber, body: HoldIn, state: State, who: Actor) -> Any:
    """Hold the ladder: a dispute, an itemised-bill request, insurance pending, an application."""
    request = HoldRequest(
        reason=body.reason, until=body.until, note=body.note, requested_by=who.name
    )
    return await _act(
        state,
        who,
        "hold",
        account_number,
        lambda a: starter.hold(state.client, a, request),
        {"reason": body.reason.value},
    )


@router.post("/accounts/{account_number}/resume", response_model=ActionOut, responses=ERRORS)
async def resume(account_number: AccountNumber, state: State, who: Actor) -> Any:
    """Lift a hold; the later steps move by the time held."""
    request = ResumeRequest(requested_by=who.name)
    return await _act(
        state, who, "resume", account_number, lambda a: starter.resume(state.client, a, request)
    )


@router.post("/accounts/{account_number}/hardship", response_model=ActionOut, responses=ERRORS)
async def hardship(
    account_number: AccountNumber, body: HardshipIn, state: State, who: Actor
) -> Any:
    """Grant financial assistance: a discount, or 100 for a full write-off. Result: balance."""
    request = HardshipRequest(
        program=body.program, discount_percent=body.discount_percent, granted_by=who.name
    )
    return await _act(
        state,
        who,
        "hardship",
        account_number,
        lambda a: starter.grant_hardship(state.client, a, request),
        {"discount_percent": body.discount_percent},
    )


@router.post("/accounts/{account_number}/plan", response_model=ActionOut, responses=ERRORS)
async def plan(account_number: AccountNumber, body: PlanIn, state: State, who: Actor) -> Any:
    """Agree a payment plan; the installments must add up to the balance."""
    try:
        request = PlanRequest(
            installments=[
                Installment(due_on=i.due_on, amount_cents=i.amount_cents) for i in body.installments
            ],
            agreed_by=who.name,
        )
    except ValueError as exc:
        raise HTTPException(422, "installments: due dates must be distinct and in order") from exc
    return await _act(
        state,
        who,
        "plan",
        account_number,
        lambda a: starter.set_payment_plan(state.client, a, request),
        {"installments": len(body.installments)},
    )


@router.post("/accounts/{account_number}/settlement", response_model=ActionOut, responses=ERRORS)
async def settle(
    account_number: AccountNumber, body: SettlementIn, state: State, who: Actor
) -> Any:
    """Offer to close the balance for less; above the staff limit it needs approval."""
    request = SettlementRequest(
        amount_cents=body.amount_cents,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=body.days),
        proposed_by=who.name,
    )
    return await _act(
        state,
        who,
        "settle",
        account_number,
        lambda a: starter.propose_settlement(state.client, a, request),
        {"amount_cents": body.amount_cents},
    )


@router.post("/accounts/{account_number}/write-off", response_model=ActionOut, responses=ERRORS)
async def write_off(
    account_number: AccountNumber, body: WriteOffIn, state: State, who: Actor
) -> Any:
    """Request a write-off; the policy's approvers decide. Result: the task id."""
    request = WriteOffRequest(
        amount_cents=body.amount_cents, reason=body.reason, requested_by=who.name
    )
    return await _act(
        state,
        who,
        "write_off_requested",
        account_number,
        lambda a: starter.request_write_off(state.client, a, request),
        {"amount_cents": body.amount_cents},
    )


@router.post("/accounts/{account_number}/referral", response_model=ActionOut, responses=ERRORS)
async def refer(account_number: AccountNumber, body: ReferralIn, state: State, who: Actor) -> Any:
    """Request an agency referral (refused inside a 501(r) waiting period). Result: task id."""
    request = ReferralRequest(requested_by=who.name, note=body.note)
    return await _act(
        state,
        who,
        "referral_requested",
        account_number,
        lambda a: starter.request_referral(state.client, a, request),
    )


def _task(state: AppState, task_id: uuid.UUID) -> tuple[StaffTask, str]:
    with state.session_factory() as session:
        row = session.execute(
            select(StaffTask, Account.account_number).join(Account).where(StaffTask.id == task_id)
        ).first()
    if row is None:
        raise HTTPException(404, f"task: no task {task_id}")
    return row[0], row[1]


async def _decide(
    state: AppState, who: Principal, task_id: uuid.UUID, decision: Decision, reason: str
) -> Any:
    task, number = _task(state, task_id)
    answer = StepDecision(
        task_id=str(task.id),
        decision=decision,
        decided_by=who.name,
        role=who.role.value,
        reason=reason,
    )
    return await _act(
        state,
        who,
        decision.value,
        number,
        lambda a: starter.decide_step(state.client, a, answer),
        {"task_id": str(task.id)},
    )


@router.post("/tasks/{task_id}/approve", response_model=ActionOut, responses=ERRORS)
async def approve(task_id: uuid.UUID, body: DecisionIn, state: State, who: Decider) -> Any:
    """Approve a task (four eyes: never your own request; the policy names the roles)."""
    return await _decide(state, who, task_id, Decision.APPROVE, body.reason)


@router.post("/tasks/{task_id}/deny", response_model=ActionOut, responses=ERRORS)
async def deny(task_id: uuid.UUID, body: DenyIn, state: State, who: Decider) -> Any:
    """Deny a task, with a reason."""
    return await _decide(state, who, task_id, Decision.DENY, body.reason)


@router.post("/tasks/{task_id}/call-outcome", response_model=ActionOut, responses=ERRORS)
async def call_outcome(task_id: uuid.UUID, body: CallOutcomeIn, state: State, who: Actor) -> Any:
    """Record a call: a conversation blocks calls for 7 days (Reg F)."""
    task, number = _task(state, task_id)
    if task.kind is not TaskKind.CALL:
        raise HTTPException(404, f"task: {task_id} is not a call task")
    try:
        await state.intake.record_call_outcome(
            str(task.id),
            body.result,
            recorded_by=who.name,
            promised_date=body.promised_date,
            promised_cents=body.promised_cents,
        )
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    except CallTaskError as exc:
        return JSONResponse({"detail": str(exc), "kind": "CallTask"}, status_code=409)
    _audit(state, who, "call_outcome", str(task.account_id), {"result": body.result.value})
    return ActionOut(account_number=number, result=body.result.value)
