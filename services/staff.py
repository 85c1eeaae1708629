"""Staff actions, each owned once: hold, resume, hardship, plan, settlement, write-off, referral,
approve and deny.

Every action: resolve the account, store the note (its text stays in PostgreSQL), call the
workflow by method reference, then write the audit row, done or refused. Refusals are
:class:`~services.errors.Refused` with a :class:`~workflows.contract.Rejection`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

import starter
from models.actions import (
    AdjustmentKind,
    ApprovalKind,
    ClosingNoticeRequest,
    ClosingPurpose,
    HardshipRequest,
    HoldReason,
    HoldRequest,
    Installment,
    PlanRequest,
    ReferralRequest,
    ResumeRequest,
    SettlementRequest,
    WriteOffRequest,
)
from models.orm import Account, AccountStatus, StaffTask, TaskKind, TaskStatus
from models.orm.base import new_id
from models.payloads import Decision, StepDecision
from services import agency, audit, ids, notes, protections, write_offs
from services.audit import Outcome
from services.context import AccountRef, Services
from services.errors import Refused
from services.identity import Actor, OverLimit, check_approval_limit, decision_role
from workflows.contract import (
    DecisionResult,
    HardshipResult,
    HoldResult,
    PlanResult,
    Rejection,
    ResumeResult,
    SettlementResult,
    TaskOpened,
)

T = TypeVar("T")

NOT_FOLLOWED = "the balance is no longer followed up (paid, closed or not started)"


def rpc_refusal(exc: RPCError) -> Refused | None:
    """The catalogue entry of an RPC failure that is an expected condition, else None."""
    if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
        return Refused(Rejection.NO_WORKFLOW, NOT_FOLLOWED)
    if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return Refused(Rejection.TEMPORAL_UNREACHABLE, "Temporal did not answer; try again")
    return None


async def refuse(
    svc: Services,
    actor: Actor,
    action: str,
    account_id: uuid.UUID | None,
    refusal: Refused,
    detail: dict[str, Any] | None = None,
) -> Refused:
    """Audit a refusal and hand it back for the caller to raise.

    With an audit limiter (the API), the same refusal repeated by the same actor within its
    window is one row, then a row with the count of those left out.
    """
    if svc.audit_limiter is not None:
        key = f"refused:{actor.id}:{action}:{account_id}:{refusal.kind.value}"
        suppressed = svc.audit_limiter.admit(key)
        if suppressed is None:
            return refusal
        if suppressed:
            detail = {**(detail or {}), "suppressed": suppressed}
    await svc.db(
        lambda s: audit.record(
            s,
            actor,
            action,
            account_id,
            Outcome.REFUSED,
            {**(detail or {}), "kind": refusal.kind.value},
        )
    )
    return refusal


async def call_workflow(
    svc: Services,
    actor: Actor,
    action: str,
    account: AccountRef,
    call: Callable[[Client, str], Awaitable[T]],
    detail: dict[str, Any] | None = None,
    ledger: Callable[[Session, T], None] | None = None,
) -> T:
    """Run one workflow call for an action; audit it done or refused. ``ledger`` records in the
    ledger what the workflow did, in the audit row's transaction."""
    try:
        try:
            result = await call(svc.temporal, account.workflow_account_id)
        except starter.ActionRejected as exc:
            raise Refused(exc.kind, str(exc)) from None
        except RPCError as exc:
            refusal = rpc_refusal(exc)
            if refusal is None:
                raise
            raise refusal from None
    except Refused as exc:
        raise await refuse(svc, actor, action, account.id, exc, detail) from None

    def done(session: Session) -> None:
        if ledger is not None:
            ledger(session, result)
        audit.record(session, actor, action, account.id, Outcome.DONE, detail)

    await svc.db(done)
    return result


async def _account(svc: Services, actor: Actor, action: str, number: str) -> AccountRef:
    try:
        return await svc.account(number)
    except Refused as exc:
        raise await refuse(svc, actor, action, None, exc, {"account_number": number}) from None


