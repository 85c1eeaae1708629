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
import json
import logging
import time
import uuid
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_json
from sqlalchemy import Text, case, func, select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.common import RawValue, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from models.actions import AdjustmentSignal, ChannelEventSignal, LifeEventSignal
from models.orm import Account, AccountStatus, PolicyVersion, SignalOutbox
from models.orm.repositories import add_dependent
from models.payloads import CallOutcomeSignal, ChargeSignal, EscalationInput, PaymentSignal
from models.policy import Policy
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
DISPATCH_CONCURRENCY = 16
"""Accounts delivered at once: the server, not the client, sets the pace."""
BATCH_ACCOUNTS = 200
DELIVERY_BATCH = 500
"""Accounts whose pending messages are read, sent and marked together."""
QUIET_AFTER_FAILURE = dt.timedelta(seconds=5)
UNREACHABLE = frozenset(
    {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED}
)

DELIVERED = "delivered"
NO_WORKFLOW = "no_workflow"  # the account has no running workflow: the ledger is the answer
SKIPPED = "skipped"  # a start whose account was paid or closed before it could be delivered


_Raw = tuple[str, str, bool]
"""A start input that names a stored policy version, as read: its JSON text without the version,
the version's hash, and whether it carries charges."""
_Pending = tuple[int, str, dict[str, Any], dict[str, Any] | None, _Raw | None]
"""A queued message: its id, signal name, payload, and its start input (both None: a plain
signal), parsed, or as text when it names a stored policy version (delivered without parsing)."""


def workflow_id(account_id: str | uuid.UUID) -> str:
    return f"balance-{account_id}"


_POLICY_CACHE_SIZE = 64
POLICY_VERSION = "policy_version"
"""Key of a stored start input that names its policy by the hash of a stored version
(``policy_versions``) instead of carrying the whole policy with every queued start."""

_VERSIONS: dict[str, tuple[Policy, bytes]] = {}
"""Stored policy versions already read, by hash, with their JSON: a version never changes."""
_LOADED_POLICIES: dict[str, tuple[dict[str, Any], Policy]] = {}
"""A delivered start's policy by its hash, with the JSON it was read from: a batch of starts on
one policy validates it once. Used only when a row's JSON equals the cached JSON."""
_ENCODED_POLICIES: dict[int, tuple[Policy, bytes]] = {}
"""A policy's JSON by the policy object's id (kept alive here, so the id is not reused)."""


def _remember(cache: dict[Any, Any], key: object, value: object) -> None:
    if len(cache) >= _POLICY_CACHE_SIZE:
        cache.clear()
    cache[key] = value


def start_input_json(start: EscalationInput, *, policy_stored: bool = False) -> dict[str, Any]:
    """A workflow input as the outbox stores it: ``model_dump(mode="json")``, or, when the
    policy's version is stored in ``policy_versions`` (``policy_stored``), without the policy,
    which is then named by its hash (:data:`POLICY_VERSION`)."""
    if policy_stored:
        data = start.model_dump(mode="json", exclude={"policy"})
        data[POLICY_VERSION] = start.policy_hash
        return data
    return start.model_dump(mode="json")


def load_versions(session: Session, inputs: Iterable[dict[str, Any] | None]) -> None:
    """Read the stored policy versions the inputs name and are not known yet: one query."""
    wanted = {
        str(data[POLICY_VERSION])
        for data in inputs
        if data is not None and POLICY_VERSION in data and data[POLICY_VERSION] not in _VERSIONS
    }
    if not wanted:
        return
    for hash_, document in session.execute(
        select(PolicyVersion.hash, PolicyVersion.document).where(PolicyVersion.hash.in_(wanted))
    ):
        policy = Policy.model_validate(document["policy"])
        _remember(_VERSIONS, hash_, (policy, to_json(policy)))


