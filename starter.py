"""Typed functions that start and message workflows; used by the CLI, the HTTP API and the tests.

Ledger first, workflow second: a payment or charge is committed in PostgreSQL (idempotent by its
external reference) in the same transaction as the message that tells its workflow (the signal
outbox, ``services.signal_outbox``). The message is then delivered at once when Temporal answers,
or later by the worker's dispatcher when it does not; the workflow deduplicates every message by
the same reference. Repeating any call after a failure is therefore always safe, and no fact is
lost while Temporal is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker
from temporalio.client import Client, TLSConfig, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from activities import calls
from config.loader import PolicyBundle, PolicyFileError, load_policy
from config.settings import Settings
from models.actions import (
    AccountState,
    AdjustmentKind,
    AdjustmentSignal,
    ChannelEventKind,
    ChannelEventSignal,
    ClosingNoticeRequest,
    HardshipRequest,
    HoldRequest,
    PlanRequest,
    ReferralRequest,
    ResumeRequest,
    SettlementRequest,
    WriteOffRequest,
)
from models.import_profiles import BALANCE_FORWARD_PREFIX
from models.imports import (
    BalanceRow,
    CsvImportError,
    PaymentRow,
    RowError,
    check_charge_refs,
    parse_rows,
)
from models.orm import (
    Account,
    AccountStatus,
    AuditEvent,
    ChannelPreference,
    ChargeLine,
    Deliverability,
    Guarantor,
    Payment,
    StaffTask,
)
from models.orm import repositories as repo
from models.payloads import (
    CallOutcomeSignal,
    CallResult,
    ChargeSignal,
    EscalationInput,
    PaymentSignal,
    PolicyMigration,
    StatusView,
    StepDecision,
)
from models.policy import Channel, PolicyRef
from services import agency, credits, lifecycle, protections
from services.experiments import intake as experiment_intake
from services.signal_outbox import INTAKE_RPC_TIMEOUT, Dispatcher, enqueue, enqueue_start
from workflows.contract import (
    DecisionResult,
    HardshipResult,
    HoldResult,
    PlanResult,
    Rejection,
    ResumeResult,
    SettlementResult,
    TaskOpened,
)
from workflows.escalation import FEATURES, BalanceEscalationWorkflow
from workflows.protections import fee_cap_problem

R = TypeVar("R")
A = TypeVar("A")

START_CONCURRENCY = 16
"""Workflow starts in flight at once during an import: the server, not the client, sets the pace."""
RPC_TIMEOUT = timedelta(seconds=30)
"""Queries and signals: a workflow whose worker is gone must not hang a request."""
UPDATE_TIMEOUT = timedelta(seconds=60)
"""Updates may run an activity (opening an approval task) before they answer."""


class NotRunning(RuntimeError):
    """No Temporal server configured and no ``dunning run`` to attach to."""


async def connect(settings: Settings) -> Client:
    """Connect to the configured Temporal server, or to the one ``dunning run`` started."""
    cfg = settings.temporal
    address = cfg.address
    if not address:
        runtime = read_runtime(settings)
        address = runtime.get("temporal_address", "")
        if not address:
            raise NotRunning(
                "no Temporal server: start `dunning run` first, or set DUNNING_TEMPORAL__ADDRESS"
            )
    tls: bool | TLSConfig = cfg.tls
    if cfg.tls_client_cert_path and cfg.tls_client_key_path:
        tls = TLSConfig(
            client_cert=cfg.tls_client_cert_path.read_bytes(),
            client_private_key=cfg.tls_client_key_path.read_bytes(),
        )
    return await Client.connect(
        address,
        namespace=cfg.namespace,
        tls=tls,
        api_key=cfg.api_key.get_secret_value() if cfg.api_key else None,
        data_converter=pydantic_data_converter,
    )


def read_runtime(settings: Settings) -> dict[str, str]:
    try:
        data: dict[str, str] = json.loads(settings.runtime_file.read_text())
    except (OSError, ValueError):
        return {}
    return data


def workflow_id(account_id: str) -> str:
    return f"balance-{account_id}"


# -- workflow messages ---------------------------------------------------------------------


async def start_or_join(
    client: Client, task_queue: str, inp: EscalationInput, charge: ChargeSignal
) -> WorkflowHandle[BalanceEscalationWorkflow, object]:
    """Add a charge to the account's running workflow, or start one with it (signal-with-start).

    The input starts with a zero balance and every charge arrives as a signal, so the balance is
    the same whichever of the two happens.
    """
    return await client.start_workflow(
        BalanceEscalationWorkflow.run,
        inp,
        id=workflow_id(inp.account_id),
        task_queue=task_queue,
        start_signal=message_name(BalanceEscalationWorkflow.add_charge),
        start_signal_args=[charge],
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


async def signal_payment(client: Client, account_id: str, payment: PaymentSignal) -> None:
    await signal(
        client, account_id, message_name(BalanceEscalationWorkflow.record_payment), payment
    )


async def get_status(client: Client, account_id: str) -> StatusView:
    return await _handle(client, account_id).query(
        BalanceEscalationWorkflow.get_status, rpc_timeout=RPC_TIMEOUT
    )


async def migrate_policy(client: Client, account_id: str, migration: PolicyMigration) -> PolicyRef:
    return await _update(client, account_id, BalanceEscalationWorkflow.migrate_policy, migration)


async def decide_step(client: Client, account_id: str, decision: StepDecision) -> DecisionResult:
    return await _update(client, account_id, BalanceEscalationWorkflow.decide_step, decision)


class ActionRejected(Exception):
    """A staff action the workflow refused, with the rule's type and a reason for people."""

    def __init__(self, kind: Rejection, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _handle(client: Client, account_id: str) -> WorkflowHandle[BalanceEscalationWorkflow, Any]:
    return client.get_workflow_handle_for(BalanceEscalationWorkflow.run, workflow_id(account_id))


async def _update(
    client: Client,
    account_id: str,
    update: UpdateMethodMultiParam[[BalanceEscalationWorkflow, A], Awaitable[R]]
    | UpdateMethodMultiParam[[BalanceEscalationWorkflow, A], R],
    arg: A,
) -> R:
    """Run an update by method reference; a refusal becomes :class:`ActionRejected`."""
    try:
        result: R = await _handle(client, account_id).execute_update(
            update,  # type: ignore[arg-type]  # an async handler's type names its coroutine
            arg,
            rpc_timeout=UPDATE_TIMEOUT,
        )
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError):
            raise ActionRejected(Rejection.of(cause.type), cause.message) from err
        raise
    return result


