"""The signal outbox: ledger facts reach their workflow exactly once, even when Temporal is away.

A fact and the message that tells its workflow are committed in one transaction
(:func:`enqueue`). :func:`deliver_account` then sends an account's pending messages in order and
marks them; the worker's dispatcher (:func:`run_dispatcher`) delivers whatever is still pending,
so a payment posted while Temporal was down reaches its workflow when Temporal returns. Delivery is
at least once (a crash between sending and marking sends again); the workflow deduplicates every
message by its reference, so the effect is exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from models.actions import AdjustmentSignal, ChannelEventSignal, LifeEventSignal
from models.orm import Account, AccountStatus, SignalOutbox
from models.payloads import CallOutcomeSignal, ChargeSignal, EscalationInput, PaymentSignal
from workflows.escalation import WORKFLOW_NAME

log = logging.getLogger(__name__)

SIGNAL_TYPES: dict[str, type[BaseModel]] = {
    "add_charge": ChargeSignal,
    "record_payment": PaymentSignal,
    "post_adjustment": AdjustmentSignal,
    "channel_event": ChannelEventSignal,
    "life_event": LifeEventSignal,
    "record_call_outcome": CallOutcomeSignal,
}
"""Payload model of each message the ledger sends; other names are delivered as plain JSON."""

RPC_TIMEOUT = dt.timedelta(seconds=10)
"""The worker's dispatcher: Temporal may be busy, it is not answering a person."""
INTAKE_RPC_TIMEOUT = dt.timedelta(seconds=2)
"""A request that posts a fact tries once, briefly; what Temporal does not take stays queued."""
DISPATCH_INTERVAL = dt.timedelta(seconds=1)
DISPATCH_CONCURRENCY = 8
BATCH_ACCOUNTS = 200
QUIET_AFTER_FAILURE = dt.timedelta(seconds=5)
UNREACHABLE = frozenset(
    {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED}
)

DELIVERED = "delivered"
NO_WORKFLOW = "no_workflow"  # the account has no running workflow: the ledger is the answer
SKIPPED = "skipped"  # a start whose account was paid or closed before it could be delivered


def workflow_id(account_id: str | uuid.UUID) -> str:
    return f"balance-{account_id}"


def enqueue(
    session: Session,
    account_id: str | uuid.UUID,
    name: str,
    payload: BaseModel,
    *,
    start: EscalationInput | None = None,
) -> None:
    """Queue a message for the account's workflow in the caller's transaction.

    ``start`` makes it a signal-with-start (a charge that opens the account's workflow).
    """
    session.add(
        SignalOutbox(
            account_id=uuid.UUID(str(account_id)),
            name=name,
            payload=payload.model_dump(mode="json"),
            start_input=start.model_dump(mode="json") if start is not None else None,
        )
    )


def pending_count(session: Session, account_id: str | uuid.UUID | None = None) -> int:
    query = (
        select(func.count()).select_from(SignalOutbox).where(SignalOutbox.delivered_at.is_(None))
    )
    if account_id is not None:
        query = query.where(SignalOutbox.account_id == uuid.UUID(str(account_id)))
    return int(session.scalar(query) or 0)


