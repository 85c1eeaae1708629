"""Kill the worker in the middle of a send: the patient gets one text, not two.

A worker runs in a subprocess against the dev server and a real PostgreSQL; the fake Twilio holds
the first request while the test kills that process with SIGKILL. A fresh worker then retries the
step once its heartbeats stop (the heartbeat timeout, 15 s; before, the 45 s start-to-close
timeout), finds the outbox row claimed before the call, and does not
send again: Twilio received exactly one request, the row ends ``unconfirmed``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.orm import Communication, CommunicationStatus
from models.payloads import StepOutcome
from models.policy import Channel
from starter import Intake, get_status
from tests.factories import balance_row, midday_zone, policy_in, write_csv
from tests.fakes.providers import TWILIO_SID, TWILIO_TOKEN, fake_providers
from tests.support.waits import eventually, readline_within
from worker import build_worker
from workflows.escalation import SEND_STEP_TIMEOUT

WORKER_START_TIMEOUT = 60.0

pytestmark = pytest.mark.devserver

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "MG" + "2" * 32

TEXT_FIRST_POLICY = """
name: text-first
practice: {{name: Example Clinic, phone: (555) 010-0199, pay_url: https://pay.example.test}}
thresholds: {{minimum_balance: 5.00}}
contact:
  practice_time_zone: {tz}
  default_patient_time_zone: {tz}
  business_days: [mon, tue, wed, thu, fri, sat, sun]
  min_spacing_hours: 0
steps:
  - {{id: notice-1, day: 0, channels: [sms], template: statement-notice}}
  - {{id: statement-2, day: 30, channels: [letter], template: statement, tone: neutral}}
"""


@pytest.mark.timeout(420)
async def test_worker_killed_mid_send_sends_exactly_once(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    database_url: str,
    tmp_path: Path,
) -> None:
    zone = midday_zone()
    policy_path = tmp_path / "text-first.yaml"
    policy_path.write_text(TEXT_FIRST_POLICY.format(tz=zone), encoding="utf-8")
    client = dev_env.client
    with fake_providers() as fake:
        held = fake.hold("twilio")
        env = dict(
            os.environ,
            DUNNING_DATABASE__URL=database_url,
            DUNNING_TEMPORAL__ADDRESS=client.service_client.config.target_host,
            DUNNING_TEMPORAL__TASK_QUEUE=settings.temporal.task_queue,
            DUNNING_DATA_DIR=str(tmp_path / "killed"),
            DUNNING_TWILIO__ACCOUNT_SID=TWILIO_SID,
            DUNNING_TWILIO__AUTH_TOKEN=TWILIO_TOKEN,
            DUNNING_TWILIO__MESSAGING_SERVICE_SID=SERVICE,
            DUNNING_TWILIO__BASE_URL=fake.base_url,
        )
        worker_log = tmp_path / "worker.err"
        err = worker_log.open("wb")  # the child keeps its own descriptor; closed below
        proc = subprocess.Popen(  # noqa: ASYNC220 - a process to kill, not one to await
            [sys.executable, "-m", "tests.fakes.worker_process"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
        )
        err.close()
        try:
            line = await readline_within(
                proc, WORKER_START_TIMEOUT, "the worker process", worker_log
            )
            assert line.strip() == b"ready", line
            intake = Intake(session_factory, client, settings)
            row = balance_row(time_zone=zone, policy=policy_in(settings, policy_path))
            await intake.import_balances(write_csv(tmp_path / "one.csv", [row]))
            account_id = intake.account_id(row["account_number"])

            async def request_held() -> bool:
                return len(fake.of("twilio")) == 1

            await eventually(request_held, 60)
            with session_factory() as s:
                claimed = s.scalars(
                    select(Communication).where(Communication.account_id == uuid.UUID(account_id))
                ).one()
                # The claim was committed before Twilio was called.
                assert claimed.status is CommunicationStatus.PENDING
                assert claimed.channel is Channel.SMS
            proc.send_signal(signal.SIGKILL)
            killed_at = asyncio.get_running_loop().time()
            await asyncio.to_thread(proc.wait, 10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        held.set()

        fresh = settings.model_copy(
            update={
                "twilio": settings.twilio.model_copy(
                    update={
                        "account_sid": TWILIO_SID,
                        "auth_token": SecretStr(TWILIO_TOKEN),
                        "messaging_service_sid": SERVICE,
                        "base_url": fake.base_url,
                    }
                )
            }
        )
        async with build_worker(client, fresh, session_factory):

            async def recorded() -> bool:
                try:
                    view = await get_status(client, account_id)
                except RPCError:
                    # While the server moves the workflow off the dead worker's sticky queue, a
                    # query can time out; the next one reaches the fresh worker.
                    return False
                return any(r.step_id == "notice-1" for r in view.history)

            # The retry comes after the step's heartbeat timeout (15 s), not its start-to-close
            # timeout (45 s): a dead worker is noticed when its heartbeats stop.
            await eventually(recorded, 240)
            waited = asyncio.get_running_loop().time() - killed_at
            assert waited < SEND_STEP_TIMEOUT.total_seconds() - 5, waited
            view = await get_status(client, account_id)
        record = next(r for r in view.history if r.step_id == "notice-1")
        assert record.outcome is StepOutcome.SENT and record.channel is Channel.SMS
        assert len(fake.of("twilio")) == 1, "the text went out twice"
        with session_factory() as s:
            rows = s.scalars(
                select(Communication).where(Communication.account_id == uuid.UUID(account_id))
            ).all()
        assert len(rows) == 1 and str(rows[0].id) == record.communication_id
        assert rows[0].status is CommunicationStatus.UNCONFIRMED
        assert "not re-sent" in (rows[0].reasons or "")
