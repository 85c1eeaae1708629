"""Read-only use cases: the worklist, one account's status and actions, aging.

The database is read in a worker thread (never on the event loop ``dunning run`` shares with the
worker); the workflow by typed queries.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

import starter
from models.actions import AccountState
from models.orm import Account, StaffNote, StaffTask, TaskStatus
from models.orm import repositories as repo
from models.payloads import StatusView
from services import ledger_status, timeline
from services.context import Services
from services.errors import Refused
from services.identity import Actor
from services.staff import rpc_refusal
from workflows.contract import Rejection


class NoteView(BaseModel):
    kind: str
    body: str
    author: str
    at: dt.datetime


class TaskView(BaseModel):
    """One line of the worklist."""

    task_id: str
    account_number: str
    kind: str
    title: str
    approvers: list[str]
    due_at: dt.datetime | None = None
    status: str
    requested_by: str
    notes: list[NoteView] = []


class AccountView(BaseModel):
    """Where a balance stands and what staff and facts did to it."""

    account_number: str
    status: StatusView
    actions: AccountState
    temporal_unreachable: bool = False
    """Temporal did not answer: the ledger's view alone (balance, credit, state), no timeline."""


async def worklist(svc: Services, actor: Actor, *, all_tasks: bool = False) -> list[TaskView]:
    """Open approval, call and estate tasks, oldest first (``all_tasks``: decided ones too)."""

    def load(session: Session) -> list[TaskView]:
        query = (
            select(StaffTask, Account.account_number).join(Account).order_by(StaffTask.created_at)
        )
        if not all_tasks:
            query = query.where(StaffTask.status == TaskStatus.OPEN)
        rows = session.execute(query).all()
        ids = [t.id for t, _ in rows]
        by_task: dict[object, list[NoteView]] = defaultdict(list)
        if ids:
            for note in session.scalars(
                select(StaffNote).where(StaffNote.task_id.in_(ids)).order_by(StaffNote.created_at)
            ):
                by_task[note.task_id].append(
                    NoteView(kind=note.kind, body=note.body, author=note.author, at=note.created_at)
                )
        return [
            TaskView(
                task_id=str(t.id),
                account_number=n,
                kind=t.kind.value,
                title=t.title,
                approvers=list(t.approvers),
                due_at=t.due_at,
                status=t.status.value,
                requested_by=t.requested_by,
                notes=by_task.get(t.id, []),
            )
            for t, n in rows
        ]

    return await svc.db(load)


async def account_status(svc: Services, actor: Actor, account_number: str) -> AccountView:
    """Where a balance stands: the workflow's view with the ledger's balance and credit.

    An account no workflow follows (in credit, paid, never billed) is answered by the ledger
    alone, with no next step.
    """
    account = await svc.account(account_number)
    if svc.client is None:
        # Temporal away is no reason to hide what the ledger knows: its view, said as such.
        alone = await ledger_status.account_status(svc.session_factory, None, account_number)
        view = AccountView(
            account_number=account.number,
            status=alone,
            actions=AccountState(),
            temporal_unreachable=True,
        )
        return await _with_ledger(svc, view)
    client = svc.client
    try:
        status = await ledger_status.account_status(svc.session_factory, client, account_number)
        actions = await _actions_if_any(client, account.workflow_account_id)
    except LookupError as exc:
        raise Refused(Rejection.ACCOUNT_UNKNOWN, str(exc)) from None
    except RPCError as exc:
        refusal = rpc_refusal(exc)
        if refusal is None:
            raise
        raise refusal from None
    view = AccountView(account_number=account.number, status=status, actions=actions)
    return await _with_ledger(svc, view)


async def _with_ledger(svc: Services, view: AccountView) -> AccountView:
    """Payments, adjustments, credits and write-offs on the timeline, every amount in dollars."""
    entries = await svc.db(lambda s: timeline.ledger_entries(s, view.account_number))
    entries += timeline.written_off(view.actions, ledger=entries)
    view.status.ledger = sorted(entries, key=lambda e: e.at)
    view.actions = timeline.in_dollars(view.actions)
    return view


async def _actions_if_any(client: Client, account_id: str) -> AccountState:
    """The workflow's events of a finished or never-started balance; none when it never ran."""
    try:
        return await starter.get_account(client, account_id)
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            return AccountState()
        raise


async def unreachable(svc: Services, actor: Actor) -> tuple[int, int]:
    """Open accounts parked as unreachable (a locate task open) and what they owe (cents)."""
    return await svc.db(repo.unreachable_receivables)


async def credits(svc: Services, actor: Actor) -> tuple[int, int]:
    """Accounts in credit and what they are owed in total (cents, positive): never receivable."""
    return await svc.db(ledger_status.credits_total)


async def aging(svc: Services, actor: Actor) -> dict[str, int]:
    """Open receivables in cents by age: 0-30, 31-60, 61-90, 91-120, 120+ days."""
    return await svc.db(lambda s: repo.aging(s, dt.datetime.now(dt.UTC)))