async def get_account(client: Client, account_id: str) -> AccountState:
    """Holds, plan, settlement offer, open approval tasks and events of a balance."""
    return await _handle(client, account_id).query(
        BalanceEscalationWorkflow.get_account, rpc_timeout=RPC_TIMEOUT
    )


async def hold(client: Client, account_id: str, request: HoldRequest) -> HoldResult:
    return await _update(client, account_id, BalanceEscalationWorkflow.hold, request)


async def resume(client: Client, account_id: str, request: ResumeRequest) -> ResumeResult:
    return await _update(client, account_id, BalanceEscalationWorkflow.resume, request)


async def grant_hardship(
    client: Client, account_id: str, request: HardshipRequest
) -> HardshipResult:
    return await _update(client, account_id, BalanceEscalationWorkflow.grant_hardship, request)


async def set_payment_plan(client: Client, account_id: str, request: PlanRequest) -> PlanResult:
    return await _update(client, account_id, BalanceEscalationWorkflow.set_payment_plan, request)


async def propose_settlement(
    client: Client, account_id: str, request: SettlementRequest
) -> SettlementResult:
    return await _update(client, account_id, BalanceEscalationWorkflow.propose_settlement, request)


async def request_write_off(
    client: Client, account_id: str, request: WriteOffRequest
) -> TaskOpened:
    return await _update(client, account_id, BalanceEscalationWorkflow.request_write_off, request)


async def request_closing_notice(
    client: Client, account_id: str, request: ClosingNoticeRequest
) -> TaskOpened:
    return await _update(
        client, account_id, BalanceEscalationWorkflow.request_closing_notice, request
    )


async def request_referral(client: Client, account_id: str, request: ReferralRequest) -> TaskOpened:
    return await _update(client, account_id, BalanceEscalationWorkflow.request_referral, request)


def message_name(method: Callable[..., object]) -> str:
    """The name a signal, update or query handler is registered under (its decorator's)."""
    for attr in ("__temporal_signal_definition", "__temporal_update_definition"):
        definition = getattr(method, attr, None)
        if definition is not None:
            name: str = definition.name
            return name
    raise ValueError(f"{method!r} is not a workflow message handler")


async def signal(client: Client, account_id: str, name: str, payload: object) -> None:
    """Send a fact: post_adjustment, channel_event, life_event or record_call_outcome."""
    await client.get_workflow_handle(workflow_id(account_id)).signal(
        name, payload, rpc_timeout=RPC_TIMEOUT
    )


async def notify(client: Client, account_id: str, name: str, payload: object) -> bool:
    """Tell the account's workflow of a fact the ledger already holds.

    False when no workflow runs for the account (a zero balance never started one): the ledger's
    record is then the whole answer, and a later balance starts from it.
    """
    try:
        await signal(client, account_id, name, payload)
    except RPCError as exc:
        if exc.status is not RPCStatusCode.NOT_FOUND:
            raise
        return False
    return True


CHANNEL_EVENT_DB: dict[ChannelEventKind, tuple[str, object]] = {
    ChannelEventKind.EMAIL_BOUNCED: ("deliverability", Deliverability.BOUNCED),
    ChannelEventKind.SMS_UNDELIVERABLE: ("deliverability", Deliverability.UNDELIVERABLE),
    ChannelEventKind.LETTER_RETURNED: ("deliverability", Deliverability.RETURNED),
    ChannelEventKind.ADDRESS_CORRECTED: ("deliverability", Deliverability.OK),
}


