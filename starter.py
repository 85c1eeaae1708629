"""Typed functions that start and message workflows; used by the CLI, the HTTP API and the tests.

Ledger first, workflow second: a payment or charge is committed in PostgreSQL (idempotent by its
external reference) in the same transaction as the message that tells its workflow (the signal
outbox, ``services.signal_outbox``). The message is then delivered at once when Temporal answers,
or later by the worker's dispatcher when it does not; the workflow deduplicates every message by
the same reference. Repeating any call after a failure is therefore always safe, and no fact is
lost while Temporal is away.
"""

from __future__ import annotations

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
    HardshipRequest,
    HoldRequest,
    PlanRequest,
    ReferralRequest,
    ResumeRequest,
    SettlementRequest,
    WriteOffRequest,
)
from models.imports import BalanceRow, CsvImportError, PaymentRow, RowError, parse_rows
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
from services import credits, protections
from services.signal_outbox import INTAKE_RPC_TIMEOUT, Dispatcher, enqueue
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
from workflows.escalation import BalanceEscalationWorkflow

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
        pref.opted_out_at = now  # refused at send time too
    elif event.kind is ChannelEventKind.RESTRICTION_LIFTED:
        # A text or email opt-out may also be a STOP: only fresh consent restores those.
        if event.channel in (Channel.LETTER, Channel.CALL):
            pref.opted_out_at = None
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


class Intake:
    """Posts balances and payments to the ledger and routes them to the accounts' workflows."""

    def __init__(
        self, session_factory: sessionmaker[Session], client: Client | None, settings: Settings
    ) -> None:
        self.session_factory = session_factory
        self._client = client
        self.settings = settings
        self._policies: dict[str, PolicyBundle] = {}
        self.dispatcher = Dispatcher(
            client, session_factory, settings.temporal.task_queue, INTAKE_RPC_TIMEOUT
        )

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

    async def import_balances(self, path: Path, *, dry_run: bool = False) -> ImportReport:
        """All-or-nothing: any bad row and nothing is written; every bad row is reported."""
        rows, errors = parse_rows(path, BalanceRow)
        for line, row in rows:
            name = row.policy or self.settings.practice.default_policy
            try:
                self.policy(name)
            except PolicyFileError as exc:
                errors.append(
                    RowError(line, "policy", f"policy {name!r} is not usable: {exc.errors[0]}")
                )
        if errors:
            raise CsvImportError(sorted(errors, key=lambda e: e.row))
        report = ImportReport(rows=len(rows))
        by_account: dict[str, list[BalanceRow]] = defaultdict(list)
        for _, row in rows:
            by_account[row.account_number].append(row)
        report.accounts = len(by_account)
        if dry_run:
            return report
        pending: list[str] = []
        with self.session_factory.begin() as session:
            # Two queries for the chunk's accounts and guarantors; the rows are then written in
            # one flush at commit (multi-row INSERTs), not a round trip per account.
            repo.preload_batch(
                session,
                list(by_account),
                list(dict.fromkeys(rows[0].guarantor_id for rows in by_account.values())),
            )
            for number, account_rows in by_account.items():
                inp, charges = self.post_account(session, number, account_rows)
                report.new_charges += len(charges)
                if charges:
                    pending.append(inp.account_id)
            repo.flush_batch(session)
        # The ledger and its messages are committed together; now the workflows, several
        # accounts at a time (each account's messages in order). What Temporal does not take now
        # stays in the outbox for the worker's dispatcher.
        # A bulk import waits on a busy server longer than a single request does.
        bulk = Dispatcher(self._client, self.session_factory, self.settings.temporal.task_queue)
        delivered = await bulk.deliver_many(pending)
        report.started_or_joined = delivered
        report.queued = len(pending) - delivered
        return report

    def post_account(
        self, session: Session, number: str, rows: list[BalanceRow]
    ) -> tuple[EscalationInput, list[ChargeSignal]]:
        first = rows[0]
        bundle = self.policy(first.policy or self.settings.practice.default_policy)
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
        repo.set_channel_consent(session, guarantor, Channel.SMS, first.sms_consent)
        account = repo.account_by_number(session, number)
        opened = dt.datetime.combine(min(r.service_date for r in rows), dt.time(), dt.UTC)
        if account is None:
            account = repo.new_account(
                session,
                account_number=number,
                guarantor=guarantor,
                policy_name=bundle.policy.name,
                opened_at=opened,
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
        profile = protections.apply_requests_to_profile(
            session,
            guarantor,
            account,
            repo.contact_profile(guarantor, bundle.policy.contact.sms_requires_consent),
        )
        inp = EscalationInput(
            account_id=str(account.id),
            policy=bundle.policy,
            policy_hash=bundle.hash,
            profile=profile,
            opened_at=account.opened_at,
        )
        for charge in charges:
            enqueue(session, account.id, "add_charge", charge, start=inp)
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
            account_id, balance = str(account.id), account.balance_cents
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
            account_id, balance = str(account.id), account.balance_cents
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
