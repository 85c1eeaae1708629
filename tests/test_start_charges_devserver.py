"""A new balance starts with its first charges in the workflow's input: one plain start, no
signal-with-start per charge (a signal-with-start costs the server about a fifth more). A balance
whose ladder runs gets each new charge as a signal-with-start, as before."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.orm import SignalOutbox
from services.signal_outbox import DELIVERED
from starter import Intake, get_status, workflow_id
from tests.factories import balance_row, instant_policy, midday_zone, policy_in, write_csv
from tests.support.waits import eventually
from worker import build_worker

pytestmark = pytest.mark.devserver


def _starts(session_factory: sessionmaker[Session], account_id: str) -> list[tuple[int, bool]]:
    """Each queued message of the account: how many charges its start input carries, and
    whether it is a start at all."""
    with session_factory() as session:
        rows = session.execute(
            select(SignalOutbox.start_input, SignalOutbox.outcome)
            .where(SignalOutbox.account_id == account_id)
            .order_by(SignalOutbox.id)
        ).all()
    assert all(outcome == DELIVERED for _, outcome in rows)
    return [(len((start or {}).get("charges", [])), start is not None) for start, _ in rows]


async def test_a_new_balance_starts_with_its_charges_and_a_running_one_takes_signals(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    client = dev_env.client
    zone = midday_zone()
    policy = policy_in(settings, instant_policy(tmp_path, zone))
    first = balance_row(time_zone=zone, policy=policy)  # 55.00 owed
    second = {**first, "charge_ref": first["charge_ref"] + "-2", "service_date": "2026-10-02"}
    intake = Intake(session_factory, client, settings)
    report = await intake.import_balances(write_csv(tmp_path / "a.csv", [first, second]))
    assert (report.accounts, report.new_charges, report.started_or_joined) == (1, 2, 1)
    account_id = intake.account_id(first["account_number"])
    assert _starts(session_factory, account_id) == [(2, True)]  # one start, both charges in it

    handle = client.get_workflow_handle(workflow_id(account_id))
    events = [e.event_type for e in (await handle.fetch_history()).events]
    assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED not in events

    async with build_worker(client, settings, session_factory):

        async def owed(cents: int) -> bool:
            return (await get_status(client, account_id)).balance_cents == cents

        assert await eventually(lambda: owed(11000))

        # The ladder runs: a later visit joins it as a signal-with-start.
        third = {**first, "charge_ref": first["charge_ref"] + "-3", "service_date": "2026-10-03"}
        report = await intake.import_balances(write_csv(tmp_path / "b.csv", [third]))
        assert (report.new_charges, report.started_or_joined) == (1, 1)
        assert _starts(session_factory, account_id) == [(2, True), (0, True)]
        assert await eventually(lambda: owed(16500))
    events = [e.event_type for e in (await handle.fetch_history()).events]
    assert events.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) == 1
