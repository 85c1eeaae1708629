"""A queued start names its stored policy version instead of carrying the whole policy; the
workflow still starts on exactly that policy, a start queued whole (by an earlier release) is
still delivered, and a start naming a version that is not stored stays queued with its reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.orm import Account, PolicyVersion, SignalOutbox
from models.payloads import EscalationInput
from services.signal_outbox import (
    POLICY_VERSION,
    Dispatcher,
    pending_count,
    start_input_json,
    start_payload,
)
from starter import Intake, workflow_id
from tests.factories import balance_row, instant_policy, midday_zone, policy_in, write_csv

pytestmark = pytest.mark.devserver


def _start_row(session_factory: sessionmaker[Session], number: str) -> SignalOutbox:
    with session_factory() as session:
        return session.scalars(
            select(SignalOutbox)
            .join(Account, Account.id == SignalOutbox.account_id)
            .where(Account.account_number == number, SignalOutbox.start_input.is_not(None))
        ).one()


async def _started_with(client: Client, account_id: str) -> EscalationInput:
    history = await client.get_workflow_handle(workflow_id(account_id)).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    return EscalationInput.model_validate_json(started.input.payloads[0].data)


async def test_a_queued_start_names_its_policy_version_and_starts_on_that_policy(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    policy = policy_in(settings, instant_policy(tmp_path, midday_zone()))
    rows = [balance_row(time_zone=midday_zone(), policy=policy) for _ in range(2)]
    away = Intake(session_factory, None, settings)  # Temporal away: the starts queue
    await away.import_balances(write_csv(tmp_path / "a.csv", rows))
    bundle = away.policy_for(policy)
    named, whole = (_start_row(session_factory, r["account_number"]) for r in rows)
    assert named.start_input is not None and whole.start_input is not None
    assert "policy" not in named.start_input
    assert named.start_input[POLICY_VERSION] == bundle.hash
    with session_factory() as session:
        assert session.get(PolicyVersion, bundle.hash) is not None
    # As an earlier release queued it: the whole policy in the row.
    inp = EscalationInput.model_validate(
        {k: v for k, v in whole.start_input.items() if k != POLICY_VERSION}
        | {"policy": bundle.policy}
    )
    with session_factory.begin() as session:
        session.execute(
            update(SignalOutbox)
            .where(SignalOutbox.id == whole.id)
            .values(start_input=start_input_json(inp))
        )
    rewritten = _start_row(session_factory, rows[1]["account_number"]).start_input
    assert rewritten is not None and POLICY_VERSION not in rewritten and "policy" in rewritten

    ids = [away.account_id(r["account_number"]) for r in rows]
    dispatcher = Dispatcher(dev_env.client, session_factory, settings.temporal.task_queue)
    assert await dispatcher.deliver_many(ids) == 2
    for account_id in ids:
        started = await _started_with(dev_env.client, account_id)
        assert (started.policy, started.policy_hash) == (bundle.policy, bundle.hash)
        assert started.account_id == account_id


async def test_a_start_naming_a_version_that_is_not_stored_stays_queued_with_its_reason(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    policy = policy_in(settings, instant_policy(tmp_path, midday_zone()))
    row = balance_row(time_zone=midday_zone(), policy=policy)
    away = Intake(session_factory, None, settings)
    await away.import_balances(write_csv(tmp_path / "a.csv", [row]))
    queued = _start_row(session_factory, row["account_number"])
    assert queued.start_input is not None
    with session_factory.begin() as session:
        session.execute(
            update(SignalOutbox)
            .where(SignalOutbox.id == queued.id)
            .values(start_input=queued.start_input | {POLICY_VERSION: "f" * 64})
        )
    account_id = away.account_id(row["account_number"])
    dispatcher = Dispatcher(dev_env.client, session_factory, settings.temporal.task_queue)
    assert await dispatcher.deliver_many([account_id]) == 0
    with session_factory() as session:
        assert pending_count(session, account_id) == 1
    failed = _start_row(session_factory, row["account_number"])
    assert failed.delivered_at is None and failed.last_error is not None
    assert f"policy version {'f' * 64} is not stored" in failed.last_error
    with session_factory.begin() as session:  # leave no row behind that names no version
        session.execute(delete(SignalOutbox).where(SignalOutbox.id == queued.id))


def test_the_start_payload_is_the_data_converters_document() -> None:
    from config.loader import load_policy

    bundle = load_policy("physician")
    inp = EscalationInput(account_id="a" * 32, policy=bundle.policy, policy_hash=bundle.hash)
    converter = pydantic_data_converter.payload_converter
    ours = converter.to_payloads([start_payload(inp)])[0]
    theirs = converter.to_payloads([inp])[0]
    assert ours.metadata == theirs.metadata
    assert EscalationInput.model_validate_json(ours.data) == inp
    assert sorted(ours.data) == sorted(theirs.data)  # the same bytes, fields in another order