def start_input_model(data: dict[str, Any]) -> EscalationInput:
    """A stored workflow input as a model. A policy named by its stored version comes from
    :func:`load_versions`; a policy carried whole and already validated (same hash, same JSON)
    is reused instead of validated again for every start.

    Raises:
        LookupError: the input names a policy version that is not stored.
    """
    if POLICY_VERSION in data:
        version = _VERSIONS.get(str(data[POLICY_VERSION]))
        if version is None:
            raise LookupError(f"policy version {data[POLICY_VERSION]} is not stored")
        rest = {k: v for k, v in data.items() if k != POLICY_VERSION}
        # A model instance is taken as it is (pydantic does not validate instances again).
        return EscalationInput.model_validate({**rest, "policy": version[0]})
    policy_json = data.get("policy")
    cached = _LOADED_POLICIES.get(str(data.get("policy_hash")))
    if cached is not None and cached[0] == policy_json:
        rest = {k: v for k, v in data.items() if k != "policy"}
        return EscalationInput.model_validate({**rest, "policy": cached[1]})
    inp = EscalationInput.model_validate(data)
    if isinstance(policy_json, dict):
        _remember(_LOADED_POLICIES, inp.policy_hash, (policy_json, inp.policy))
    return inp


def start_payload(inp: EscalationInput) -> RawValue:
    """The workflow input as the data converter would send it (``pydantic_core.to_json``, JSON
    encoding), the policy's JSON made once per policy: the same document, field order aside."""
    cached = _ENCODED_POLICIES.get(id(inp.policy))
    if cached is None or cached[0] is not inp.policy:
        cached = (inp.policy, to_json(inp.policy))
        _remember(_ENCODED_POLICIES, id(inp.policy), cached)
    rest = to_json(inp, exclude={"policy"})
    data = rest[:-1] + (b',"policy":' if len(rest) > 2 else b'"policy":') + cached[1] + b"}"
    return RawValue(Payload(metadata={"encoding": JSON_ENCODING}, data=data))


JSON_ENCODING = b"json/plain"


def raw_start(text: str, version: str) -> RawValue:
    """A stored start input (JSON text, its policy named by ``version``) as the workflow input
    the data converter would send: the text with the stored version's policy JSON joined in.

    Raises:
        LookupError: the version is not stored (:func:`load_versions` read none).
    """
    found = _VERSIONS.get(version)
    if found is None:
        raise LookupError(f"policy version {version} is not stored")
    data = text.encode()
    joined = data[:-1] + (b', "policy": ' if len(data) > 2 else b'"policy": ') + found[1] + b"}"
    return RawValue(Payload(metadata={"encoding": JSON_ENCODING}, data=joined))


def enqueue(
    session: Session,
    account_id: str | uuid.UUID,
    name: str,
    payload: BaseModel,
    *,
    start: EscalationInput | None = None,
    policy_stored: bool = False,
) -> None:
    """Queue a message for the account's workflow in the caller's transaction.

    ``start`` makes it a signal-with-start (a charge that opens the account's workflow);
    ``policy_stored`` says that its policy's version is in ``policy_versions``
    (``repositories.store_policy_version``), so the message names it instead of carrying it.
    """
    add_dependent(
        session,
        SignalOutbox(
            account_id=uuid.UUID(str(account_id)),
            name=name,
            payload=payload.model_dump(mode="json"),
            start_input=(
                start_input_json(start, policy_stored=policy_stored) if start is not None else None
            ),
        ),
    )


