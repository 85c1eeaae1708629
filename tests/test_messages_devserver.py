"""Signals and concurrency on the real Temporal dev server (real time, real PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.orm import Account, AccountStatus, Communication, Payment
from models.payloads import BalanceState, EscalationResult, PaymentSignal, StepOutcome
from starter import Intake, get_status, signal_payment, workflow_id
from tests.factories import balance_row, instant_policy, midday_zone, policy_in, write_csv
from tests.support.waits import eventually
from worker import build_worker

pytestmark = pytest.mark.devserver


@pytest.fixture
def zone() -> str:
    return midday_zone()


@pytest.fixture
def policy_path(tmp_path: Path, zone: str) -> str:
    return str(instant_policy(tmp_path, zone))


async def test_payment_duplicate_and_new_charge(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    zone: str,
    policy_path: str,
) -> None:
    client = dev_env.client
    intake = Intake(session_factory, client, settings)
    row = balance_row(time_zone=zone, policy=policy_in(settings, Path(policy_path)))  # $55.00
    async with build_worker(client, settings, session_factory):
        await intake.import_balances(write_csv(tmp_path / "a.csv", [row]))
        account_id = intake.account_id(row["account_number"])

        async def statement_sent() -> bool:
            view = await get_status(client, account_id)
            return any(
                r.step_id == "statement-1" and r.outcome is StepOutcome.SENT for r in view.history
            )

        await eventually(statement_sent)

        # A payment lowers the balance; the same reference again changes nothing, whether it
        # comes through the ledger or straight to the workflow.
        new, balance = await intake.post_payment(row["account_number"], 2000, "PAY-DUP-1")
        assert (new, balance) == (True, 3500)
        new, balance = await intake.post_payment(row["account_number"], 2000, "PAY-DUP-1")
        assert (new, balance) == (False, 3500)
        await signal_payment(
            client, account_id, PaymentSignal(reference="PAY-DUP-1", amount_cents=2000)
        )
        view = await get_status(client, account_id)
        assert (view.balance_cents, view.paid_cents) == (3500, 2000)

        # A new charge for the same account joins the open workflow: same run, higher balance.
        run_id = (await client.get_workflow_handle(workflow_id(account_id)).describe()).run_id
        second = dict(
            row,
            charge_ref=row["charge_ref"] + "-2",
            charges="30.00",
            insurance_paid="0",
            insurance_adjustment="0",
            service_date="2026-11-02",
        )
        report = await intake.import_balances(write_csv(tmp_path / "b.csv", [row, second]))
        assert report.new_charges == 1
        desc = await client.get_workflow_handle(workflow_id(account_id)).describe()
        assert desc.run_id == run_id and desc.status is WorkflowExecutionStatus.RUNNING
        view = await get_status(client, account_id)
        assert view.balance_cents == 6500 and view.state is BalanceState.ESCALATING
        ids = [
            w.id async for w in client.list_workflows(f"WorkflowId = '{workflow_id(account_id)}'")
        ]
        assert ids == [workflow_id(account_id)]

        # Paying the rest ends the escalation and closes the account in the ledger.
        new, balance = await intake.post_payment(row["account_number"], 6500, "PAY-DUP-2")
        assert (new, balance) == (True, 0)
        result = await client.get_workflow_handle(
            workflow_id(account_id), result_type=EscalationResult
        ).result()
        assert result.state is BalanceState.PAID and result.balance_cents == 0
    with session_factory() as session:
        account = session.scalars(
            select(Account).where(Account.account_number == row["account_number"])
        ).one()
        assert account.status is AccountStatus.PAID and account.balance_cents == 0
        assert (
            session.scalar(
                select(func.count()).select_from(Payment).where(Payment.account_id == account.id)
            )
            == 2
        )


async def test_many_balances_at_once_each_sent_exactly_once(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    zone: str,
    policy_path: str,
) -> None:
    client = dev_env.client
    intake = Intake(session_factory, client, settings)
    policy = policy_in(settings, Path(policy_path))
    rows = [balance_row(time_zone=zone, policy=policy) for _ in range(25)]
    async with build_worker(client, settings, session_factory):
        await intake.import_balances(write_csv(tmp_path / "many.csv", rows))
        ids = [intake.account_id(r["account_number"]) for r in rows]

        async def all_sent() -> bool:
            views = await asyncio.gather(*(get_status(client, i) for i in ids))
            return all(any(r.outcome is StepOutcome.SENT for r in v.history) for v in views)

        await eventually(all_sent, timeout=60)
        # Concurrent duplicate signals: each payment counted once per workflow.
        await asyncio.gather(
            *(
                signal_payment(client, i, PaymentSignal(reference=f"P-{n}", amount_cents=1000))
                for i in ids
                for n in (1, 1, 2, 2)
            )
        )
        views = await asyncio.gather(*(get_status(client, i) for i in ids))
        assert {v.paid_cents for v in views} == {2000}
        assert {v.balance_cents for v in views} == {3500}
        await asyncio.gather(
            *(
                signal_payment(client, i, PaymentSignal(reference="P-final", amount_cents=3500))
                for i in ids
            )
        )
        results = await asyncio.gather(
            *(
                client.get_workflow_handle(workflow_id(i), result_type=EscalationResult).result()
                for i in ids
            )
        )
        assert {r.state for r in results} == {BalanceState.PAID}
    with session_factory() as session:
        per_account = session.execute(
            select(Communication.account_id, func.count())
            .where(
                Communication.step_id == "statement-1",
                Communication.account_id.in_([uuid.UUID(i) for i in ids]),
            )
            .group_by(Communication.account_id)
        ).all()
        assert len(per_account) == 25 and {n for _, n in per_account} == {1}
