"""Credits on the real dev server: overpaid, never dunned, netted, shown, and refunded."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.orm import Account, AccountStatus, StaffTask, TaskKind, TaskStatus
from models.payloads import BalanceState, StepOutcome
from services.ledger_status import account_status, credits_total, open_refund_tasks
from starter import Intake, get_status, workflow_id
from tests.factories import balance_row, instant_policy, midday_zone, policy_in, write_csv
from tests.support.waits import eventually
from worker import build_worker

pytestmark = pytest.mark.devserver


async def test_overpaid_account_is_in_credit_and_new_charges_net_first(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    client = dev_env.client
    intake = Intake(session_factory, client, settings)
    row = balance_row(
        time_zone=midday_zone(), policy=policy_in(settings, instant_policy(tmp_path, midday_zone()))
    )  # 55.00
    number = row["account_number"]
    async with build_worker(client, settings, session_factory):
        await intake.import_balances(write_csv(tmp_path / "a.csv", [row]))
        account_id = intake.account_id(number)

        async def statement_sent() -> bool:
            view = await get_status(client, account_id)
            return any(r.step_id == "statement-1" for r in view.history)

        await eventually(statement_sent)
        # Paid 80.00 on 55.00 owed: the ladder ends, 25.00 is owed to the patient.
        posted = await intake.post_payment_fact(number, 8000, f"OVER-{row['charge_ref']}")
        assert (posted.balance_cents, posted.credit_cents, posted.delivered) == (-2500, 2500, True)
        handle = client.get_workflow_handle(workflow_id(account_id))
        await handle.result()

        async def closed() -> bool:
            with session_factory() as session:
                account = session.get(Account, handle_account(session, number))
                return account is not None and account.status is AccountStatus.PAID

        await eventually(closed)
        view = await account_status(session_factory, client, number)
        assert view.state is BalanceState.IN_CREDIT and view.credit_cents == 2500
        assert view.next_step is None and view.waiting_for == ""  # finished: no next step

        # A 20.00 charge nets against the credit: no new ladder, no statement.
        first_run = (await handle.describe()).run_id
        small = dict(row, charge_ref=f"{row['charge_ref']}-2", charges="20.00")
        small.update(insurance_paid="0", insurance_adjustment="0", service_date="2026-11-02")
        await intake.import_balances(write_csv(tmp_path / "b.csv", [small]))
        assert (await handle.describe()).run_id == first_run
        view = await account_status(session_factory, client, number)
        assert (view.balance_cents, view.credit_cents) == (-500, 500)

        # A 50.00 charge: 45.00 is owed and only 45.00 is dunned, on a new run.
        big = dict(small, charge_ref=f"{row['charge_ref']}-3", charges="50.00")
        await intake.import_balances(write_csv(tmp_path / "c.csv", [big]))
        new_run = await client.get_workflow_handle(workflow_id(account_id)).describe()
        assert new_run.run_id != first_run and new_run.status is WorkflowExecutionStatus.RUNNING

        async def second_statement() -> object:
            view = await get_status(client, account_id)
            sent = [r for r in view.history if r.outcome is StepOutcome.SENT]
            return view if sent and view.balance_cents == 4500 else None

        assert await eventually(second_statement)
        view = await account_status(session_factory, client, number)
        assert (view.balance_cents, view.credit_cents) == (4500, 0)


def handle_account(session: Session, number: str) -> object:
    return session.scalars(select(Account.id).where(Account.account_number == number)).one()


async def test_credits_show_in_aging_and_open_a_refund_task_after_the_period(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    intake = Intake(session_factory, None, settings)
    row = balance_row(charges="100.00", insurance_paid="130.00", insurance_adjustment="0")
    await intake.import_balances(write_csv(tmp_path / "a.csv", [row]))
    view = await account_status(session_factory, None, row["account_number"])
    assert view.state is BalanceState.IN_CREDIT and view.credit_cents == 3000
    with session_factory() as session:
        accounts, cents = credits_total(session)
    assert accounts >= 1 and cents >= 3000
    now = dt.datetime.now(dt.UTC)
    with session_factory.begin() as session:
        # Inside the refund period nothing opens; past it, one task, and only one.
        assert open_refund_tasks(session, now, after_days=30) == 0
    with session_factory.begin() as session:
        assert open_refund_tasks(session, now + dt.timedelta(days=31), after_days=30) >= 1
    with session_factory.begin() as session:
        assert open_refund_tasks(session, now + dt.timedelta(days=31), after_days=30) == 0
    with session_factory() as session:
        tasks = session.scalars(
            select(StaffTask)
            .join(Account)
            .where(
                Account.account_number == row["account_number"], StaffTask.kind == TaskKind.REFUND
            )
        ).all()
    assert [(t.status, t.detail["credit_cents"]) for t in tasks] == [(TaskStatus.OPEN, 3000)]
