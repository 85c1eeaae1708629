"""The signal outbox delivers a batch of accounts at once, in order per account, and a batch
sent again after a crash before it was marked changes nothing (the workflow deduplicates)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.orm import Account, SignalOutbox
from services.signal_outbox import DELIVERED, Dispatcher, pending_count
from starter import Intake, get_status, workflow_id
from tests.factories import balance_row, instant_policy, midday_zone, policy_in, write_csv
from tests.support.waits import eventually
from worker import build_worker

pytestmark = pytest.mark.devserver


async def test_a_batch_is_delivered_in_order_and_a_repeated_batch_changes_nothing(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    client = dev_env.client
    policy = policy_in(settings, instant_policy(tmp_path, midday_zone()))
    rows = [
        balance_row(time_zone=midday_zone(), policy=policy) for _ in range(3)
    ]  # 55.00 owed each
    away = Intake(session_factory, None, settings)  # Temporal away: everything queues
    await away.import_balances(write_csv(tmp_path / "a.csv", rows))
    for row in rows:
        posted = await away.post_payment_fact(row["account_number"], 1000, f"P-{row['charge_ref']}")
        assert (posted.balance_cents, posted.delivered) == (4500, False)
    ids = [away.account_id(r["account_number"]) for r in rows]
    with session_factory() as session:
        assert [pending_count(session, a) for a in ids] == [2, 2, 2]  # start, then payment

    dispatcher = Dispatcher(client, session_factory, settings.temporal.task_queue)
    async with build_worker(client, settings, session_factory):
        assert await dispatcher.deliver_many(ids) == 3
        with session_factory() as session:
            outcomes = session.execute(
                select(SignalOutbox.outcome, SignalOutbox.attempts)
                .join(Account, Account.id == SignalOutbox.account_id)
                .where(Account.account_number.in_([r["account_number"] for r in rows]))
            ).all()
        assert sorted(outcomes) == [(DELIVERED, 1)] * 6

        async def heard() -> bool:
            views = [await get_status(client, a) for a in ids]
            return all((v.balance_cents, v.paid_cents) == (4500, 1000) for v in views)

        assert await eventually(heard)
        runs = [(await client.get_workflow_handle(workflow_id(a)).describe()).run_id for a in ids]

        # A crash after sending and before marking: the whole batch is sent again.
        with session_factory.begin() as session:
            session.execute(
                update(SignalOutbox)
                .where(
                    SignalOutbox.account_id.in_(
                        select(Account.id).where(
                            Account.account_number.in_([r["account_number"] for r in rows])
                        )
                    )
                )
                .values(delivered_at=None)
            )
        assert await dispatcher.deliver_many(ids) == 3
        with session_factory() as session:
            assert [pending_count(session, a) for a in ids] == [0, 0, 0]
        for account_id, run in zip(ids, runs, strict=True):
            view = await get_status(client, account_id)
            assert (view.balance_cents, view.paid_cents) == (4500, 1000)  # paid once
            described = await client.get_workflow_handle(workflow_id(account_id)).describe()
            assert described.run_id == run  # joined, not started again
