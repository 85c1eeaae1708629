"""The Temporal worker: builds settings, clients and the session factory once, then runs."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.channels import OutboxSender, Sender
from activities.ledger import LedgerActivities
from activities.messaging import MessagingActivities, PolicyStore
from config.settings import Settings
from models.policy import Channel
from workflows.escalation import BalanceEscalationWorkflow

WORKFLOWS = [BalanceEscalationWorkflow]

# The decision core and its data models are pure and deterministic: pass them through the sandbox
# instead of re-importing them for every workflow run. zoneinfo reads the time-zone database,
# which is constant for a given deployment.
PASSTHROUGH = ("models", "workflows.decisions", "zoneinfo", "pydantic")


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    )


def build_senders(settings: Settings) -> Mapping[Channel, Sender]:
    """The local outbox for every channel; providers replace it where credentials exist."""
    outbox = OutboxSender(Path(settings.outbox_dir))
    return {
        Channel.LETTER: outbox,
        Channel.EMAIL: outbox,
        Channel.SMS: outbox,
        Channel.CALL: outbox,
    }


def build_worker(
    client: Client,
    settings: Settings,
    session_factory: sessionmaker[Session],
    senders: Mapping[Channel, Sender] | None = None,
    task_queue: str | None = None,
) -> Worker:
    """A worker for the escalation workflow and its activities.

    Activities are synchronous (SQLAlchemy sessions, provider SDKs) and run in a thread pool sized
    like the database connection pool.
    """
    slots = settings.temporal.max_concurrent_activities
    messaging = MessagingActivities(
        session_factory, senders or build_senders(settings), PolicyStore(session_factory)
    )
    ledger = LedgerActivities(session_factory)
    return Worker(
        client,
        task_queue=task_queue or settings.temporal.task_queue,
        workflows=WORKFLOWS,
        workflow_runner=workflow_runner(),
        activities=[
            messaging.send_step,
            ledger.close_balance,
            ledger.open_approval,
            ledger.close_approval,
        ],
        activity_executor=ThreadPoolExecutor(max_workers=slots, thread_name_prefix="activity"),
        max_concurrent_activities=slots,
    )


async def run_worker(
    client: Client, settings: Settings, session_factory: sessionmaker[Session], stop: asyncio.Event
) -> None:
    """Run until ``stop`` is set, then shut down gracefully (running activities finish)."""
    worker = build_worker(client, settings, session_factory)
    async with worker:
        await stop.wait()