async def _note(
    svc: Services, actor: Actor, kind: str, body: str, account: AccountRef
) -> uuid.UUID | None:
    try:
        return await svc.db(lambda s: notes.add(s, actor, kind, body, account_id=account.id))
    except ValueError as exc:
        raise await refuse(
            svc, actor, kind, account.id, Refused(Rejection.INVALID_REQUEST, str(exc))
        ) from None


def _note_detail(note_id: uuid.UUID | None) -> dict[str, Any]:
    return {"note_id": str(note_id)} if note_id else {}


async def hold(
    svc: Services,
    actor: Actor,
    account_number: str,
    reason: HoldReason,
    *,
    until: dt.datetime | None = None,
    note: str = "",
) -> HoldResult:
    """Pause the ladder: a dispute, an itemised-bill request, insurance pending, an application.

    A dispute of a placed account goes to the agency instead (its update file): the agency holds
    collection while it is resolved.
    """
    account = await _account(svc, actor, "hold", account_number)
    note_id = await _note(svc, actor, "hold", note, account)
    if reason is HoldReason.DISPUTE and await svc.db(
        lambda s: agency.tell_agency(
            s, account.id, agency.Change.DISPUTE, f"{account.id}:{uuid.uuid4().hex[:12]}", actor.id
        )
    ):
        agency.write_update_file(svc.session_factory, agency.export_dir(svc.settings))
        detail = {"reason": reason.value, "agency": True, **_note_detail(note_id)}
        await svc.db(lambda s: audit.record(s, actor, "hold", account.id, Outcome.DONE, detail))
        return HoldResult(until=until, agency=True)
    request = HoldRequest(
        reason=reason,
        until=until,
        note_id=str(note_id) if note_id else None,
        requested_by=actor.id,
    )
    return await call_workflow(
        svc,
        actor,
        "hold",
        account,
        lambda c, a: starter.hold(c, a, request),
        {"reason": reason.value, **_note_detail(note_id)},
    )


async def resume(svc: Services, actor: Actor, account_number: str) -> ResumeResult:
    """Lift a hold; the later steps move by the time held."""
    account = await _account(svc, actor, "resume", account_number)
    request = ResumeRequest(requested_by=actor.id)
    return await call_workflow(
        svc, actor, "resume", account, lambda c, a: starter.resume(c, a, request)
    )


async def hardship(
    svc: Services,
    actor: Actor,
    account_number: str,
    discount_percent: int,
    *,
    program: str = "financial-assistance",
) -> HardshipResult:
    """Grant financial assistance: a discount, or 100 for a full write-off."""
    account = await _account(svc, actor, "hardship", account_number)
    request = HardshipRequest(
        program=program, discount_percent=discount_percent, granted_by=actor.id
    )
    reference = f"hardship:{new_id()}"

    def in_ledger(session: Session, result: HardshipResult) -> None:
        write_offs.record(
            session,
            account.id,
            AdjustmentKind.FINANCIAL_ASSISTANCE,
            result.written_off_cents,
            reference,
            actor.id,
        )

    return await call_workflow(
        svc,
        actor,
        "hardship",
        account,
        lambda c, a: starter.grant_hardship(c, a, request),
        {"discount_percent": discount_percent, "program": program},
        in_ledger,
    )


async def plan(
    svc: Services,
    actor: Actor,
    account_number: str,
    installments: list[Installment],
    *,
    monthly_income_cents: int | None = None,
) -> PlanResult:
    """Agree a payment plan; the installments must add up to the balance.

    Where the patient's state or the service state caps a plan at a share of monthly income
    (Colorado, Maryland: ``workflows.state_rules``), no month may ask more, and the household's
    monthly income must be given.
    """
    account = await _account(svc, actor, "plan", account_number)
    try:
        request = PlanRequest(installments=installments, agreed_by=actor.id)
    except ValueError:
        raise await refuse(
            svc,
            actor,
            "plan",
            account.id,
            Refused(
                Rejection.INVALID_REQUEST, "installments: due dates must be distinct and in order"
            ),
        ) from None
    problem = await svc.db(
        lambda s: protections.plan_affordability(s, account.id, installments, monthly_income_cents)
    )
    if problem:
        raise await refuse(
            svc, actor, "plan", account.id, Refused(Rejection.INVALID_REQUEST, problem)
        ) from None
    return await call_workflow(
        svc,
        actor,
        "plan",
        account,
        lambda c, a: starter.set_payment_plan(c, a, request),
        {"installments": len(installments)},
    )


