"""Reconciliation: the ledger against the workflows, and repairs where they disagree.

For every open account that owes something the ledger expects a running workflow with the same
balance; for every running workflow it expects an open account. What differs is a drift:

- ``missing_workflow``: an open balance no workflow follows. Repair: start one with the balance.
- ``balance``: the workflow's balance is not the ledger's (a lost signal). Repair: an adjustment
  signal for the difference (deduplicated by a reference naming both balances).
- ``orphan_workflow``: a workflow for an account that is not open or owes nothing. Repair: the
  same adjustment, bringing it to the ledger's balance, which ends it.
- ``unknown_account``: a workflow for no account in the ledger. Repair: terminate it.

Pending outbox messages are delivered first: a fact on its way is not a drift. Every drift is
printed by the caller and recorded in ``drift_records``. A repairing pass (``fix``, as the daily
schedule runs it) also prunes delivered bookkeeping rows past ``ledger.retention_days``
(``services.retention``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from config.loader import PolicyBundle, load_policy
from config.settings import Settings
from models.actions import AdjustmentKind, AdjustmentSignal
from models.orm import Account, AccountStatus, DriftRecord, Guarantor, PolicyVersion
from models.orm import repositories as repo
from models.payloads import ChargeSignal, EscalationInput, StatusView
from services.ledger_status import open_refund_tasks
from services.retention import Pruned, prune
from services.signal_outbox import Dispatcher, enqueue, enqueue_start, workflow_id
from workflows.escalation import FEATURES, WORKFLOW_NAME

QUERY_TIMEOUT = dt.timedelta(seconds=5)


@dataclass(frozen=True)
class Drift:
    kind: str
    workflow_id: str
    account_id: str | None
    ledger_cents: int | None
    workflow_cents: int | None
    repaired: bool
    detail: str = ""


@dataclass
class Report:
    checked_accounts: int = 0
    checked_workflows: int = 0
    refund_tasks: int = 0
    drifts: list[Drift] | None = None
    pruned: Pruned | None = None


def _account_id(wid: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(wid.removeprefix("balance-"))
    except ValueError:
        return None


class Reconciler:
    def __init__(
        self, session_factory: sessionmaker[Session], client: Client, settings: Settings
    ) -> None:
        self.session_factory = session_factory
        self.client = client
        self.settings = settings
        self.dispatcher = Dispatcher(client, session_factory, settings.temporal.task_queue)

    async def run(self, *, fix: bool, accounts: list[uuid.UUID] | None = None) -> Report:
        """Compare (and with ``fix`` repair) every open account and running workflow.

        ``accounts`` limits the pass to some accounts (and their workflows).
        """
        report = Report(drifts=[])
        drifts: list[Drift] = []
        await self.dispatcher.deliver_many(self._pending(accounts))
        running = await self._running_workflows(accounts)
        report.checked_workflows = len(running)
        with self.session_factory() as session:
            query = select(Account).where(Account.status == AccountStatus.OPEN)
            query = query.where(Account.balance_cents > 0)
            if accounts is not None:
                query = query.where(Account.id.in_(accounts))
            owing = {a.id: a.balance_cents for a in session.scalars(query)}
            known_ids = [i for i in (_account_id(w) for w in running) if i is not None]
            ledger = {
                a.id: (a.status, a.balance_cents)
                for a in session.scalars(select(Account).where(Account.id.in_(known_ids)))
            }
        report.checked_accounts = len(owing)
        for account_id, balance in owing.items():
            if workflow_id(account_id) not in running:
                drifts.append(await self._missing(account_id, balance, fix))
        for wid in running:
            drift = await self._compare(wid, ledger, fix)
            if drift is not None:
                drifts.append(drift)
        with self.session_factory.begin() as session:
            for d in drifts:
                session.add(
                    DriftRecord(
                        account_id=uuid.UUID(d.account_id) if d.account_id else None,
                        workflow_id=d.workflow_id,
                        kind=d.kind,
                        detail={
                            "ledger_cents": d.ledger_cents,
                            "workflow_cents": d.workflow_cents,
                            "detail": d.detail,
                        },
                        repaired=d.repaired,
                    )
                )
            report.refund_tasks = open_refund_tasks(
                session, dt.datetime.now(dt.UTC), self.settings.ledger.refund_after_days
            )
        report.drifts = drifts
        if fix:
            report.pruned = prune(self.session_factory, self.settings.ledger.retention_days)
        return report

    def _pending(self, accounts: list[uuid.UUID] | None) -> list[uuid.UUID]:
        pending = self.dispatcher.pending_accounts(limit=10_000)
        return [a for a in pending if accounts is None or a in accounts]

    async def _running_workflows(self, accounts: list[uuid.UUID] | None) -> set[str]:
        query = (
            f"WorkflowType = '{WORKFLOW_NAME}' AND ExecutionStatus = 'Running'"
            f" AND TaskQueue = '{self.settings.temporal.task_queue}'"
        )
        wanted = {workflow_id(a) for a in accounts} if accounts is not None else None
        found = set()
        async for execution in self.client.list_workflows(query):
            if wanted is None or execution.id in wanted:
                found.add(execution.id)
        if wanted is not None:
            # Visibility may lag a start by a moment: ask each wanted workflow directly too.
            for wid in wanted - found:
                try:
                    described = await self.client.get_workflow_handle(wid).describe()
                except RPCError as exc:
                    if exc.status is not RPCStatusCode.NOT_FOUND:
                        raise
                    continue
                if described.status is WorkflowExecutionStatus.RUNNING:
                    found.add(wid)
        return found

    async def _status(self, wid: str) -> StatusView:
        view: StatusView = await self.client.get_workflow_handle(wid).query(
            "get_status", result_type=StatusView, rpc_timeout=QUERY_TIMEOUT
        )
        return view

    async def _missing(self, account_id: uuid.UUID, balance: int, fix: bool) -> Drift:
        wid = workflow_id(account_id)
        if fix:
            with self.session_factory.begin() as session:
                inp = self.escalation_input(session, account_id)
                charge = ChargeSignal(
                    reference=f"reconcile:{uuid.uuid4().hex[:16]}",
                    amount_cents=balance,
                    posted_at=dt.datetime.now(dt.UTC),
                )
                enqueue_start(session, account_id, inp, [charge])
            fixed = await self.dispatcher.deliver_account(account_id)
        return Drift("missing_workflow", wid, str(account_id), balance, None, fix and fixed)

    async def _compare(
        self, wid: str, ledger: dict[uuid.UUID, tuple[AccountStatus, int]], fix: bool
    ) -> Drift | None:
        account_id = _account_id(wid)
        if account_id is None or account_id not in ledger:
            if fix:
                await self.client.get_workflow_handle(wid).terminate(
                    reason="reconcile: no account in the ledger"
                )
            return Drift("unknown_account", wid, None, None, None, fix)
        status, ledger_cents = ledger[account_id]
        try:
            view = await self._status(wid)
        except Exception as exc:  # no worker answered: reported, not repaired
            return Drift("unanswered", wid, str(account_id), ledger_cents, None, False, str(exc))
        open_owing = status is AccountStatus.OPEN and ledger_cents > 0
        if open_owing and view.balance_cents == ledger_cents:
            return None
        kind = "balance" if open_owing else "orphan_workflow"
        repaired = False
        if fix and (status is AccountStatus.OPEN or ledger_cents <= 0):
            difference = ledger_cents - view.balance_cents
            if difference:
                adjustment = AdjustmentSignal(
                    reference=f"reconcile:{view.balance_cents}/{ledger_cents}:{uuid.uuid4().hex[:8]}",
                    kind=AdjustmentKind.ADJUSTMENT,
                    amount_cents=difference,
                )
                with self.session_factory.begin() as session:
                    enqueue(session, account_id, "post_adjustment", adjustment)
                repaired = await self.dispatcher.deliver_account(account_id)
        return Drift(
            kind, wid, str(account_id), ledger_cents, view.balance_cents, repaired, status.value
        )

    def escalation_input(self, session: Session, account_id: uuid.UUID) -> EscalationInput:
        """A workflow input for the account from the ledger (its policy, its contact flags)."""
        account = session.scalars(
            select(Account)
            .where(Account.id == account_id)
            .options(selectinload(Account.guarantor).selectinload(Guarantor.channels))
        ).one()
        # The latest stored version of the account's policy (a path-loaded policy has no name
        # to load it by again).
        stored = session.scalars(
            select(PolicyVersion)
            .where(PolicyVersion.name == account.policy_name)
            .order_by(PolicyVersion.created_at.desc())
            .limit(1)
        ).first()
        if stored is not None:
            bundle = PolicyBundle.from_document(stored.document, stored.source_path)
        else:
            bundle = load_policy(account.policy_name)
            repo.store_policy_version(session, bundle)
        profile = repo.contact_profile(
            account.guarantor, bundle.policy.contact.sms_requires_consent
        )
        return EscalationInput(
            account_id=str(account.id),
            policy=bundle.policy,
            policy_hash=bundle.hash,
            profile=profile,
            opened_at=account.opened_at,
            features=FEATURES,  # every patch in force from the first event, no markers
        )