def record_channel_event(session: Session, guarantor: Guarantor, event: ChannelEventSignal) -> None:
    """Ledger side of a channel event, so that the send-time checks agree with the workflow."""
    assert event.channel is not None
    pref = next((p for p in guarantor.channels if p.channel is event.channel), None)
    if pref is None:
        pref = ChannelPreference(channel=event.channel)
        guarantor.channels.append(pref)
    now = dt.datetime.now(dt.UTC)
    if event.kind is ChannelEventKind.WRONG_NUMBER:
        for channel in (Channel.CALL, Channel.SMS):
            other = next((p for p in guarantor.channels if p.channel is channel), None)
            if other is None:
                other = ChannelPreference(channel=channel, consent=False)
                guarantor.channels.append(other)
            other.deliverability, other.updated_at = Deliverability.UNDELIVERABLE, now
        return
    if event.kind is ChannelEventKind.OPTED_OUT:
        pref.opted_out_at, pref.consent = now, False
    elif event.kind is ChannelEventKind.CONSENT_GIVEN:
        pref.opted_out_at, pref.consent = None, True
    elif event.kind is ChannelEventKind.RESTRICTED:
        pref.restricted_at = pref.restricted_at or now  # refused at send time too
    elif event.kind is ChannelEventKind.RESTRICTION_LIFTED:
        # Only the restriction goes: an opt-out (STOP, unsubscribe) or missing consent stays.
        pref.restricted_at = None
    else:
        field_name, value = CHANNEL_EVENT_DB[event.kind]
        setattr(pref, field_name, value)
    pref.updated_at = now


# -- intake: ledger first, then the workflow -------------------------------------------------


@dataclass
class ImportReport:
    rows: int = 0
    accounts: int = 0
    new_charges: int = 0
    started_or_joined: int = 0
    errors: list[str] = field(default_factory=list)
    queued: int = 0
    """Accounts whose messages wait in the signal outbox (Temporal did not answer)."""
    warnings: list[RowError] = field(default_factory=list)
    """Rows a person should look at: a closed account the export disagrees with, a pre-petition
    charge, a charge that started a balance of its own (``services.lifecycle``)."""


@dataclass(frozen=True)
class Posted:
    """The ledger's answer to a posted fact, and whether its workflow has heard of it yet.

    ``delivered`` is False when the message is only queued in the signal outbox (Temporal away):
    the ledger holds the fact and the worker's dispatcher delivers it when Temporal returns.
    """

    new: bool
    balance_cents: int
    delivered: bool

    @property
    def credit_cents(self) -> int:
        return credits.credit_cents(self.balance_cents)


LEDGER_BATCH_FIRST = 16
LEDGER_BATCH_MAX = 64
"""Accounts written per ledger transaction in an import: the first batch small, so that the
starts begin soon; then doubling up to the largest. Small batches keep the event loop, which
sends the starts, from waiting long on a flush."""
LEDGER_YIELD_EVERY = 4
"""Accounts posted between two turns of the event loop while a ledger batch is written."""


def _ledger_batches(items: list[R]) -> list[list[R]]:
    batches: list[list[R]] = []
    size, first = LEDGER_BATCH_FIRST, 0
    while first < len(items):
        batches.append(items[first : first + size])
        first += size
        size = min(size * 2, LEDGER_BATCH_MAX)
    return batches


async def _in_thread(fn: Callable[..., R], *args: Any) -> R:
    """``fn(*args)`` in a thread. Cancelled, it first lets the thread finish: a session is never
    used by two threads at once (the caller's cleanup uses it next)."""
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await work
        raise


def _flush_and_commit(session: Session) -> None:
    repo.flush_batch(session)
    session.commit()


@dataclass
class _Written:
    """What one ledger batch of an import wrote."""

    new_charges: int = 0
    warnings: list[RowError] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    """Accounts with a message to deliver."""


def _known_accounts(session: Session, numbers: list[str], chunk: int = 1000) -> set[str]:
    known: set[str] = set()
    for first in range(0, len(numbers), chunk):
        known.update(
            session.scalars(
                select(Account.account_number).where(
                    Account.account_number.in_(numbers[first : first + chunk])
                )
            )
        )
    return known


def _no_policy(name: str) -> str:
    return f"expected the name of a policy in the policy folder; there is no policy {name!r}"