async def settle(
    svc: Services, actor: Actor, account_number: str, amount_cents: int, *, days: int = 14
) -> SettlementResult:
    """Offer to close the balance for less; above the staff limit a second person approves."""
    account = await _account(svc, actor, "settle", account_number)
    request = SettlementRequest(
        amount_cents=amount_cents,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=days),
        proposed_by=actor.id,
    )
    return await call_workflow(
        svc,
        actor,
        "settle",
        account,
        lambda c, a: starter.propose_settlement(c, a, request),
        {"amount_cents": amount_cents, "days": days},
    )


async def write_off(
    svc: Services,
    actor: Actor,
    account_number: str,
    reason: str,
    *,
    amount_cents: int | None = None,
) -> TaskOpened:
    """Request a write-off (its reason is a note); the policy's approvers decide."""
    account = await _account(svc, actor, "write_off_requested", account_number)
    if not reason.strip():
        raise await refuse(
            svc,
            actor,
            "write_off_requested",
            account.id,
            Refused(Rejection.INVALID_REQUEST, "reason: required for a write-off"),
        )
    note_id = await _note(svc, actor, "write_off", reason, account)
    request = WriteOffRequest(
        amount_cents=amount_cents, note_id=str(note_id) if note_id else None, requested_by=actor.id
    )
    opened = await call_workflow(
        svc,
        actor,
        "write_off_requested",
        account,
        lambda c, a: starter.request_write_off(c, a, request),
        {"amount_cents": amount_cents, **_note_detail(note_id)},
    )
    await svc.db(lambda s: notes.link_task(s, note_id, opened.task_id))
    return opened


async def refer(svc: Services, actor: Actor, account_number: str, note: str = "") -> TaskOpened:
    """Request an agency referral (refused inside a 501(r) waiting period)."""
    account = await _account(svc, actor, "referral_requested", account_number)
    note_id = await _note(svc, actor, "referral", note, account)
    request = ReferralRequest(requested_by=actor.id, note_id=str(note_id) if note_id else None)
    opened = await call_workflow(
        svc,
        actor,
        "referral_requested",
        account,
        lambda c, a: starter.request_referral(c, a, request),
        _note_detail(note_id),
    )
    await svc.db(lambda s: notes.link_task(s, note_id, opened.task_id))
    return opened


class TaskRow:
    """What deciding needs of a task, read in one query."""

    def __init__(self, task: StaffTask, account: Account) -> None:
        self.id = task.id
        self.kind = task.kind
        self.status = task.status
        self.approvers = list(task.approvers)
        self.requested_by = task.requested_by
        self.subject = task.step_id or ""
        """The gated step's id, or the kind of staff request (``closing_notice``, ...)."""
        self.account = AccountRef(
            account.id, account.account_number, account.status is AccountStatus.OPEN
        )


async def find_task(svc: Services, actor: Actor, action: str, task_id: str) -> TaskRow:
    """The task with this id or a unique prefix of it, or :class:`Refused`, audited."""
    try:
        key = await ids.task_id(svc, task_id)
    except Refused as exc:
        raise await refuse(svc, actor, action, None, exc, {"task_id": task_id[:40]}) from None

    def load(session: Session) -> TaskRow | None:
        row = session.execute(
            select(StaffTask, Account).join(Account).where(StaffTask.id == key)
        ).first()
        return None if row is None else TaskRow(row[0], row[1])

    found = await svc.db(load)
    if found is None:
        raise await refuse(
            svc,
            actor,
            action,
            None,
            Refused(Rejection.TASK_UNKNOWN, f"task: no task {task_id}"),
            {"task_id": task_id},
        )
    return found