class Dispatcher:
    """Delivers pending messages, in order per account, and marks them delivered."""

    def __init__(
        self,
        client: Client | None,
        session_factory: sessionmaker[Session],
        task_queue: str,
        rpc_timeout: dt.timedelta = RPC_TIMEOUT,
    ) -> None:
        self.client = client
        self.session_factory = session_factory
        self.task_queue = task_queue
        self.rpc_timeout = rpc_timeout
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        self._quiet_until = 0.0  # after a failed delivery, messages queue without a new attempt

    async def deliver_account(self, account_id: str | uuid.UUID) -> bool:
        """Send the account's pending messages in order. True when none is left pending."""
        key = uuid.UUID(str(account_id))
        if self.client is None or time.monotonic() < self._quiet_until:
            return False
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                return await self._deliver(self.client, key)
        finally:
            if not lock.locked() and self._locks.get(key) is lock:
                del self._locks[key]

    async def _deliver(self, client: Client, account_id: uuid.UUID) -> bool:
        with self.session_factory() as session:
            rows = session.execute(
                select(
                    SignalOutbox.id,
                    SignalOutbox.name,
                    SignalOutbox.payload,
                    SignalOutbox.start_input,
                )
                .where(SignalOutbox.account_id == account_id, SignalOutbox.delivered_at.is_(None))
                .order_by(SignalOutbox.id)
            ).all()
        done: list[tuple[int, str]] = []
        failed: tuple[int, str] | None = None
        for row_id, name, payload, start_input in rows:
            try:
                outcome = await self._send(client, account_id, name, payload, start_input)
            except Exception as exc:  # any failure leaves this and later messages pending
                failed = (row_id, _error_text(exc))
                if not isinstance(exc, RPCError) or exc.status in UNREACHABLE:
                    # Temporal is away: the next facts queue at once instead of waiting too.
                    self._quiet_until = time.monotonic() + QUIET_AFTER_FAILURE.total_seconds()
                break
            done.append((row_id, outcome))
        self._mark(done, failed)
        return failed is None

    async def _send(
        self,
        client: Client,
        account_id: uuid.UUID,
        name: str,
        payload: dict[str, Any],
        start_input: dict[str, Any] | None,
    ) -> str:
        model = SIGNAL_TYPES.get(name)
        arg: object = model.model_validate(payload) if model is not None else payload
        if start_input is not None:
            if not self._still_owed(account_id):
                # A start redelivered after the balance was paid must not open a new ladder.
                return SKIPPED
            await asyncio.wait_for(
                client.start_workflow(
                    WORKFLOW_NAME,
                    EscalationInput.model_validate(start_input),
                    id=workflow_id(account_id),
                    task_queue=self.task_queue,
                    start_signal=name,
                    start_signal_args=[arg],
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    rpc_timeout=self.rpc_timeout,
                ),
                # The client retries an unreachable server for longer than its rpc_timeout.
                self.rpc_timeout.total_seconds(),
            )
            return DELIVERED
        try:
            await asyncio.wait_for(
                client.get_workflow_handle(workflow_id(account_id)).signal(
                    name, arg, rpc_timeout=self.rpc_timeout
                ),
                self.rpc_timeout.total_seconds(),
            )
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                return NO_WORKFLOW
            raise
        return DELIVERED

    def _still_owed(self, account_id: uuid.UUID) -> bool:
        with self.session_factory() as session:
            row = session.execute(
                select(Account.status, Account.balance_cents).where(Account.id == account_id)
            ).one_or_none()
        return row is not None and row[0] is AccountStatus.OPEN and row[1] > 0

    def _mark(self, done: list[tuple[int, str]], failed: tuple[int, str] | None) -> None:
        if not done and failed is None:
            return
        now = dt.datetime.now(dt.UTC)
        with self.session_factory.begin() as session:
            for row_id, outcome in done:
                session.execute(
                    update(SignalOutbox)
                    .where(SignalOutbox.id == row_id, SignalOutbox.delivered_at.is_(None))
                    .values(
                        delivered_at=now,
                        outcome=outcome,
                        attempts=SignalOutbox.attempts + 1,
                        last_error=None,
                    )
                )
            if failed is not None:
                session.execute(
                    update(SignalOutbox)
                    .where(SignalOutbox.id == failed[0])
                    .values(attempts=SignalOutbox.attempts + 1, last_error=failed[1])
                )

    def pending_accounts(self, limit: int = BATCH_ACCOUNTS) -> list[uuid.UUID]:
        """Accounts with pending messages, the longest waiting first."""
        with self.session_factory() as session:
            first = func.min(SignalOutbox.id)
            return list(
                session.scalars(
                    select(SignalOutbox.account_id)
                    .where(SignalOutbox.delivered_at.is_(None))
                    .group_by(SignalOutbox.account_id)
                    .order_by(first)
                    .limit(limit)
                ).all()
            )

    async def deliver_many(self, accounts: Iterable[str | uuid.UUID]) -> int:
        """Deliver several accounts' messages, a few accounts at a time. How many are clear."""
        gate = asyncio.Semaphore(DISPATCH_CONCURRENCY)

        async def one(account: str | uuid.UUID) -> bool:
            async with gate:
                return await self.deliver_account(account)

        results = await asyncio.gather(*(one(a) for a in accounts))
        return sum(results)

    async def dispatch_pending(self) -> int:
        """One pass over everything pending. Returns how many messages are still pending."""
        accounts = self.pending_accounts()
        if accounts:
            await self.deliver_many(accounts)
        with self.session_factory() as session:
            return pending_count(session)

    async def run(self, stop: asyncio.Event, interval: dt.timedelta = DISPATCH_INTERVAL) -> None:
        """Deliver pending messages until ``stop`` is set; a failed pass is tried again later."""
        while not stop.is_set():
            try:
                await self.dispatch_pending()
            except Exception as exc:  # the database may be away too: try again next time
                log.warning("signal outbox: dispatch failed (%s)", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval.total_seconds())


def _error_text(exc: BaseException) -> str:
    # Temporal's messages carry ids and statuses only; nothing of the patient's.
    return f"{type(exc).__name__}: {exc}"[:300]