class Intake:
    """Posts balances and payments to the ledger and routes them to the accounts' workflows."""

    def __init__(
        self, session_factory: sessionmaker[Session], client: Client | None, settings: Settings
    ) -> None:
        self.session_factory = session_factory
        self._client = client
        self.settings = settings
        self._policies: dict[str, PolicyBundle] = {}
        self._named: dict[str, PolicyBundle] = {}  # found by name since refresh_experiments
        self._routing: experiment_intake.Routing | None = None
        self.dispatcher = Dispatcher(
            client, session_factory, settings.temporal.task_queue, INTAKE_RPC_TIMEOUT
        )
        self._bulk: Dispatcher | None = None
        self._ledger_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    @property
    def client(self) -> Client:
        if self._client is None:
            raise NotRunning("no Temporal client")
        return self._client

    async def deliver(self, account_id: str | uuid.UUID) -> bool:
        """Deliver the account's queued messages now. False when some stay queued."""
        return await self.dispatcher.deliver_account(account_id)

    def policy(self, name: str) -> PolicyBundle:
        if name not in self._policies:
            self._policies[name] = load_policy(name)
        return self._policies[name]

    def policy_for(self, name: str | None) -> PolicyBundle:
        """The policy a row names, from the configured policy folders; none named: the default.

        A row names a policy, never a file: the name is looked up in
        ``settings.practice.policy_dirs`` only.

        Raises:
            LookupError: no policy of that name in the policy folders.
            PolicyFileError: the policy is there but not usable.
        """
        if name is None:
            routing = self._routing if self._routing is not None else self.refresh_experiments()
            # A promotion stores the default for new balances in the database; it wins.
            name = routing.default_policy
            if name is None:
                return self.policy(self.settings.practice.default_policy)
        bundle = self._named.get(name)
        if bundle is None:
            # Looked up once per import or request: each row of a file names it again.
            found = self.settings.practice.policy_file(name)
            if found is None:
                raise LookupError(_no_policy(name))
            bundle = self._named[name] = self.policy(str(found))
        return bundle

    def _restated_balances(self, rows: list[tuple[int, BalanceRow]]) -> list[RowError]:
        """A balance-forward line for an account that has one of another date already: a later
        aging file restates the whole balance, and adding it would count the balance twice."""
        forward = {
            row.account_number: (line, row.charge_ref)
            for line, row in rows
            if row.charge_ref.startswith(BALANCE_FORWARD_PREFIX)
        }
        if not forward:
            return []
        with self.session_factory() as session:
            known = session.execute(
                select(Account.account_number, ChargeLine.external_ref)
                .join(ChargeLine, ChargeLine.account_id == Account.id)
                .where(
                    Account.account_number.in_(list(forward)),
                    ChargeLine.external_ref.startswith(BALANCE_FORWARD_PREFIX),
                )
            ).all()
        return [
            RowError(
                forward[number][0],
                "charge_ref",
                f"the account has a balance-forward line of another date ({ref}): a later aging"
                " file restates its whole balance; post payments and adjustments instead",
            )
            for number, ref in known
            if ref != forward[number][1]
        ]

    async def import_balances(self, path: Path, *, dry_run: bool = False) -> ImportReport:
        """All-or-nothing: any bad row and nothing is written; every bad row is reported.

        The whole file is checked first; the ledger is then written in batches of whole accounts
        (:func:`_ledger_batches`), each committed with its messages, and a batch's workflows are
        started while the next batch is written. An import stopped half-way is finished by
        running it again: known references are skipped.
        """
        self.refresh_experiments()
        rows, errors = parse_rows(path, BalanceRow)
        rows, duplicates = check_charge_refs(rows)
        errors += duplicates + self._restated_balances(rows)
        for line, row in rows:
            try:
                bundle = self.policy_for(row.policy)
            except LookupError as exc:
                errors.append(RowError(line, "policy", str(exc)))
                continue
            except PolicyFileError:
                # The policy's own errors are for `dunning policy check`; no file content here.
                errors.append(
                    RowError(
                        line,
                        "policy",
                        f"policy {row.policy or 'default'!r} is not usable: check it with"
                        " `dunning policy check`",
                    )
                )
                continue
            if problem := fee_cap_problem(bundle.policy, row.charges):
                field_name, _, message = problem.partition(": ")
                errors.append(RowError(line, field_name, message))
        if errors:
            raise CsvImportError(sorted(errors, key=lambda e: e.row))
        report = ImportReport(rows=len(rows))
        by_account: dict[str, list[tuple[int, BalanceRow]]] = defaultdict(list)
        for line, row in rows:
            by_account[row.account_number].append((line, row))
        report.accounts = len(by_account)
        if dry_run:
            with self.session_factory() as session:
                # Only a known account can be closed: one query finds them, not one per account.
                known = _known_accounts(session, list(by_account))
                for number, numbered in by_account.items():
                    if number in known:
                        report.warnings += lifecycle.dry_run_warnings(session, number, numbered)
            return report
        # The ledger is written in batches of whole accounts, each committed with its queued
        # messages before its workflows are asked; a batch's starts go out while the next batch
        # is written. What Temporal does not take now stays in the outbox for the worker's
        # dispatcher.
        # Imports running at once (the chunks of one file) write their ledgers one after the
        # other, in the order they were called; each one's starts overlap the next one's ledger.
        deliveries: list[asyncio.Task[int]] = []
        pending = 0
        try:
            async with self._ledger_lock():
                for batch in _ledger_batches(list(by_account.items())):
                    # On the event loop, not in a thread (a thread would contend with the loop
                    # for the GIL and slow every start in flight); it lets the loop send between
                    # accounts.
                    written = await self._write_ledger(batch)
                    report.new_charges += written.new_charges
                    report.warnings += written.warnings
                    if written.pending:
                        pending += len(written.pending)
                        deliveries.append(
                            asyncio.create_task(self._bulk_dispatcher.deliver_many(written.pending))
                        )
        finally:
            # A batch that failed to write leaves the committed ones to be delivered.
            delivered = sum(await asyncio.gather(*deliveries))
        report.started_or_joined = delivered
        report.queued = pending - delivered
        return report

    def _ledger_lock(self) -> asyncio.Lock:
        """One import's ledger at a time on this loop, first come first served."""
        loop = asyncio.get_running_loop()
        lock = self._ledger_locks.get(loop)
        if lock is None:
            self._ledger_locks = {k: v for k, v in self._ledger_locks.items() if not k.is_closed()}
            lock = self._ledger_locks[loop] = asyncio.Lock()
        return lock

    @property
    def _bulk_dispatcher(self) -> Dispatcher:
        """A bulk import waits on a busy server longer than a single request does; the
        batches of one import share its concurrency."""
        if self._bulk is None:
            self._bulk = Dispatcher(
                self._client, self.session_factory, self.settings.temporal.task_queue
            )
        return self._bulk

    async def _write_ledger(
        self, batch: list[tuple[str, list[tuple[int, BalanceRow]]]]
    ) -> _Written:
        """One transaction: a batch of accounts' rows and their queued messages.

        The rows are built on the event loop, which runs every few accounts; the reads before and
        the writes after (a batch's flush and commit wait on PostgreSQL for up to a fifth of a
        second) run in a thread, so that the starts of earlier batches go on meanwhile: a loop
        blocked on the database answers no start and sends no next one."""
        written = _Written()
        session = self.session_factory()
        try:
            session.begin()
            # Two queries for the batch's accounts and guarantors; the rows are then written in
            # one flush at commit (multi-row INSERTs), not a round trip per account.
            await _in_thread(
                repo.preload_batch,
                session,
                [number for number, _ in batch],
                list(dict.fromkeys(numbered[0][1].guarantor_id for _, numbered in batch)),
            )
            for index, (number, numbered) in enumerate(batch):
                if index % LEDGER_YIELD_EVERY == LEDGER_YIELD_EVERY - 1:
                    await asyncio.sleep(0)
                inp, charges, warnings = self.post_account_checked(
                    session, number, [r for _, r in numbered], [line for line, _ in numbered]
                )
                written.new_charges += len(charges)
                written.warnings += warnings
                if charges:
                    written.pending.append(inp.account_id)
            await _in_thread(_flush_and_commit, session)
        finally:
            session.close()  # rolls back what was not committed
        return written

    def post_account(
        self, session: Session, number: str, rows: list[BalanceRow]
    ) -> tuple[EscalationInput, list[ChargeSignal]]:
        inp, charges, _ = self.post_account_checked(session, number, rows)
        return inp, charges

    def post_account_checked(
        self, session: Session, number: str, rows: list[BalanceRow], lines: list[int] | None = None
    ) -> tuple[EscalationInput, list[ChargeSignal], list[RowError]]:
        """Post one account's rows; a closed account's new lines go where ``services.lifecycle``
        says (never reopening it). Returns the collecting balance's workflow input, its new
        charges and the rows' warnings."""
        first = rows[0]
        bundle = self.policy_for(first.policy)
        repo.store_policy_version(session, bundle)
        guarantor = repo.upsert_guarantor(
            session,
            first.guarantor_id,
            {
                "first_name": first.first_name,
                "last_name": first.last_name,
                "email": first.email,
                "phone": first.phone,
                "address_line1": first.address_line1,
                "address_line2": first.address_line2,
                "city": first.city,
                "region": first.state,
                "postal_code": first.postal_code,
                "time_zone": first.time_zone,
                "language": first.language,
            },
        )
        protections.note_phone_kind(guarantor, first.phone_kind)
        repo.set_channel_consent(session, guarantor, Channel.SMS, first.sms_consent)
        account = repo.account_by_number(session, number)
        if account is not None:
            routing = lifecycle.route(session, account, rows, lines)
            if not routing.plain:
                return self._post_routed(session, routing, account, guarantor, bundle)
        opened = dt.datetime.combine(min(r.service_date for r in rows), dt.time(), dt.UTC)
        new = account is None
        running = account is not None and experiment_intake.is_running(account)
        if account is None:
            account = repo.new_account(
                session,
                account_number=number,
                guarantor=guarantor,
                policy_name=bundle.policy.name,
                opened_at=opened,
            )
        bundle = self._experiment_bundle(session, account, rows, bundle, running, new)
        inp, charges = self._post_lines(session, account, rows, guarantor, bundle)
        return inp, charges, []

    def refresh_experiments(self, session: Session | None = None) -> experiment_intake.Routing:
        """Read the running experiments and the stored default policy (once per import or
        request: a promotion or a stopped arm applies from the next one), in ``session`` or a
        session of its own."""
        self._named = {}
        if session is not None:
            self._routing = experiment_intake.load_routing(session)
            return self._routing
        with self.session_factory() as own:
            self._routing = experiment_intake.load_routing(own)
        return self._routing

    def _experiment_bundle(
        self,
        session: Session,
        account: Account,
        rows: list[BalanceRow],
        bundle: PolicyBundle,
        running: bool,
        new: bool,
    ) -> PolicyBundle:
        """The arm's policy for a balance an experiment takes (``services.experiments``)."""
        routing = self._routing if self._routing is not None else self.refresh_experiments()
        # Eligibility compares the names rows use (a policy file's name in the policy folders).
        requested = (
            rows[0].policy or routing.default_policy or self.settings.practice.default_policy
        )
        entry = experiment_intake.policy_for_entry(
            session, routing, account, rows, requested, running=running, new=new
        )
        if entry is None:
            return bundle
        arm_bundle = self.policy_for(entry.policy_name)
        repo.store_policy_version(session, arm_bundle)
        if entry.assignment is not None:
            entry.assignment.policy_hash = arm_bundle.hash
        if not running:
            account.policy_name = arm_bundle.policy.name
        return arm_bundle

    def _post_routed(
        self,
        session: Session,
        routing: lifecycle.Routing,
        root: Account,
        guarantor: Guarantor,
        bundle: PolicyBundle,
    ) -> tuple[EscalationInput, list[ChargeSignal], list[RowError]]:
        """A closed account's lines: to a stayed or estate balance (ledger only), or to the
        balance of their own that continues it (created here, with its own ladder)."""
        result: tuple[EscalationInput, list[ChargeSignal]] | None = None
        for target in routing.targets:
            account = target.account
            if account is None:
                assert target.continues is not None
                account = Account(
                    account_number=lifecycle.successor_number(session, root),
                    guarantor=guarantor,
                    policy_name=bundle.policy.name,
                    opened_at=dt.datetime.combine(
                        min(r.service_date for r in target.rows), dt.time(), dt.UTC
                    ),
                    continues_account_id=target.continues.id,
                )
                session.add(account)
                session.flush()
            posted = self._post_lines(
                session, account, target.rows, guarantor, bundle, collect=target.collect
            )
            if target.collect:
                result = posted
        if result is None:  # nothing to collect: no message, nothing written
            return self._escalation_input(session, root, guarantor, bundle), [], routing.warnings
        return result[0], result[1], routing.warnings

    async def split_post_petition(self, account_number: str, filed_on: dt.date) -> str | None:
        """A bankruptcy stays the pre-petition balance only: visits on or after the filing date
        move to a balance of their own, with its own ladder (ledger first, then its workflow).

        Returns the new balance's account number, or None when no visit is post-petition.

        Raises:
            LookupError: no such account.
        """
        with self.session_factory.begin() as session:
            account = repo.account_by_number(session, account_number)
            if account is None:
                raise LookupError(f"account: no account {account_number!r}")
            lines = session.scalars(
                select(ChargeLine).where(
                    ChargeLine.account_id == account.id, ChargeLine.service_date >= filed_on
                )
            ).all()
            if not lines or account.status is not AccountStatus.OPEN or account.balance_cents <= 0:
                return None
            guarantor = session.scalars(
                select(Guarantor)
                .where(Guarantor.id == account.guarantor_id)
                .options(selectinload(Guarantor.channels))
            ).one()
            bundle = protections.policy_of(session, account)
            own = Account(
                account_number=lifecycle.successor_number(session, account),
                guarantor=guarantor,
                policy_name=account.policy_name,
                opened_at=dt.datetime.combine(
                    min(line.service_date for line in lines), dt.time(), dt.UTC
                ),
                continues_account_id=account.id,
            )
            session.add(own)
            session.flush()
            moved = [(line.external_ref, line.balance_cents) for line in lines]
            for line in lines:
                line.account_id = own.id
            # What was paid is taken from the oldest visits first: the post-petition balance is
            # at most what the account still owes.
            cents = min(sum(max(c, 0) for _, c in moved), account.balance_cents)
            account.balance_cents -= cents
            own.balance_cents = cents
            session.add(
                AuditEvent(
                    actor="system",
                    action="post_petition_split",
                    account_id=account.id,
                    detail={"to": own.account_number, "lines": len(moved), "cents": cents},
                )
            )
            inp = self._escalation_input(session, own, guarantor, bundle)
            if cents > 0:
                charge = ChargeSignal(
                    reference=f"split:{account.id}",
                    amount_cents=cents,
                    posted_at=dt.datetime.now(dt.UTC),
                )
                repo.store_policy_version(session, bundle)
                enqueue_start(session, own.id, inp, [charge], policy_stored=True)
            own_id, number = own.id, own.account_number
        await self.deliver(own_id)
        return number

    def _escalation_input(
        self, session: Session, account: Account, guarantor: Guarantor, bundle: PolicyBundle
    ) -> EscalationInput:
        profile = protections.apply_requests_to_profile(
            session,
            guarantor,
            account,
            repo.contact_profile(guarantor, bundle.policy.contact.sms_requires_consent),
        )
        return EscalationInput(
            account_id=str(account.id),
            policy=bundle.policy,
            policy_hash=bundle.hash,
            profile=profile,
            opened_at=account.opened_at,
            features=FEATURES,  # every patch in force from the first event, no markers
        )

    def _post_lines(
        self,
        session: Session,
        account: Account,
        rows: list[BalanceRow],
        guarantor: Guarantor,
        bundle: PolicyBundle,
        *,
        collect: bool = True,
    ) -> tuple[EscalationInput, list[ChargeSignal]]:
        """Add new charge lines to the account; with ``collect``, start or join its ladder."""
        opened = (
            dt.datetime.combine(min(r.service_date for r in rows), dt.time(), dt.UTC)
            if rows
            else account.opened_at
        )
        before = account.balance_cents
        # A workflow follows the account while it is open and owes something; otherwise the new
        # lines net against any credit first and only the rest starts a ladder.
        running = account.status is AccountStatus.OPEN and before > 0
        new_lines: list[tuple[str, int]] = []
        for row in rows:
            line = ChargeLine(
                external_ref=row.charge_ref,
                service_date=row.service_date,
                description=row.description,
                charges_cents=row.charges,
                insurance_paid_cents=row.insurance_paid,
                insurance_adjustment_cents=row.insurance_adjustment,
                patient_paid_cents=row.patient_paid,
                **protections.charge_fields(session, guarantor, row),
            )
            new = repo.add_charge_line(session, account, line)
            if new:
                protections.after_charge(session, account, line)
                new_lines.append((row.charge_ref, line.balance_cents))
        routing = credits.route_new_lines(before, running, new_lines)
        if not collect:  # a stayed or estate balance: the ledger holds the lines, nobody is asked
            routing = credits.Routing()
        now = dt.datetime.now(dt.UTC)
        charges = [
            ChargeSignal(reference=ref, amount_cents=cents, posted_at=now)
            for ref, cents in routing.charges
        ]
        if charges and account.status is not AccountStatus.OPEN:
            account.status = AccountStatus.OPEN
            account.closed_at = None
            account.opened_at = opened
        repo.add_dependent(
            session,
            AuditEvent(
                actor="import",
                action="balance_imported",
                account_id=account.id,
                detail={"charges": len(charges)},
            ),
        )
        inp = self._escalation_input(session, account, guarantor, bundle)
        # The caller stored the policy's version (post_account_checked): the message names it.
        if running:
            for charge in charges:
                enqueue(session, account.id, "add_charge", charge, start=inp, policy_stored=True)
        else:  # no ladder runs: one start, the charges in its input
            enqueue_start(session, account.id, inp, charges, policy_stored=True)
        for ref, cents in routing.adjustments:
            enqueue(
                session,
                account.id,
                "post_adjustment",
                AdjustmentSignal(
                    reference=f"line:{ref}", kind=AdjustmentKind.ADJUSTMENT, amount_cents=cents
                ),
            )
        return inp, charges

    async def post_payment(
        self,
        account_number: str,
        amount_cents: int,
        reference: str,
        *,
        received_at: dt.datetime | None = None,
        method: str = "other",
        posted_by: str = "staff",
    ) -> tuple[bool, int]:
        """Record a payment once and tell the workflow. Returns (new, balance after, in cents)."""
        posted = await self.post_payment_fact(
            account_number,
            amount_cents,
            reference,
            received_at=received_at,
            method=method,
            posted_by=posted_by,
        )
        return posted.new, posted.balance_cents

    async def post_payment_fact(
        self,
        account_number: str,
        amount_cents: int,
        reference: str,
        *,
        received_at: dt.datetime | None = None,
        method: str = "other",
        posted_by: str = "staff",
    ) -> Posted:
        """Record a payment once, queue its signal in the same transaction, then deliver it.

        Raises:
            LookupError: no such account.
            repo.ReferenceConflict: the reference was posted with another amount or account.
        """
        payment = PaymentSignal(
            reference=reference,
            amount_cents=amount_cents,
            received_at=received_at or dt.datetime.now(dt.UTC),
        )
        with self.session_factory.begin() as session:
            account = repo.account_by_number(session, account_number)
            if account is None:
                raise LookupError(f"account: no account {account_number!r}")
            told_agency = False
            _, new = repo.record_payment(
                session,
                account,
                payment.reference,
                payment.amount_cents,
                payment.received_at or dt.datetime.now(dt.UTC),
                method,
                posted_by,
            )
            if new:
                session.add(
                    AuditEvent(
                        actor=posted_by,
                        action="payment_posted",
                        account_id=account.id,
                        detail={"reference": reference, "amount_cents": amount_cents},
                    )
                )
                if account.status is AccountStatus.OPEN:
                    enqueue(session, account.id, "record_payment", payment)
                told_agency = agency.record_update(
                    session, account, agency.Change.PAYMENT, reference, posted_by, -amount_cents
                )
            account_id, balance = str(account.id), account.balance_cents
        if told_agency:
            agency.write_update_file(self.session_factory, agency.export_dir(self.settings))
        return Posted(new, balance, await self.deliver(account_id))

    async def import_payments(self, path: Path, *, dry_run: bool = False) -> ImportReport:
        rows, errors = parse_rows(path, PaymentRow)
        if errors:
            raise CsvImportError(errors)
        report = ImportReport(rows=len(rows))
        with self.session_factory() as session:
            unknown = [
                RowError(line, "account_number", "no such account")
                for line, row in rows
                if repo.account_by_number(session, row.account_number) is None
            ]
        if unknown:
            raise CsvImportError(unknown)
        conflicts = self._payment_conflicts(rows)
        if conflicts:
            raise CsvImportError(conflicts)
        if dry_run:
            return report
        for _, row in rows:
            received = (
                dt.datetime.combine(row.received_on, dt.time(12), dt.UTC)
                if row.received_on
                else None
            )
            posted = await self.post_payment_fact(
                row.account_number,
                row.amount,
                row.reference,
                received_at=received,
                method=row.method,
                posted_by="import",
            )
            report.new_charges += int(posted.new)
            report.queued += int(not posted.delivered)
        return report

    def _payment_conflicts(self, rows: list[tuple[int, PaymentRow]]) -> list[RowError]:
        """References reused with another amount or account, in the file or in the ledger."""
        errors: list[RowError] = []
        seen: dict[str, tuple[int, str, int]] = {}
        for line, row in rows:
            first = seen.setdefault(row.reference, (line, row.account_number, row.amount))
            if first[1:] != (row.account_number, row.amount):
                errors.append(
                    RowError(
                        line,
                        "reference",
                        f"{row.reference!r} is also on row {first[0]} with another amount"
                        " or account",
                    )
                )
        with self.session_factory() as session:
            stored = {
                p.reference: p
                for p in session.scalars(
                    select(Payment).where(Payment.reference.in_(list(seen)))
                ).all()
            }
            numbers = {
                a.id: a.account_number
                for a in session.scalars(
                    select(Account).where(Account.id.in_({p.account_id for p in stored.values()}))
                ).all()
            }
        for line, row in rows:
            known = stored.get(row.reference)
            if known is not None and (
                known.amount_cents != row.amount or numbers[known.account_id] != row.account_number
            ):
                errors.append(
                    RowError(
                        line,
                        "reference",
                        f"{row.reference!r} was already posted with another amount or account",
                    )
                )
        return sorted(errors, key=lambda e: e.row)

    def account_id(self, account_number: str) -> str:
        with self.session_factory() as session:
            account = repo.account_by_number(session, account_number)
            if account is None:
                raise LookupError(f"account: no account {account_number!r}")
            return str(account.id)

    def guarantor(self, account_number: str) -> Guarantor:
        with self.session_factory() as session:
            account = (
                session.query(Account)
                .options(selectinload(Account.guarantor).selectinload(Guarantor.channels))
                .filter_by(account_number=account_number)
                .one()
            )
            return account.guarantor

    async def post_adjustment(
        self, account_number: str, adjustment: AdjustmentSignal, posted_by: str = "system"
    ) -> tuple[bool, int]:
        """Record an adjustment once in the ledger, then tell the workflow. (new, balance)"""
        posted = await self.post_adjustment_fact(account_number, adjustment, posted_by)
        return posted.new, posted.balance_cents

    async def post_adjustment_fact(
        self, account_number: str, adjustment: AdjustmentSignal, posted_by: str = "system"
    ) -> Posted:
        """Record an adjustment once with its queued signal, then deliver it.

        Raises:
            LookupError: no such account.
            repo.ReferenceConflict: the reference was posted with another amount, kind or account.
        """
        with self.session_factory.begin() as session:
            account = repo.account_by_number(session, account_number)
            if account is None:
                raise LookupError(f"account: no account {account_number!r}")
            told_agency = False
            new = repo.record_adjustment(
                session,
                account,
                adjustment.reference,
                adjustment.kind.value,
                adjustment.amount_cents,
                posted_by,
            )
            if new:
                session.add(
                    AuditEvent(
                        actor=posted_by,
                        action="adjustment_posted",
                        account_id=account.id,
                        detail={
                            "reference": adjustment.reference,
                            "kind": adjustment.kind.value,
                            "amount_cents": adjustment.amount_cents,
                        },
                    )
                )
                if account.status is AccountStatus.OPEN:
                    enqueue(session, account.id, "post_adjustment", adjustment)
                told_agency = agency.record_update(
                    session,
                    account,
                    agency.Change.ADJUSTMENT,
                    adjustment.reference,
                    posted_by,
                    adjustment.amount_cents,
                )
            account_id, balance = str(account.id), account.balance_cents
        if told_agency:
            agency.write_update_file(self.session_factory, agency.export_dir(self.settings))
        return Posted(new, balance, await self.deliver(account_id))

    async def channel_event(
        self, account_number: str, event: ChannelEventSignal, actor: str = "system"
    ) -> None:
        """Record a bounce, returned letter, STOP or consent; then tell the workflow."""
        with self.session_factory.begin() as session:
            account = repo.account_by_number(session, account_number)
            if account is None:
                raise LookupError(f"account: no account {account_number!r}")
            guarantor = session.scalars(
                select(Guarantor)
                .where(Guarantor.id == account.guarantor_id)
                .options(selectinload(Guarantor.channels))
            ).one()
            record_channel_event(session, guarantor, event)
            session.add(
                AuditEvent(
                    actor=actor,
                    action=event.kind.value,
                    account_id=account.id,
                    detail={
                        "channel": event.channel.value if event.channel else None,
                        "reference": event.reference,
                    },
                )
            )
            if account.status is AccountStatus.OPEN:
                enqueue(session, account.id, "channel_event", event)
            account_id = str(account.id)
        await self.deliver(account_id)

    async def record_call_outcome(
        self,
        task_id: str,
        result: CallResult,
        *,
        recorded_by: str,
        called_at: dt.datetime | None = None,
        promised_date: dt.date | None = None,
        promised_cents: int | None = None,
        note: str = "",
    ) -> CallOutcomeSignal:
        """Close a call task with its outcome in the ledger, then tell the workflow."""
        with self.session_factory.begin() as session:
            task = session.get(StaffTask, uuid.UUID(task_id))
            if task is None:
                raise LookupError(f"task: no call task {task_id}")
            outcome = calls.record_call_outcome(
                session,
                task.id,
                result,
                called_at=called_at or dt.datetime.now(dt.UTC),
                recorded_by=recorded_by,
                promised_date=promised_date,
                promised_cents=promised_cents,
                note=note,
            )
            account = session.get(Account, task.account_id)
            assert account is not None
            if account.status is AccountStatus.OPEN:
                enqueue(session, account.id, "record_call_outcome", outcome)
            account_id = str(account.id)
        await self.deliver(account_id)
        return outcome
