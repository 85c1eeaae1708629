"""Ledger activities: what the workflow writes to PostgreSQL besides messages."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

from sqlalchemy import CursorResult, update
from sqlalchemy.orm import Session, selectinload, sessionmaker
from temporalio import activity

from models.actions import AdjustmentKind, ExportInput, TaskRecordInput
from models.orm import Account, AccountStatus, AuditEvent, StaffTask, TaskKind, TaskStatus
from models.payloads import BalanceState, CloseApprovalInput, CloseBalanceInput, OpenApprovalInput
from services import agency, write_offs
from workflows.contract import ActivityName

ACCOUNT_STATUS = {
    BalanceState.PAID: AccountStatus.PAID,
    BalanceState.SETTLED: AccountStatus.SETTLED,
    BalanceState.WRITTEN_OFF: AccountStatus.WRITTEN_OFF,
    BalanceState.PLACED: AccountStatus.PLACED,
    BalanceState.STOPPED: AccountStatus.STOPPED,
    BalanceState.DECEASED: AccountStatus.ESTATE,
}

LEDGER_BALANCE_KEPT = frozenset(
    {AccountStatus.PAID, AccountStatus.PLACED, AccountStatus.STOPPED, AccountStatus.ESTATE}
)
"""Endings that change no money: the ledger's balance stands (payments after a placement, a
post-petition balance of its own); a write-off or settlement sets what is left."""


class LedgerActivities:
    def __init__(self, session_factory: sessionmaker[Session], export_dir: Path) -> None:
        self._session_factory = session_factory
        self._export_dir = export_dir

    @activity.defn(name=ActivityName.CLOSE_BALANCE)
    def close_balance(self, inp: CloseBalanceInput) -> None:
        """Record how the balance ended once its workflow ends. Idempotent."""
        status = ACCOUNT_STATUS.get(inp.state, AccountStatus.CLOSED)
        with self._session_factory.begin() as session:
            account_id = uuid.UUID(inp.account_id)
            result: CursorResult[tuple[()]] = session.execute(  # type: ignore[assignment]
                update(Account)
                .where(
                    Account.id == account_id,
                    Account.status.in_([AccountStatus.OPEN, AccountStatus.PLACED]),
                )
                .values(
                    status=status,
                    closed_at=dt.datetime.now(dt.UTC),
                    balance_cents=Account.balance_cents
                    if status in LEDGER_BALANCE_KEPT
                    else inp.balance_cents,
                )
            )
            if not result.rowcount:
                return
            session.add(
                AuditEvent(
                    actor="system",
                    action="balance_closed",
                    account_id=account_id,
                    detail={"state": inp.state.value, "balance_cents": inp.balance_cents},
                )
            )
            if status is AccountStatus.ESTATE:
                session.add(
                    StaffTask(
                        account_id=account_id,
                        kind=TaskKind.ESTATE,
                        title="Deceased guarantor: send to the estate queue",
                    )
                )

    @activity.defn(name=ActivityName.OPEN_APPROVAL)
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

    @activity.defn(name=ActivityName.ESCALATE_APPROVAL)
    def escalate_approval(self, inp: TaskRecordInput) -> None:
        """Nobody decided in time: the next approver may now decide too."""
        with self._session_factory.begin() as session:
            task = session.get(StaffTask, uuid.UUID(inp.task_id))
            if task is None or task.status is not TaskStatus.OPEN:
                return
            task.approvers = list(inp.approvers)
            task.due_at = inp.due_at
            session.add(
                AuditEvent(
                    actor="system",
                    action="approval_escalated",
                    account_id=task.account_id,
                    detail={"task_id": inp.task_id, "approvers": inp.approvers},
                )
            )

    @activity.defn(name=ActivityName.CLOSE_APPROVAL)
    def close_approval(self, inp: CloseApprovalInput) -> None:
        """Record the decision (or its absence) on the task. Idempotent."""
        status = {True: TaskStatus.APPROVED, False: TaskStatus.DENIED, None: TaskStatus.EXPIRED}[
            inp.approved
        ]
        with self._session_factory.begin() as session:
            task = session.get(StaffTask, uuid.UUID(inp.task_id))
            if task is None or task.status is not TaskStatus.OPEN:
                return
            if inp.written_off_cents:
                write_offs.record(
                    session,
                    task.account_id,
                    AdjustmentKind.WRITE_OFF,
                    inp.written_off_cents,
                    f"write-off:{inp.task_id}",
                    inp.decided_by or "system",
                )
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

    @activity.defn(name=ActivityName.PLACE_WITH_AGENCY)
    def place_with_agency(self, inp: ExportInput) -> str:
        """Export the account in the day's placement file an agency loads, and mark it placed.

        Idempotent: an account already placed is not exported twice. Returns the file's path.
        """
        account_id = uuid.UUID(inp.account_id)
        today = dt.datetime.now(dt.UTC).date()
        path = self._export_dir / f"placements-{today.isoformat()}.csv"
        with self._session_factory.begin() as session:
            account = (
                session.query(Account)
                .options(selectinload(Account.guarantor))
                .filter(Account.id == account_id)
                .with_for_update()
                .one()
            )
            if account.status is AccountStatus.PLACED:
                return str(path)
            account.placed_at = dt.datetime.now(dt.UTC)
            row = agency.placement_row(session, account, inp.balance_cents, today, inp.approved_by)
            agency.write_csv(path, agency.PLACEMENT_COLUMNS, [row], append=True)
            account.status = AccountStatus.PLACED
            session.add(
                AuditEvent(
                    actor=inp.approved_by,
                    action="placed_with_agency",
                    account_id=account_id,
                    detail={"file": path.name},
                )
            )
        return str(path)
