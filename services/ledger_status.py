"""Where an account stands, with the ledger's balance: the one balance the practice owns.

The workflow answers the ladder's part (state, next step, what was sent); the ledger answers the
money (balance, credit). An account without a workflow (a credit, a balance never billed) is
answered by the ledger alone; a finished account has no next step.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from models.money import format_cents
from models.orm import (
    Account,
    AccountStatus,
    Payment,
    PolicyVersion,
    StaffTask,
    TaskKind,
    TaskStatus,
)
from models.orm.account import Adjustment, ChargeLine
from models.payloads import BalanceState, StatusView
from models.policy import PolicyRef
from starter import get_status

LEDGER_STATE = {
    AccountStatus.PAID: BalanceState.PAID,
    AccountStatus.CLOSED: BalanceState.PAID,
    AccountStatus.SETTLED: BalanceState.SETTLED,
    AccountStatus.WRITTEN_OFF: BalanceState.WRITTEN_OFF,
    AccountStatus.PLACED: BalanceState.PLACED,
    AccountStatus.STOPPED: BalanceState.STOPPED,
    AccountStatus.ESTATE: BalanceState.DECEASED,
    AccountStatus.RECALLED: BalanceState.RECALLED,
}


@dataclass(frozen=True)
class LedgerAccount:
    account_id: str
    status: AccountStatus
    balance_cents: int
    policy_name: str
    policy_hash: str

    @property
    def credit_cents(self) -> int:
        return max(0, -self.balance_cents)

    @property
    def finished(self) -> bool:
        return self.status is not AccountStatus.OPEN


def ledger_account(session_factory: sessionmaker[Session], account_number: str) -> LedgerAccount:
    """Raises LookupError when there is no such account."""
    with session_factory() as session:
        account = session.scalars(
            select(Account).where(Account.account_number == account_number)
        ).one_or_none()
        if account is None:
            raise LookupError(f"account: no account {account_number!r}")
        policy_hash = session.scalar(
            select(PolicyVersion.hash)
            .where(PolicyVersion.name == account.policy_name)
            .order_by(PolicyVersion.created_at.desc())
            .limit(1)
        )
        return LedgerAccount(
            str(account.id),
            account.status,
            account.balance_cents,
            account.policy_name,
            policy_hash or "0" * 64,
        )


def ledger_view(account: LedgerAccount) -> StatusView:
    """The status of an account no workflow follows, from the ledger alone."""
    if account.balance_cents < 0:
        state = BalanceState.IN_CREDIT
    elif account.status is AccountStatus.OPEN:
        state = BalanceState.PAID if account.balance_cents == 0 else BalanceState.ESCALATING
    else:
        state = LEDGER_STATE[account.status]
    return StatusView(
        account_id=account.account_id,
        state=state,
        balance_cents=account.balance_cents,
        paid_cents=0,
        policy=PolicyRef(name=account.policy_name, hash=account.policy_hash),
        credit_cents=account.credit_cents,
        waiting_for="no ladder runs: the account is in credit" if account.credit_cents else "",
    )


async def account_status(
    session_factory: sessionmaker[Session], client: Client | None, account_number: str
) -> StatusView:
    """The workflow's view with the ledger's balance; the ledger's alone without a workflow.

    Raises:
        LookupError: no such account.
    """
    account = ledger_account(session_factory, account_number)
    if client is None:
        return ledger_view(account)
    try:
        view = await get_status(client, account.account_id)
    except RPCError as exc:
        if exc.status is not RPCStatusCode.NOT_FOUND:
            raise
        return ledger_view(account)
    view.balance_cents = account.balance_cents
    view.credit_cents = account.credit_cents
    if account.status is AccountStatus.RECALLED:  # the ledger knows; the ended workflow cannot
        view.state = BalanceState.RECALLED
    if account.finished or view.state in FINISHED:
        view.next_step, view.waiting_for = None, ""
    if account.credit_cents and view.state in FINISHED:
        view.state = BalanceState.IN_CREDIT if view.state is BalanceState.PAID else view.state
    return view


FINISHED = frozenset(
    {
        BalanceState.PAID,
        BalanceState.SETTLED,
        BalanceState.WRITTEN_OFF,
        BalanceState.PLACED,
        BalanceState.STOPPED,
        BalanceState.DECEASED,
        BalanceState.IN_CREDIT,
        BalanceState.RECALLED,
    }
)


def credits_total(session: Session) -> tuple[int, int]:
    """(accounts, cents) in credit: what the practice owes its patients."""
    row = session.execute(
        select(func.count(), func.coalesce(func.sum(-Account.balance_cents), 0)).where(
            Account.balance_cents < 0
        )
    ).one()
    return int(row[0]), int(row[1])


def open_refund_tasks(session: Session, now: dt.datetime, after_days: int) -> int:
    """Open a refund task for each account in credit since ``after_days`` or more. How many.

    An account's credit is dated by its last ledger movement (a payment, adjustment or charge
    line); an account with an open refund task gets no second one.
    """
    last_moves = [
        select(Payment.account_id.label("account_id"), Payment.created_at.label("at")),
        select(Adjustment.account_id, Adjustment.created_at),
        select(ChargeLine.account_id, ChargeLine.created_at),
    ]
    moves = last_moves[0].union_all(*last_moves[1:]).subquery()
    last = (
        select(moves.c.account_id, func.max(moves.c.at).label("at"))
        .group_by(moves.c.account_id)
        .subquery()
    )
    has_task = (
        select(StaffTask.id)
        .where(
            StaffTask.account_id == Account.id,
            StaffTask.kind == TaskKind.REFUND,
            StaffTask.status == TaskStatus.OPEN,
        )
        .exists()
    )
    due = session.execute(
        select(Account.id, Account.balance_cents)
        .join(last, last.c.account_id == Account.id)
        .where(
            Account.balance_cents < 0,
            last.c.at <= now - dt.timedelta(days=after_days),
            ~has_task,
        )
        .with_for_update(of=Account, skip_locked=True)
    ).all()
    for account_id, balance in due:
        session.add(
            StaffTask(
                account_id=uuid.UUID(str(account_id)),
                kind=TaskKind.REFUND,
                title=f"Refund a credit of {format_cents(-balance)}",
                requested_by="system",
                detail={"credit_cents": -balance},
            )
        )
    return len(due)
