"""Worklist tasks about reaching the patient: a corrected address, or finding the patient at all.

Opened and closed by the escalation workflow (``sync_contact_task``): a returned letter or a
letter-only step that waited its limit opens an ``address`` task; an account with no usable
channel opens a ``locate`` task. Idempotent: one open task per account and kind; closing closes
them all. Tasks name the account and the step, never the address or the number.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from models.orm import Account, AuditEvent, StaffTask, TaskKind, TaskStatus
from models.payloads import ContactTaskInput

TITLES = {
    TaskKind.ADDRESS: "Find a corrected address for account {number}",
    TaskKind.LOCATE: "Locate the patient of account {number}: no usable address, phone or email",
}


class ContactTaskActivities:
    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._session_factory = session_factory

    @activity.defn(name="sync_contact_task")
    def sync_contact_task(self, inp: ContactTaskInput) -> str:
        """The open task's id after the call (empty when closed)."""
        kind = TaskKind(inp.kind)
        account_id = uuid.UUID(inp.account_id)
        with self._session_factory.begin() as session:
            open_tasks = list(
                session.scalars(
                    select(StaffTask)
                    .where(
                        StaffTask.account_id == account_id,
                        StaffTask.kind == kind,
                        StaffTask.status == TaskStatus.OPEN,
                    )
                    .with_for_update()
                )
            )
            if not inp.open:
                for task in open_tasks:
                    task.status = TaskStatus.DONE
                    task.decided_at = dt.datetime.now(dt.UTC)
                    task.decided_by = "system"
                if open_tasks:
                    session.add(_audit(account_id, f"{kind.value}_task_closed", inp))
                return ""
            if open_tasks:
                return str(open_tasks[0].id)
            account = session.get(Account, account_id)
            number = account.account_number if account is not None else inp.account_id
            task = StaffTask(
                account_id=account_id,
                kind=kind,
                step_id=inp.step_id or None,
                title=TITLES[kind].format(number=number),
                detail={"reason": inp.reason, "step": inp.step_id},
            )
            session.add(task)
            session.add(_audit(account_id, f"{kind.value}_task_opened", inp))
            session.flush()
            return str(task.id)


def _audit(account_id: uuid.UUID, action: str, inp: ContactTaskInput) -> AuditEvent:
    return AuditEvent(
        actor="system",
        action=action,
        account_id=account_id,
        detail={"step": inp.step_id, "reason": inp.reason},
    )
