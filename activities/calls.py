"""Call tasks: staff record how a call went; the outcome goes back to the balance's workflow.

``send_step`` opens the task (a worklist entry with the script and the account's summary). This
module is the staff side: ``record_call_outcome`` closes the task in the caller's session and
returns the ``record_call_outcome`` signal to send to the workflow once the session committed
(the API or CLI does both). Recording the same outcome twice returns the same signal, so a
double-click or a retried request is harmless; the workflow deduplicates by task id.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from activities.messaging import mark_channel
from models.orm import (
    Account,
    AuditEvent,
    Deliverability,
    Guarantor,
    StaffTask,
    TaskKind,
    TaskStatus,
)
from models.payloads import CallOutcomeSignal, CallResult
from models.policy import Channel


class CallTaskError(ValueError):
    """A call outcome that cannot be recorded; names the task, never the patient."""


def record_call_outcome(
    session: Session,
    task_id: uuid.UUID,
    result: CallResult,
    *,
    called_at: dt.datetime,
    recorded_by: str,
    promised_date: dt.date | None = None,
    promised_cents: int | None = None,
    note: str = "",
) -> CallOutcomeSignal:
    """Close a call task with its outcome. Never commits.

    A wrong number marks the phone undeliverable for calls and texts. A staff note stays in the
    database (the task's reason) and never reaches the signal, which Temporal stores.

    Raises:
        CallTaskError: no such open call task, a different outcome was already recorded, or a
            promise to pay without its date.
    """
    if result is CallResult.PROMISE_TO_PAY and promised_date is None:
        raise CallTaskError("a promise to pay needs the promised date")
    if result is not CallResult.PROMISE_TO_PAY and (promised_date or promised_cents):
        raise CallTaskError("a promised date or amount belongs to a promise to pay")
    if called_at.tzinfo is None:
        raise CallTaskError("called_at needs a time zone")
    task = session.scalars(
        select(StaffTask).where(StaffTask.id == task_id).with_for_update()
    ).one_or_none()
    if task is None or task.kind is not TaskKind.CALL:
        raise CallTaskError(f"call task {task_id} does not exist")
    outcome: dict[str, Any] = {
        "result": result.value,
        "called_at": called_at.isoformat(),
        "promised_date": promised_date.isoformat() if promised_date else None,
        "promised_cents": promised_cents,
    }
    signal = CallOutcomeSignal(
        task_id=str(task.id),
        step_id=task.step_id or "",
        result=result,
        called_at=called_at,
        promised_date=promised_date,
        promised_cents=promised_cents,
        recorded_by=recorded_by,
    )
    if task.status is not TaskStatus.OPEN:
        if task.status is TaskStatus.DONE and task.detail.get("outcome") == outcome:
            return signal.model_copy(update={"recorded_by": task.decided_by or recorded_by})
        raise CallTaskError(f"call task {task_id} is already {task.status.value}")
    task.status = TaskStatus.DONE
    task.decided_by = recorded_by
    task.decided_at = dt.datetime.now(dt.UTC)
    task.reason = note[:500] or None
    task.detail = {**task.detail, "outcome": outcome}
    if result is CallResult.WRONG_NUMBER:
        account = session.scalars(
            select(Account)
            .where(Account.id == task.account_id)
            .options(selectinload(Account.guarantor).selectinload(Guarantor.channels))
        ).one()
        for channel in (Channel.CALL, Channel.SMS):
            mark_channel(
                session,
                account.guarantor,
                channel,
                called_at,
                deliverability=Deliverability.UNDELIVERABLE,
            )
    session.add(
        AuditEvent(
            actor=recorded_by,
            action="call_outcome",
            account_id=task.account_id,
            detail={"task_id": str(task.id), **outcome},
        )
    )
    return signal
