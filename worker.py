"""The Temporal worker: builds settings, clients and the session factory once, then runs."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sendgrid import SendGridAPIClient
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.channels import OutboxSender, Sender
from activities.email import SendGridSender
from activities.ledger import LedgerActivities
from activities.letters import PdfLetterSender
from activities.messaging import MessagingActivities, PolicyStore
from activities.sms import TwilioSender, make_client
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
    """A sender per channel: SendGrid and Twilio where credentials exist, the local outbox else.

    Letters are always rendered to PDF in the outbox, for the day's print batch. Call tasks never
    reach a sender (they are rows in the staff worklist); the outbox stands in for completeness.
    """
    outbox = OutboxSender(Path(settings.outbox_dir))
    senders: dict[Channel, Sender] = {
        Channel.LETTER: PdfLetterSender(Path(settings.outbox_dir)),
        Channel.EMAIL: outbox,
        Channel.SMS: outbox,
        Channel.CALL: outbox,
    }
    sendgrid, twilio = settings.sendgrid, settings.twilio
    public = settings.api.public_url.rstrip("/")
    if sendgrid.configured and sendgrid.api_key is not None:
        client = SendGridAPIClient(
            api_key=sendgrid.api_key.get_secret_value(),
            **({"host": sendgrid.base_url} if sendgrid.base_url else {}),
        )
        senders[Channel.EMAIL] = SendGridSender(
            client,
            sendgrid.from_email,
            from_name=settings.practice.name,
            sandbox_mode=sendgrid.sandbox_mode,
            unsubscribe_url=f"{public}/unsubscribe/email/{{id}}" if public else "",
        )
    if twilio.configured and twilio.auth_token is not None:
        default_callback = f"{public}/webhooks/twilio/status" if public else ""
        callback = twilio.status_callback_url or default_callback
        senders[Channel.SMS] = TwilioSender(
            make_client(twilio.account_sid, twilio.auth_token.get_secret_value(), twilio.base_url),
            messaging_service_sid=twilio.messaging_service_sid,
            from_number=twilio.from_number,
            status_callback_url=callback,
        )
    return senders


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
    ledger = LedgerActivities(session_factory, Path(settings.data_dir) / "agency")
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
            ledger.escalate_approval,
            ledger.place_with_agency,
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
