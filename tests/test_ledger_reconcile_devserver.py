"""Reconciliation: each kind of drift is caused, found, recorded and repaired."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import ScheduleActionStartWorkflow, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.reconcile import ensure_schedule
from config.settings import Settings
from models.orm import Account, AccountStatus, DriftRecord, SignalOutbox
from models.orm import repositories as repo
from models.payloads import ChargeSignal
from services.reconcile import Reconciler
from starter import Intake, get_status, workflow_id
from tests.factories import balance_row, instant_policy, midday_zone, policy_in, write_csv
from tests.support.waits import eventually
from worker import build_worker

pytestmark = pytest.mark.devserver


async def test_each_drift_is_found_and_repaired(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    client = dev_env.client
    policy = policy_in(settings, instant_policy(tmp_path, midday_zone()))
    rows = [balance_row(time_zone=midday_zone(), policy=policy) for _ in range(3)]  # 55.00 each
    lost_payment, lost_start, closed = (r["account_number"] for r in rows)
    online = Intake(session_factory, client, settings)
    async with build_worker(client, settings, session_factory):
        await online.import_balances(write_csv(tmp_path / "a.csv", [rows[0], rows[2]]))
        # The start of this one never reached Temporal and its message was lost.
        await Intake(session_factory, None, settings).import_balances(
            write_csv(tmp_path / "b.csv", [rows[1]])
        )
        ids = {n: uuid.UUID(online.account_id(n)) for n in (lost_payment, lost_start, closed)}
        with session_factory.begin() as session:
            session.execute(delete(SignalOutbox).where(SignalOutbox.account_id == ids[lost_start]))
            # A payment in the ledger whose signal was lost.
            account = repo.account_by_number(session, lost_payment)
            assert account is not None
            repo.record_payment(
                session, account, f"LOST-{uuid.uuid4().hex[:8]}", 2000, dt.datetime.now(dt.UTC)
            )
            # An account closed in the ledger while its workflow still runs.
            session.execute(
                update(Account)
                .where(Account.id == ids[closed])
                .values(status=AccountStatus.PAID, balance_cents=0)
            )
        # A workflow for no account at all.
        stray = uuid.uuid4()
        reconciler = Reconciler(session_factory, client, settings)
        with session_factory.begin() as session:
            real = reconciler.escalation_input(session, ids[lost_payment])
        await client.start_workflow(
            "balance-escalation",
            real.model_copy(update={"account_id": str(stray)}),
            id=workflow_id(str(stray)),
            task_queue=settings.temporal.task_queue,
            start_signal="add_charge",
            start_signal_args=[ChargeSignal(reference="STRAY-1", amount_cents=1000)],
        )
        scope = [*ids.values(), stray]

        found = await reconciler.run(fix=False, accounts=scope)
        kinds = {
            (d.kind, d.account_id, d.ledger_cents, d.workflow_cents) for d in found.drifts or []
        }
        assert kinds == {
            ("balance", str(ids[lost_payment]), 3500, 5500),
            ("missing_workflow", str(ids[lost_start]), 5500, None),
            ("orphan_workflow", str(ids[closed]), 0, 5500),
            ("unknown_account", None, None, None),
        }
        assert not any(d.repaired for d in found.drifts or [])
        assert found.pruned is None  # a report only: nothing deleted

        # The closed account's delivered start is past the retention: the repairing pass prunes it.
        aged = dt.datetime.now(dt.UTC) - dt.timedelta(days=settings.ledger.retention_days + 1)
        with session_factory.begin() as session:
            old_rows = session.scalars(
                update(SignalOutbox)
                .where(
                    SignalOutbox.account_id == ids[closed], SignalOutbox.delivered_at.is_not(None)
                )
                .values(delivered_at=aged)
                .returning(SignalOutbox.id)
            ).all()
        assert old_rows

        fixed = await reconciler.run(fix=True, accounts=scope)
        assert fixed.pruned is not None and fixed.pruned.signal_outbox >= len(old_rows)
        with session_factory() as session:
            assert not session.scalars(
                select(SignalOutbox.id).where(SignalOutbox.id.in_(old_rows))
            ).all()
        assert {d.kind for d in fixed.drifts or [] if d.repaired} == {
            "balance",
            "missing_workflow",
            "orphan_workflow",
            "unknown_account",
        }
        assert (await get_status(client, str(ids[lost_payment]))).balance_cents == 3500
        assert (await get_status(client, str(ids[lost_start]))).balance_cents == 5500
        closed_handle = client.get_workflow_handle(workflow_id(str(ids[closed])))

        async def ended() -> bool:
            described = await closed_handle.describe()
            return described.status is WorkflowExecutionStatus.COMPLETED

        await eventually(ended)
        stray_state = await client.get_workflow_handle(workflow_id(str(stray))).describe()
        assert stray_state.status is WorkflowExecutionStatus.TERMINATED

        # Nothing drifts any more, and what drifted is on record.
        again = await reconciler.run(fix=False, accounts=scope)
        assert again.drifts == []
        with session_factory() as session:
            recorded = session.scalars(
                select(DriftRecord.kind).where(DriftRecord.account_id.in_(list(ids.values())))
            ).all()
        assert sorted(recorded).count("balance") == 2  # found, then found and repaired


async def test_the_reconcile_schedule_runs_daily(
    dev_env: WorkflowEnvironment, settings: Settings
) -> None:
    await ensure_schedule(dev_env.client, settings, run_now=False)
    await ensure_schedule(dev_env.client, settings, run_now=False)  # idempotent
    handle = dev_env.client.get_schedule_handle(f"dunning-reconcile-{settings.temporal.task_queue}")
    described = await handle.describe()
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == "ledger-reconcile"
    assert [i.every for i in described.schedule.spec.intervals] == [dt.timedelta(hours=24)]
    await handle.delete()