async def decide(
    svc: Services,
    actor: Actor,
    task_id: str,
    decision: Decision,
    reason: str = "",
    *,
    purpose: ClosingPurpose | None = None,
) -> DecisionResult:
    """Approve or deny an approval task as the actor, in the role the task's approvers name.

    Four eyes compares the actor's id with the requester's (in the workflow); the reason is a
    note, so its text stays out of workflow history. Approving a closing notice (after a
    cease-communication request) names its ``purpose``; no other task has one.
    """
    action = decision.value
    task = await find_task(svc, actor, action, task_id)
    detail: dict[str, Any] = {"task_id": str(task.id)}
    if task.kind is not TaskKind.APPROVAL:
        raise await refuse(
            svc,
            actor,
            action,
            task.account.id,
            Refused(Rejection.INVALID_REQUEST, f"task: {task_id} is a {task.kind.value} task"),
            detail,
        )
    if task.status is not TaskStatus.OPEN:
        raise await refuse(
            svc,
            actor,
            action,
            task.account.id,
            Refused(Rejection.TASK_DECIDED, f"task: already {task.status.value}"),
            detail,
        )
    if task.requested_by == actor.id:
        # The workflow refuses this too; said first here, so that no role or limit hides it.
        raise await refuse(
            svc,
            actor,
            action,
            task.account.id,
            Refused(Rejection.FOUR_EYES, "nobody approves their own request (four eyes)"),
            detail,
        )
    role = decision_role(actor, task.approvers)
    if role is None:
        raise await refuse(
            svc,
            actor,
            action,
            task.account.id,
            Refused(
                Rejection.NOT_AN_APPROVER,
                "you hold none of the roles that may decide this task: "
                + ", ".join(task.approvers),
            ),
            detail,
        )
    closing = task.subject == ApprovalKind.CLOSING_NOTICE.value
    problem = None
    if purpose is not None and not closing:
        problem = "purpose: only a closing notice has one"
    elif closing and decision is Decision.APPROVE and purpose is None:
        problem = "purpose: approving a closing notice names what it says: " + ", ".join(
            p.value for p in ClosingPurpose
        )
    if problem:
        raise await refuse(
            svc, actor, action, task.account.id, Refused(Rejection.INVALID_REQUEST, problem), detail
        )
    if purpose is not None:
        detail["purpose"] = purpose.value
    if decision is Decision.DENY and not reason.strip():
        raise await refuse(
            svc,
            actor,
            action,
            task.account.id,
            Refused(Rejection.INVALID_REQUEST, "reason: required to deny"),
            detail,
        )
    account = task.account
    note_id = await svc.db(
        lambda s: notes.add(s, actor, action, reason, account_id=account.id, task_id=task.id)
    )
    answer = StepDecision(
        task_id=str(task.id),
        decision=decision,
        decided_by=actor.id,
        role=role,
        note_id=str(note_id) if note_id else None,
        purpose=purpose,
    )

    async def within_limit(client: Client, account_id: str) -> DecisionResult:
        """Approvals above the role's limit are refused (the roles catalogue's limits)."""
        if decision is Decision.APPROVE:
            state = await starter.get_account(client, account_id)
            open_task = next((t for t in state.tasks if t.task_id == answer.task_id), None)
            if open_task is not None and open_task.requested_by == actor.id:
                # Said before any limit: nobody approves their own request, whatever the amount.
                raise Refused(Rejection.FOUR_EYES, "nobody approves their own request (four eyes)")
            if open_task is not None:
                status = await starter.get_status(client, account_id)
                try:
                    check_approval_limit(actor, open_task, status.balance_cents)
                except OverLimit as exc:
                    raise Refused(Rejection.OVER_LIMIT, str(exc)) from None
        return await starter.decide_step(client, account_id, answer)

    return await call_workflow(
        svc,
        actor,
        action,
        account,
        within_limit,
        {**detail, "role": role, **_note_detail(note_id)},
    )


async def request_closing_notice(svc: Services, actor: Actor, account_number: str) -> TaskOpened:
    """Open the closing-notice task of an account whose patient asked to cease communication.

    A cease request opens it by itself; this is for requests recorded before it did. At most one
    closing notice, ever: asked again once one was sent, denied or expired, it is refused.
    """
    account = await _account(svc, actor, "closing_notice_requested", account_number)
    request = ClosingNoticeRequest(requested_by=actor.id)
    return await call_workflow(
        svc,
        actor,
        "closing_notice_requested",
        account,
        lambda c, a: starter.request_closing_notice(c, a, request),
    )