def enqueue_start(
    session: Session,
    account_id: str | uuid.UUID,
    start: EscalationInput,
    charges: list[ChargeSignal],
    *,
    policy_stored: bool = False,
) -> None:
    """Queue the start of a balance that has no running workflow, its first ``charges`` in its
    input: one plain start, not a signal-with-start per charge (a signal-with-start costs the
    server about a fifth more than a start). Should a workflow run after all, the dispatcher
    sends the charges as signals-with-start instead (:meth:`Dispatcher._send`)."""
    if not charges:
        return
    enqueue(
        session,
        account_id,
        "add_charge",
        charges[0],
        start=start.model_copy(update={"charges": charges}),
        policy_stored=policy_stored,
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
        concurrency: int = DISPATCH_CONCURRENCY,
    ) -> None:
        self.client = client
        self.concurrency = concurrency
        self.session_factory = session_factory
        self.task_queue = task_queue
        self.rpc_timeout = rpc_timeout
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        self._quiet_until = 0.0  # after a failed delivery, messages queue without a new attempt
        self._gates: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    def _gate(self) -> asyncio.Semaphore:
        """At most ``concurrency`` messages in flight for this dispatcher, whichever of its
        deliveries sends them: batches delivered at the same time share the limit."""
        loop = asyncio.get_running_loop()
        gate = self._gates.get(loop)
        if gate is None:
            self._gates = {k: v for k, v in self._gates.items() if not k.is_closed()}
            gate = self._gates[loop] = asyncio.Semaphore(self.concurrency)
        return gate

    async def deliver_account(self, account_id: str | uuid.UUID) -> bool:
        """Send the account's pending messages in order. True when none is left pending."""
        return await self.deliver_many([account_id]) == 1

    async def deliver_many(self, accounts: Iterable[str | uuid.UUID]) -> int:
        """Deliver several accounts' messages, ``concurrency`` accounts at a time, each account's
        in order. Returns how many accounts have nothing left pending.

        A batch of accounts costs one query for their pending messages, one for whether their
        balances are still owed, and one transaction marking what was delivered: not one of
        each per account.
        """
        keys = list(dict.fromkeys(uuid.UUID(str(a)) for a in accounts))
        clear = 0
        for first in range(0, len(keys), DELIVERY_BATCH):
            if self.client is None or time.monotonic() < self._quiet_until:
                break
            clear += await self._deliver_batch(self.client, keys[first : first + DELIVERY_BATCH])
        return clear

    async def _deliver_batch(self, client: Client, keys: list[uuid.UUID]) -> int:
        pending = await asyncio.to_thread(self._pending, keys)
        gate = self._gate()
        done: list[tuple[int, str]] = []
        failed: list[tuple[int, str]] = []

        async def one(key: uuid.UUID) -> bool:
            async with gate:
                lock = self._locks.setdefault(key, asyncio.Lock())
                waited = lock.locked()
                try:
                    async with lock:
                        rows, owed = pending.get(key, ([], False))
                        if waited:  # another delivery of this account ran meanwhile: look again
                            rows, owed = (await asyncio.to_thread(self._pending, [key])).get(
                                key, ([], False)
                            )
                        return await self._send_in_order(client, key, rows, owed, done, failed)
                finally:
                    if not lock.locked() and self._locks.get(key) is lock:
                        del self._locks[key]

        results = await asyncio.gather(*(one(k) for k in keys))
        if done or failed:
            await asyncio.to_thread(self._mark, done, failed)
        return sum(results)

    async def _send_in_order(
        self,
        client: Client,
        account_id: uuid.UUID,
        rows: list[_Pending],
        owed: bool,
        done: list[tuple[int, str]],
        failed: list[tuple[int, str]],
    ) -> bool:
        """One account's messages, oldest first; the first failure leaves it and later ones."""
        for row_id, name, payload, start_input, raw in rows:
            if time.monotonic() < self._quiet_until:
                return False  # Temporal failed for another account: leave these queued
            try:
                outcome = await self._send(
                    client, account_id, name, payload, start_input, raw, owed
                )
            except Exception as exc:  # any failure leaves this and later messages pending
                failed.append((row_id, _error_text(exc)))
                if not isinstance(exc, RPCError) or exc.status in UNREACHABLE:
                    # Temporal is away: the next facts queue at once instead of waiting too.
                    self._quiet_until = time.monotonic() + QUIET_AFTER_FAILURE.total_seconds()
                return False
            done.append((row_id, outcome))
        return True

    async def _start(
        self,
        client: Client,
        account_id: uuid.UUID,
        inp: RawValue,
        signal: str | None = None,
        arg: object = None,
    ) -> bool:
        """Start the account's workflow; with ``signal``, a signal-with-start that joins a running
        one. Without: False when a workflow of the account runs already."""
        try:
            await asyncio.wait_for(
                client.start_workflow(
                    WORKFLOW_NAME,
                    inp,
                    id=workflow_id(account_id),
                    task_queue=self.task_queue,
                    start_signal=signal,
                    start_signal_args=[arg] if signal is not None else [],
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                    id_conflict_policy=(
                        WorkflowIDConflictPolicy.USE_EXISTING
                        if signal is not None
                        else WorkflowIDConflictPolicy.FAIL
                    ),
                    rpc_timeout=self.rpc_timeout,
                ),
                # The client retries an unreachable server for longer than its rpc_timeout.
                self.rpc_timeout.total_seconds(),
            )
        except WorkflowAlreadyStartedError:
            return False
        return True

    def _pending(self, keys: list[uuid.UUID]) -> dict[uuid.UUID, tuple[list[_Pending], bool]]:
        """Each account's pending messages in order, and whether its balance is still owed."""
        by_account: dict[uuid.UUID, list[_Pending]] = {}
        named = SignalOutbox.start_input.has_key(POLICY_VERSION)
        with self.session_factory() as session:
            for (
                account_id,
                row_id,
                name,
                payload,
                start_input,
                text,
                version,
                charges,
            ) in session.execute(
                select(
                    SignalOutbox.account_id,
                    SignalOutbox.id,
                    SignalOutbox.name,
                    SignalOutbox.payload,
                    # An input that names a stored version comes as text (see _send).
                    case((named, None), else_=SignalOutbox.start_input),
                    case((named, SignalOutbox.start_input.op("-")(POLICY_VERSION).cast(Text))),
                    SignalOutbox.start_input[POLICY_VERSION].astext,
                    func.coalesce(func.jsonb_array_length(SignalOutbox.start_input["charges"]), 0),
                )
                .where(SignalOutbox.account_id.in_(keys), SignalOutbox.delivered_at.is_(None))
                .order_by(SignalOutbox.account_id, SignalOutbox.id)
            ):
                raw = (text, version, charges > 0) if text is not None else None
                by_account.setdefault(account_id, []).append(
                    (row_id, name, payload, start_input, raw)
                )
            load_versions(
                session,
                (
                    r[3] if r[4] is None else {POLICY_VERSION: r[4][1]}
                    for rows in by_account.values()
                    for r in rows
                ),
            )
            starting = [
                k
                for k, rows in by_account.items()
                if any(r[3] is not None or r[4] is not None for r in rows)
            ]
            owed = (
                set(
                    session.scalars(
                        select(Account.id).where(
                            Account.id.in_(starting),
                            Account.status == AccountStatus.OPEN,
                            Account.balance_cents > 0,
                        )
                    )
                )
                if starting
                else set()
            )
        return {k: (rows, k in owed) for k, rows in by_account.items()}

    async def _send(
        self,
        client: Client,
        account_id: uuid.UUID,
        name: str,
        payload: dict[str, Any],
        start_input: dict[str, Any] | None,
        raw: _Raw | None,
        owed: bool,
    ) -> str:
        model = SIGNAL_TYPES.get(name)
        arg: object = model.model_validate(payload) if model is not None else payload
        if start_input is not None or raw is not None:
            if not owed:
                # A start redelivered after the balance was paid must not open a new ladder.
                return SKIPPED
            if raw is not None:
                text, version, charges = raw
                # A new balance's start, the common case of an import: its stored JSON and the
                # version's, joined, without parsing and validating the input again.
                if charges and await self._start(client, account_id, raw_start(text, version)):
                    return DELIVERED
                start_input = {**json.loads(text), POLICY_VERSION: version}
            assert start_input is not None
            inp = start_input_model(start_input)
            if (
                raw is None
                and inp.charges
                and await self._start(client, account_id, start_payload(inp))
            ):
                return DELIVERED
            # Its workflow runs (a redelivered start, or a ladder that was still closing): each
            # charge joins it, or opens a new one should it have ended meanwhile.
            joining: list[object] = list(inp.charges) or [arg]
            for charge in joining:
                await self._start(client, account_id, start_payload(inp), name, charge)
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

    def _mark(self, done: list[tuple[int, str]], failed: list[tuple[int, str]]) -> None:
        """Mark a batch: one UPDATE per outcome for what was delivered, one per failure."""
        now = dt.datetime.now(dt.UTC)
        by_outcome: dict[str, list[int]] = {}
        for row_id, outcome in done:
            by_outcome.setdefault(outcome, []).append(row_id)
        with self.session_factory.begin() as session:
            for outcome, ids in by_outcome.items():
                session.execute(
                    update(SignalOutbox)
                    .where(SignalOutbox.id.in_(ids), SignalOutbox.delivered_at.is_(None))
                    .values(
                        delivered_at=now,
                        outcome=outcome,
                        attempts=SignalOutbox.attempts + 1,
                        last_error=None,
                    )
                )
            for row_id, error in failed:
                session.execute(
                    update(SignalOutbox)
                    .where(SignalOutbox.id == row_id)
                    .values(attempts=SignalOutbox.attempts + 1, last_error=error)
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
