"""Ledger activities: what the workflow writes to PostgreSQL besides messages."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CursorResult, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from models.orm import Account, AccountStatus, AuditEvent, StaffTask, TaskKind, TaskStatus
from models.payloads import CloseApprovalInput, CloseBalanceInput, OpenApprovalInput


class LedgerActivities:
    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._session_factory = session_factory

    @activity.defn(name="close_balance")
    def close_balance(self, inp: CloseBalanceInput) -> None:
        """Mark the account paid once its workflow ends. Idempotent."""
        with self._session_factory.begin() as session:
            account_id = uuid.UUID(inp.account_id)
            result: CursorResult[tuple[()]] = session.execute(  # type: ignore[assignment]
                update(Account)
                .where(Account.id == account_id, Account.status == AccountStatus.OPEN)
                .values(status=AccountStatus.PAID, closed_at=dt.datetime.now(dt.UTC))
            )
            if result.rowcount:
                session.add(
                    AuditEvent(
                        actor="system",
                        action="balance_closed",
                        account_id=account_id,
                        detail={"state": inp.state.value, "balance_cents": inp.balance_cents},
                    )
                )

    @activity.defn(name="open_approval")
    def open_approval(self, inp: OpenApprovalInput) -> str:
        """Create the approval task for a gated step; the same step never gets two open tasks."""
        account_id = uuid.UUID(inp.account_id)
        with self._session_factory.begin() as session:
            existing = (
                session.query(StaffTask)
                .filter_by(
                    account_id=account_id,
                    step_id=inp.step_id,
                    kind=TaskKind.APPROVAL,
                    status=TaskStatus.OPEN,
                )
                .first()
            )
            if existing is not None:
                return str(existing.id)
            task = StaffTask(
                account_id=account_id,
                kind=TaskKind.APPROVAL,
                step_id=inp.step_id,
                title=inp.title,
                approvers=inp.approvers,
                due_at=inp.due_at,
            )
            session.add(task)
            session.flush()
            session.add(
                AuditEvent(
                    actor="system",
                    action="approval_requested",
                    account_id=account_id,
                    detail={"task_id": str(task.id), "step": inp.step_id},
                )
            )
            return str(task.id)

    @activity.defn(name="close_approval")
    def close_approval(self, inp: CloseApprovalInput) -> None:
        """Record the decision (or its absence) on the task. Idempotent."""
        status = {True: TaskStatus.APPROVED, False: TaskStatus.DENIED, None: TaskStatus.EXPIRED}[
            inp.approved
        ]
        with self._session_factory.begin() as session:
            task = session.get(StaffTask, uuid.UUID(inp.task_id))
            if task is None or task.status is not TaskStatus.OPEN:
                return
            task.status = status
            task.decided_by = inp.decided_by or None
            task.reason = inp.reason or None
            task.decided_at = dt.datetime.now(dt.UTC)
            session.add(
                AuditEvent(
                    actor=inp.decided_by or "system",
                    action=f"approval_{status.value}",
                    account_id=task.account_id,
                    detail={"task_id": inp.task_id, "step": task.step_id},
                )
            )
