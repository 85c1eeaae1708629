"""The Temporal worker: builds settings, clients and the session factory once, then runs."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import py_compile
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from sendgrid import SendGridAPIClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.batching import StepBatcher
from activities.channels import OutboxSender, Sender
from activities.contact_tasks import ContactTaskActivities
from activities.email import SendGridSender
from activities.ledger import LedgerActivities
from activities.messaging import MessagingActivities, PolicyStore
from activities.reconcile import ReconcileActivities, ensure_schedule
from activities.send_process import SendProcesses
from activities.sms import TwilioSender, make_client
from config.settings import Settings
from models.policy import Channel
from services import unsubscribe
from services.experiments import service as experiment_guards
from services.signal_outbox import Dispatcher
from workflows.escalation import BalanceEscalationWorkflow
from workflows.reconcile import LedgerReconcileWorkflow

WORKFLOWS = [BalanceEscalationWorkflow, LedgerReconcileWorkflow]

# The decision core, the account rules and their data models are pure and deterministic: pass
# them through the sandbox instead of re-importing them for every workflow run. zoneinfo reads the
# time-zone database, which is constant for a given deployment; so is the holidays library.
PASSTHROUGH = (
    "models",
    "workflows.decisions",
    "workflows.account_rules",
    # Pure and deterministic like the decision core; not passed through, the sandbox compiled
    # them from source again for every workflow it started (a quarter of a start's cost).
    "workflows.protections",
    "workflows.state_rules",
    "workflows.contract",
    "zoneinfo",
    "pydantic",
    "holidays",  # the practice calendars (models.calendars): pure Python, deterministic
)


def workflow_runner(workflows: Sequence[type] = WORKFLOWS) -> SandboxedWorkflowRunner:
    sandbox_bytecode(workflows)
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    )


def sandbox_bytecode(workflows: Sequence[type]) -> None:
    """Write the bytecode of the workflows' modules, which the sandbox imports for every run.

    The sandbox imports a workflow's module afresh for each workflow it starts. Without a bytecode
    cache (PYTHONDONTWRITEBYTECODE, as on some CI machines) each of those imports compiles the
    module's source again, milliseconds per workflow; written once here, each is a read. Best
    effort: a read-only installation is left as it is.
    """
    for workflow in workflows:
        source = getattr(sys.modules[workflow.__module__], "__file__", None)
        if source and source.endswith(".py"):
            with contextlib.suppress(OSError, py_compile.PyCompileError):
                py_compile.compile(source, doraise=True)


def build_senders(settings: Settings) -> Mapping[Channel, Sender]:
    """A sender per channel: SendGrid and Twilio where credentials exist, the local outbox else.

    Letters and call tasks need none: they are queued in the database with their outbox row
    (the day's print batch, the staff worklist).
    """
    outbox = OutboxSender(Path(settings.outbox_dir))
    senders: dict[Channel, Sender] = {Channel.EMAIL: outbox, Channel.SMS: outbox}
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
            unsubscribe_token=partial(unsubscribe.sign, unsubscribe.secret_for(settings)),
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

    ``send_step`` is asynchronous: the steps due together share a batch (``StepBatcher``), so an
    activity slot waiting for its batch holds no thread. The ledger activities are synchronous
    (SQLAlchemy sessions) and run in a thread pool; they are few, so its threads, started only
    when needed, stay far below the connection pool's limit.
    """
    temporal = settings.temporal
    # Batches run in a child process when the senders come from the settings (the child builds
    # its own); senders handed in (a test's fakes) live here, and so do their batches.
    runner: SendProcesses | MessagingActivities
    if senders is None and temporal.send_processes > 0:
        runner = SendProcesses(database_url(session_factory), settings, temporal.send_processes)
    else:
        runner = MessagingActivities(
            session_factory,
            senders or build_senders(settings),
            PolicyStore(session_factory),
            send_concurrency=temporal.provider_send_threads,
        )
    batcher = StepBatcher(
        runner,
        max_batch=temporal.send_batch_size,
        lanes=temporal.send_batch_lanes,
        linger=dt.timedelta(milliseconds=temporal.send_batch_linger_ms),
    )
    processes = runner if isinstance(runner, SendProcesses) else None
    ledger = LedgerActivities(session_factory, Path(settings.data_dir) / "agency")
    reconcile = ReconcileActivities(session_factory, client, settings)
    contact_tasks = ContactTaskActivities(session_factory)
    try:
        return EngineWorker(
            client,
            processes,
            task_queue=task_queue or settings.temporal.task_queue,
            workflows=WORKFLOWS,
            workflow_runner=workflow_runner(),
            activities=[
                batcher.send_step,
                ledger.close_balance,
                ledger.open_approval,
                ledger.close_approval,
                ledger.escalate_approval,
                ledger.place_with_agency,
                reconcile.reconcile_ledger,
                contact_tasks.sync_contact_task,
            ],
            activity_executor=ThreadPoolExecutor(
                max_workers=temporal.max_concurrent_activities, thread_name_prefix="activity"
            ),
            max_concurrent_activities=temporal.max_concurrent_activities,
        )
    except BaseException:
        if processes is not None:  # an invalid configuration: no child is left behind
            processes.close()
        raise


class EngineWorker(Worker):
    """The SDK's worker, which also stops the send processes once it has stopped."""

    def __init__(self, client: Client, processes: SendProcesses | None, **config: Any) -> None:
        super().__init__(client, **config)
        self._processes = processes

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            if self._processes is not None:
                # After every activity has completed: no batch is left in flight.
                await asyncio.to_thread(self._processes.close)


def database_url(session_factory: sessionmaker[Session]) -> str:
    """The URL of the engine behind ``session_factory``, password included, for a child's own."""
    engine = session_factory.kw["bind"]
    assert isinstance(engine, Engine), "the session factory is bound to an engine"
    return engine.url.render_as_string(hide_password=False)


def tune_gc() -> None:
    """Keep the cyclic garbage collector off what startup built.

    Under load the collector took about 8% of the worker (bench/), mostly traversing long-lived
    objects: modules, the SDK, policies. Freezing what exists once the worker is built takes them
    out of every later collection (about half of that time). The thresholds stay at Python's
    defaults: raising them let the garbage of evicted workflows (the sandbox's per-workflow
    module copies are cyclic) pile up, 50% more resident memory with 3,000 open balances.
    """
    gc.collect()
    gc.freeze()


async def run_worker(
    client: Client, settings: Settings, session_factory: sessionmaker[Session], stop: asyncio.Event
) -> None:
    """Run until ``stop`` is set, then shut down gracefully (running activities finish).

    Beside the worker, the signal outbox's dispatcher delivers ledger facts that were committed
    while Temporal did not answer, and the experiments' guards run every 15 minutes
    (``services.experiments.service.guard_loop``).
    """
    worker = build_worker(client, settings, session_factory)
    dispatcher = Dispatcher(client, session_factory, settings.temporal.task_queue)
    tune_gc()
    async with worker:
        await ensure_schedule(client, settings)
        dispatching = asyncio.create_task(dispatcher.run(stop))
        guarding = asyncio.create_task(experiment_guards.guard_loop(session_factory, stop))
        await stop.wait()
        await dispatching
        await guarding
