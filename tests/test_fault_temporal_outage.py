"""Fault: Temporal stopped while payments are posted, then restarted.

Every payment is committed in the ledger with its signal in the outbox; the API answers 202 with
the ledger's result instead of failing; when Temporal returns the dispatcher delivers every
payment to its workflow, in order, once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from config.settings import Settings
from embedded.temporal import DEV_SERVER_STARTUP_TIMEOUT, dev_server_path, free_port
from models.orm import ApiRole
from services.signal_outbox import Dispatcher, pending_count
from starter import Intake, get_status, workflow_id
from tests.api_support import make_tokens
from tests.factories import balance_row, instant_policy, midday_zone, policy_in, write_csv
from tests.support.waits import eventually
from worker import build_worker

pytestmark = pytest.mark.devserver


@asynccontextmanager
async def temporal(db_file: Path, port: int) -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=dev_server_path(),
        dev_server_database_filename=str(db_file),
        port=port,
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
        dev_server_startup_timeout=DEV_SERVER_STARTUP_TIMEOUT,
    )
    try:
        yield env
    finally:
        await env.shutdown()


async def test_payments_posted_while_temporal_is_down_reach_their_workflows(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    policy = policy_in(settings, instant_policy(tmp_path, midday_zone()))
    rows = [balance_row(time_zone=midday_zone(), policy=policy) for _ in range(3)]  # 55.00 each
    db_file, port = tmp_path / "temporal.db", free_port()
    async with temporal(db_file, port) as first:
        client = first.client
        intake = Intake(session_factory, client, settings)
        async with build_worker(client, settings, session_factory):
            report = await intake.import_balances(write_csv(tmp_path / "b.csv", rows))
            assert (report.started_or_joined, report.queued) == (3, 0)
    # Temporal is gone. The intake (and the API on the same client) keep posting.
    app = create_app(settings, session_factory, client)
    tokens = make_tokens(session_factory)
    started = time.monotonic()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        ready = await http.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["temporal"].startswith("unavailable")
        assert (await http.get("/health")).status_code == 200  # alive, not ready
        answer = await http.post(
            f"/accounts/{rows[0]['account_number']}/payments",
            json={"reference": f"API-{uuid.uuid4().hex[:8]}", "amount_cents": 2000},
            headers={"Authorization": f"Bearer {tokens[ApiRole.INTEGRATION]}"},
        )
    assert answer.status_code == 202, answer.text
    assert answer.json()["balance_cents"] == 3500 and answer.json()["queued"] is True
    for row in rows[1:]:
        posted = await intake.post_payment_fact(
            row["account_number"], 2000, f"P1-{row['charge_ref']}"
        )
        assert (posted.new, posted.balance_cents, posted.delivered) == (True, 3500, False)
    for row in rows:
        posted = await intake.post_payment_fact(
            row["account_number"], 1000, f"P2-{row['charge_ref']}"
        )
        assert (posted.balance_cents, posted.delivered) == (2500, False)
    assert time.monotonic() - started < 30  # each attempt is brief: nobody waits on an outage
    ids = [intake.account_id(r["account_number"]) for r in rows]
    with session_factory() as session:
        assert sum(pending_count(session, a) for a in ids) == 6

    # Temporal returns on the same database; the worker's dispatcher delivers the queue.
    async with temporal(db_file, port) as second:
        stop = asyncio.Event()
        dispatcher = Dispatcher(second.client, session_factory, settings.temporal.task_queue)
        async with build_worker(second.client, settings, session_factory):
            dispatching = asyncio.create_task(dispatcher.run(stop))
            try:

                async def all_delivered() -> bool:
                    with session_factory() as session:
                        return sum(pending_count(session, a) for a in ids) == 0

                await eventually(all_delivered, timeout=60)
                for account_id in ids:
                    view = await get_status(second.client, account_id)
                    assert (view.balance_cents, view.paid_cents) == (2500, 3000), account_id
                # Delivered once: the same run, and no message is left to send again.
                described = await second.client.get_workflow_handle(workflow_id(ids[0])).describe()
                assert described.status is not None
            finally:
                stop.set()
                await dispatching
