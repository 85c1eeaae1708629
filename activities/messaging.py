"""The one activity of an escalation step: check, render, record, send.

One activity per step, because on one machine the Temporal server's rate of actions, not the
worker, limits throughput. Exactly-once towards the patient rests on the outbox rows: each attempt
on a channel claims the unique idempotency key ``<step key>:<channel>`` and commits it *before*
the provider is called, so a retry, a replay or a killed worker finds the row and never sends twice.

A step walks its fallback chain inside this one activity. Every check is made again at the moment
of sending, not only when the workflow scheduled the step: the account is still open, the channel
has a contact point, consent and no opt-out, is deliverable, the contact cap of its rolling window
is not reached, and it is inside the patient's allowed hours. A recipient the provider refuses for
good (an invalid or unsubscribed number, a landline for SMS, an invalid email) marks the channel
and the next channel of the chain is tried, with its own row. At most one row of a step ever ends
``sent`` (or ``unconfirmed``, when a worker died mid-send), because the chain stops at the first
and every later attempt of the activity starts by looking for it.

Provider failures become ``ApplicationError`` types the workflow's retry policy understands:

- ``ProviderRateLimited`` / ``ProviderUnavailable``: retried after the provider's Retry-After.
  The provider did not take the message, so the claim is released and the retry sends it.
- ``ProviderAuthFailed`` / ``ProviderRejected``: retried slowly and logged as errors. Nothing was
  sent and the step is kept until an operator fixes the configuration.
- ``QuietHours`` / ``ContactCapReached``: retried when the window opens again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import BindParameter, String, Uuid, any_, bindparam, delete, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, joinedload, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.channels import (
    Delivery,
    LetterContent,
    OutgoingMessage,
    ProviderAuthFailed,
    ProviderBusy,
    ProviderUnreachable,
    RecipientRejected,
    Sender,
    SendError,
)
from activities.letters import PRINT_QUEUE, letter_json
from activities.rendering import (
    PAYMENT_TERMS_DAYS,
    Recipient,
    RenderError,
    StatementLine,
    context,
    render,
)
from config.loader import PolicyBundle
from models.orm import (
    Account,
    AccountStatus,
    AuditEvent,
    ChannelPreference,
    ChargeLine,
    Communication,
    CommunicationStatus,
    Deliverability,
    Guarantor,
    PolicyVersion,
    StaffTask,
    TaskKind,
)
from models.orm.repositories import AGING_BUCKETS
from models.payloads import SendStepInput, SendStepResult, StepOutcome
from models.policy import Channel, Policy, StepKind
from services.protections import confidential_address_lines
from workflows.decisions import zone

Clock = Callable[[], dt.datetime]

log = logging.getLogger(__name__)

AUTH_RETRY_DELAY = dt.timedelta(minutes=10)
"""How soon a step refused for our own credentials or request is tried again."""
BUSY_RETRY_DELAY = dt.timedelta(seconds=30)
"""A rate limit or server error without a Retry-After header."""
MAX_RETRY_DELAY = dt.timedelta(hours=6)
"""A provider's Retry-After is honoured up to this; beyond it something else is wrong."""

_COUNTED = (CommunicationStatus.SENT, CommunicationStatus.UNCONFIRMED)
"""Rows that count as contacts: an unconfirmed send may have reached the patient."""

# The hot path's statements take a whole batch as one JSON array of rows: one statement, one
# round trip and the same SQL text whatever the batch's size, so that neither SQLAlchemy nor
# psycopg prepares a new statement for each size (``IN (...)`` and multi-row VALUES would), and
# encoding the rows is one call of the C JSON encoder.
_CLAIM_COLUMNS = {
    "id": "uuid",
    "idempotency_key": "text",
    "account_id": "uuid",
    "step_id": "text",
    "policy_hash": "text",
    "channel": "channel",
    "template": "text",
    "language": "text",
    "status": "communication_status",
    "reasons": "text",
    "recipient": "text",
    "subject": "text",
    "body": "text",
    "provider": "text",
    "provider_id": "text",
    "sent_at": "timestamptz",
    "letter": "jsonb",
}
_MARK_COLUMNS = {
    "id": "uuid",
    "provider": "text",
    "provider_id": "text",
    "file_path": "text",
    "sent_at": "timestamptz",
}
_AUDIT_COLUMNS = {"actor": "text", "action": "text", "account_id": "uuid", "detail": "jsonb"}


def _recordset(columns: Mapping[str, str]) -> str:
    """``jsonb_to_recordset`` of the ``:rows`` parameter, typed by ``columns``."""
    typed = ", ".join(f"{name} {kind}" for name, kind in columns.items())
    return f"jsonb_to_recordset(CAST(:rows AS jsonb)) AS r({typed})"


_CLAIM = text(
    f"INSERT INTO communications ({', '.join(_CLAIM_COLUMNS)}) "
    f"SELECT {', '.join(_CLAIM_COLUMNS)} FROM {_recordset(_CLAIM_COLUMNS)} "
    "ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key"
)
_MARK_SENT = text(
    "UPDATE communications AS c SET status = 'sent', provider = r.provider, "
    "provider_id = r.provider_id, file_path = r.file_path, sent_at = r.sent_at "
    f"FROM {_recordset(_MARK_COLUMNS)} WHERE c.id = r.id"
)
_AUDIT = text(
    f"INSERT INTO audit_events ({', '.join(_AUDIT_COLUMNS)}) "
    f"SELECT {', '.join(_AUDIT_COLUMNS)} FROM {_recordset(_AUDIT_COLUMNS)}"
)


def _rows(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> dict[str, str]:
    """The ``:rows`` parameter of a recordset statement: the rows' columns as a JSON array."""
    return {"rows": json.dumps([{c: row[c] for c in columns} for row in rows], default=_json)}


def _json(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} in an outbox row")


def _array(values: list[Any], item: type[String] | type[Uuid[Any]]) -> BindParameter[Any]:
    """A list as one array parameter (``= ANY(...)``): the same SQL for any number of values."""
    return bindparam(None, values, type_=ARRAY(item()))


def activity_now() -> dt.datetime:
    """Wall-clock time, but never before the server scheduled this attempt.

    On the time-skipping test server the server's clock runs ahead of the wall clock; taking the
    later of the two keeps the send-time checks (quiet hours) right there and in production.
    """
    now = dt.datetime.now(dt.UTC)
    if activity.in_activity():
        return max(now, activity.info().current_attempt_scheduled_time)
    return now


class PolicyStore:
    """Policy versions by content hash. Immutable once stored, so cached without expiry."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._session_factory = session_factory
        self._get = lru_cache(maxsize=64)(self._load)

    def get(self, policy_hash: str) -> PolicyBundle:
        return self._get(policy_hash)

    def _load(self, policy_hash: str) -> PolicyBundle:
        with self._session_factory() as session:
            row = session.get(PolicyVersion, policy_hash)
            if row is None:
                raise ApplicationError(
                    f"policy version {policy_hash[:12]} is not stored",
                    type="PolicyVersionMissing",
                    non_retryable=True,
                )
            return PolicyBundle.from_document(row.document, row.source_path)


def channel_problem(
    policy: Policy,
    channel: Channel,
    guarantor: Guarantor,
    prefs: Mapping[Channel, ChannelPreference],
) -> str:
    """Why ``channel`` may not be used for ``guarantor`` now, or an empty string."""
    address = contact_point(guarantor, channel)
    if not address:
        return f"{channel.value}: no contact point"
    pref = prefs.get(channel)
    if pref is not None:
        if pref.opted_out_at is not None:
            return f"{channel.value}: opted out"
        if pref.deliverability is not Deliverability.OK:
            return f"{channel.value}: {pref.deliverability.value}"
    consented = bool(pref and pref.consent)
    if channel is Channel.SMS and policy.contact.sms_requires_consent and not consented:
        return "sms: no recorded consent (TCPA)"
    return ""


def contact_point(guarantor: Guarantor, channel: Channel) -> str:
    if channel is Channel.EMAIL:
        return guarantor.email or ""
    if channel in (Channel.SMS, Channel.CALL):
        return guarantor.phone or ""
    if not (guarantor.address_line1 and guarantor.city and guarantor.postal_code):
        return ""
    return f"{guarantor.first_name} {guarantor.last_name}, " + ", ".join(address_lines(guarantor))


def address_lines(guarantor: Guarantor) -> list[str]:
    confidential = confidential_address_lines(guarantor)  # HIPAA 164.522(b): only there
    if confidential is not None:
        return confidential
    city = f"{guarantor.city}, {guarantor.region or ''} {guarantor.postal_code}"
    parts = [guarantor.address_line1 or "", guarantor.address_line2 or "", " ".join(city.split())]
    return [p for p in parts if p.strip()]


def attempt_key(step_key: str, channel: Channel) -> str:
    """The outbox key of one channel's attempt at a step."""
    return f"{step_key}:{channel.value}"


def mark_channel(
    session: Session,
    guarantor: Guarantor,
    channel: Channel,
    at: dt.datetime,
    *,
    deliverability: Deliverability | None = None,
    opted_out: bool = False,
) -> None:
    """Record that a channel of ``guarantor`` bounced, is undeliverable, or was opted out of.

    Used by the send itself and by whatever learns it later (a provider's webhook, a returned
    letter entered by staff). Needs ``guarantor.channels`` loaded. Never commits.
    """
    pref = next((p for p in guarantor.channels if p.channel is channel), None)
    if pref is None:
        pref = ChannelPreference(channel=channel, consent=False)
        guarantor.channels.append(pref)
    if deliverability is not None:
        pref.deliverability = deliverability
    if opted_out:
        pref.opted_out_at = pref.opted_out_at or at
        pref.consent = False
    pref.updated_at = at


@dataclass(eq=False)
class _Work:
    """One step on its way through a batch."""

    step: SendStepInput
    now: dt.datetime
    channels: list[Channel]
    """The fallback chain still to try, in order."""
    reasons: list[str] = field(default_factory=list)
    cap_free_in: dt.timedelta | None = None
    account: Account | None = None
    claim: dict[str, Any] | None = None
    """This round's outbox row, to be inserted."""
    won: bool = False
    """The claim was inserted (not raced by another attempt of the step)."""
    tasks: list[StaffTask] = field(default_factory=list)
    """Committed with the claim when it is won: a call task."""
    audits: list[dict[str, Any]] = field(default_factory=list)
    """Committed with the claim when it is won: the audit of a message queued with it."""
    outcome: SendStepResult | BaseException | None = None


class MessagingActivities:
    """Sends escalation steps through the configured senders, exactly once, in batches.

    ``send_steps`` takes the steps that are due together (``StepBatcher`` gathers the worker's
    concurrent ``send_step`` activities) and does each phase once for all of them: one query for
    earlier attempts, one for the accounts, one INSERT of every claim and one durable commit, then
    the sends, then one commit of what they came to. A step's failure is its own outcome; if the
    batch as a whole fails (a database error), each step is tried again alone, so one bad step
    never holds up the others. ``send_step`` is the same for one step.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        senders: Mapping[Channel, Sender],
        policies: PolicyStore,
        clock: Clock = activity_now,
        send_concurrency: int = 16,
    ) -> None:
        self._session_factory = session_factory
        self._senders = senders
        self._policies = policies
        self._clock = clock
        self._send_pool = ThreadPoolExecutor(send_concurrency, thread_name_prefix="provider-send")

    def send_step(self, step: SendStepInput) -> SendStepResult:
        """Check the step is still allowed, render it, claim its outbox row, then send it."""
        outcome = self.send_steps([step])[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def send_steps(
        self,
        steps: Sequence[SendStepInput],
        not_before: Sequence[dt.datetime | None] | None = None,
    ) -> list[SendStepResult | BaseException]:
        """Each step's result, or the exception its activity should fail with.

        ``not_before``: per step, a time the check clock may not be earlier than (the server's
        scheduling time of the attempt; on the time-skipping test server it runs ahead).
        """
        floors = list(not_before) if not_before is not None else [None] * len(steps)
        try:
            return [_reportable(o) for o in self._send_batch(steps, floors)]
        except Exception as exc:
            if len(steps) == 1:
                return [_reportable(exc)]
            log.warning(
                "a batch of %d steps failed (%s); one by one", len(steps), type(exc).__name__
            )
        outcomes: list[SendStepResult | BaseException] = []
        for step, floor in zip(steps, floors, strict=True):
            try:
                outcomes.append(_reportable(self._send_batch([step], [floor])[0]))
            except Exception as exc:
                outcomes.append(_reportable(exc))
        return outcomes

    # -- one batch ---------------------------------------------------------------------------

    def _send_batch(
        self, steps: Sequence[SendStepInput], floors: Sequence[dt.datetime | None]
    ) -> list[SendStepResult | BaseException]:
        clock = self._clock()
        # The same step twice in one batch (a retry overtaking its attempt) is one step.
        unique: dict[str, _Work] = {}
        works: list[_Work] = []
        for step, floor in zip(steps, floors, strict=True):
            work = unique.get(step.idempotency_key)
            if work is None:
                now = max(clock, floor) if floor is not None else clock
                work = unique[step.idempotency_key] = _Work(step, now, list(step.channels))
            works.append(work)
        batch = list(unique.values())
        with self._session_factory() as session:
            self._settle_earlier(session, batch)
            active = [w for w in batch if w.outcome is None]
            self._load_accounts(session, active)
            active = [w for w in active if w.outcome is None]
            while active:
                self._choose(session, active)
                self._claim(session, [w for w in active if w.claim is not None])
                self._send(session, [w for w in active if w.outcome is None and w.won])
                active = [w for w in active if w.outcome is None]
        return [w.outcome if w.outcome is not None else _lost() for w in works]

    def _settle_earlier(self, session: Session, batch: list[_Work]) -> None:
        """Steps an earlier attempt settled get its outcome, a half-done send finished."""
        owner: dict[str, _Work] = {}
        for work in batch:
            key = work.step.idempotency_key
            owner[key] = work
            for channel in Channel:
                owner[attempt_key(key, channel)] = work
        rows = session.scalars(
            select(Communication)
            .where(Communication.idempotency_key == any_(_array(list(owner), String)))
            .order_by(Communication.created_at)
        ).all()
        earlier: dict[_Work, list[Communication]] = defaultdict(list)
        for row in rows:
            earlier[owner[row.idempotency_key]].append(row)
        for work, found in earlier.items():
            try:
                work.outcome = self._finished(session, found)
            except Exception as exc:  # this step's bookkeeping failed; the others go on
                session.rollback()
                work.outcome = exc

    def _load_accounts(self, session: Session, active: list[_Work]) -> None:
        """One round trip: the accounts with their guarantors, channels and charge lines."""
        if not active:
            return
        ids = {uuid.UUID(w.step.account_id) for w in active}
        accounts = {
            a.id: a
            for a in session.scalars(
                select(Account)
                .where(Account.id == any_(_array(list(ids), Uuid)))
                .options(
                    joinedload(Account.guarantor).joinedload(Guarantor.channels),
                    joinedload(Account.charges),
                )
            ).unique()
        }
        for work in active:
            work.account = accounts.get(uuid.UUID(work.step.account_id))
            if work.account is None:
                work.outcome = ApplicationError(
                    "the step's account is not in the ledger", type="AccountMissing"
                )

    # -- choosing a channel and rendering ------------------------------------------------------

    def _choose(self, session: Session, active: list[_Work]) -> None:
        """This round's claim of each step: its next usable channel, or its suppression."""
        caps = self._recent_contacts(session, active)
        for work in active:
            work.claim, work.won, work.tasks, work.audits = None, False, [], []
            try:
                self._choose_one(work, caps)
            except Exception as exc:
                work.outcome = exc

    def _choose_one(
        self, work: _Work, caps: Mapping[tuple[uuid.UUID, Channel], list[dt.datetime]]
    ) -> None:
        account = work.account
        assert account is not None
        bundle = self._policies.get(work.step.policy_hash)
        if account.status is not AccountStatus.OPEN:
            work.claim = self._row(work, None, CommunicationStatus.SUPPRESSED)
            work.claim["reasons"] = f"account is {account.status.value}"
            return
        self._check_quiet_hours(bundle.policy, account.guarantor, work.now)
        prefs = {p.channel: p for p in account.guarantor.channels}
        while work.channels:
            channel = work.channels.pop(0)
            problem = channel_problem(bundle.policy, channel, account.guarantor, prefs)
            if problem:
                work.reasons.append(problem)
                continue
            capped = cap_problem(
                bundle.policy, channel, caps.get((account.id, channel), []), work.now
            )
            if capped is not None:
                work.reasons.append(capped[0])
                work.cap_free_in = min(capped[1], work.cap_free_in or capped[1])
                continue
            self._prepare(work, bundle, channel)
            return
        if work.cap_free_in is not None:
            # The chain is blocked only for now: the step waits, as the scheduler would have.
            work.outcome = ApplicationError(
                "contact cap of the rolling window reached",
                type="ContactCapReached",
                next_retry_delay=work.cap_free_in,
            )
            return
        work.claim = self._row(work, None, CommunicationStatus.SUPPRESSED)

    def _prepare(self, work: _Work, bundle: PolicyBundle, channel: Channel) -> None:
        """Render ``channel``'s message into the claim, and what commits with it."""
        account = work.account
        assert account is not None
        subject, body = self._render(bundle, work.step, account, channel, work.now)
        claim = self._row(work, channel, CommunicationStatus.PENDING)
        claim.update(
            recipient=contact_point(account.guarantor, channel),
            subject=subject,
            body=body,
            language=account.guarantor.language,
        )
        if channel is Channel.LETTER:
            # Queued for the print batch with its statement: the letter is sent when this commits.
            letter = self._letter(bundle, work.step, account, body, work.now)
            claim.update(letter=letter_json(letter))
            self._sent_with_claim(work, claim, PRINT_QUEUE)
        elif channel is Channel.CALL:
            # A call task lives in our own database: claim and task commit together.
            self._sent_with_claim(work, claim, "staff")
            work.tasks.append(
                self._call_task(bundle, work.step, account, claim["id"], body, work.now)
            )
        work.claim = claim

    def _sent_with_claim(self, work: _Work, claim: dict[str, Any], provider: str) -> None:
        claim.update(
            status=CommunicationStatus.SENT,
            provider=provider,
            provider_id=str(claim["id"]),
            sent_at=work.now,
        )
        work.audits.append(
            _sent_audit(claim["account_id"], claim["id"], work.step.step_id, claim["channel"])
        )

    def _row(
        self, work: _Work, channel: Channel | None, status: CommunicationStatus
    ) -> dict[str, Any]:
        """An outbox row's values; every claim has the same columns (one multi-row INSERT)."""
        step = work.step
        key = step.idempotency_key
        if channel is not None:
            key = attempt_key(key, channel)
        return {
            "id": uuid.uuid4(),
            "idempotency_key": key,
            "account_id": uuid.UUID(step.account_id),
            "step_id": step.step_id,
            "policy_hash": step.policy_hash,
            "channel": channel,
            "template": step.template,
            "language": work.account.guarantor.language if work.account else "en",
            "status": status,
            "reasons": "; ".join(work.reasons) or None,
            "recipient": None,
            "subject": None,
            "body": None,
            "provider": None,
            "provider_id": None,
            "sent_at": None,
            "letter": None,
        }

    def _recent_contacts(
        self, session: Session, active: list[_Work]
    ) -> dict[tuple[uuid.UUID, Channel], list[dt.datetime]]:
        """For the capped channels of these steps: when each account was contacted on them."""
        windows: dict[Channel, dt.timedelta] = {}
        accounts: set[uuid.UUID] = set()
        earliest: dt.datetime | None = None
        for work in active:
            policy = self._policies.get(work.step.policy_hash).policy
            for cap in policy.contact.caps:
                if cap.channel not in work.channels:
                    continue  # a cap of a channel this step will not try
                window = dt.timedelta(days=cap.per_days)
                windows[cap.channel] = max(windows.get(cap.channel, window), window)
                accounts.add(uuid.UUID(work.step.account_id))
                since = work.now - window
                earliest = since if earliest is None else min(earliest, since)
        if not accounts or earliest is None:
            return {}
        when = func.coalesce(Communication.sent_at, Communication.created_at)
        found: dict[tuple[uuid.UUID, Channel], list[dt.datetime]] = defaultdict(list)
        for account_id, channel, at in session.execute(
            select(Communication.account_id, Communication.channel, when).where(
                Communication.account_id == any_(_array(list(accounts), Uuid)),
                Communication.channel.in_(list(windows)),
                Communication.status.in_(_COUNTED),
                when > earliest,
            )
        ):
            if channel is not None:
                found[(account_id, channel)].append(at)
        return found

    # -- claiming ----------------------------------------------------------------------------

    def _claim(self, session: Session, claiming: list[_Work]) -> None:
        """Insert every claim in one statement and commit durably, before any provider call.

        A claim whose key is taken was raced by another attempt of the same step; that step
        follows the row it lost to.
        """
        if not claiming:
            return
        claims = [w.claim for w in claiming if w.claim is not None]
        won = set(session.scalars(_CLAIM, _rows(claims, _CLAIM_COLUMNS)))
        raced: list[_Work] = []
        audits: list[dict[str, Any]] = []
        for work in claiming:
            assert work.claim is not None
            work.won = work.claim["idempotency_key"] in won
            if not work.won:
                raced.append(work)
                continue
            session.add_all(work.tasks)
            audits += work.audits
            if work.claim["status"] is not CommunicationStatus.PENDING:  # suppressed, or sent
                work.outcome = _claim_result(work.claim)
        if audits:
            session.execute(_AUDIT, _rows(audits, _AUDIT_COLUMNS))
        session.commit()
        for work in raced:
            try:
                self._follow_race(session, work)
            except Exception as exc:
                session.rollback()
                work.outcome = exc

    def _follow_race(self, session: Session, work: _Work) -> None:
        assert work.claim is not None
        key, channel = work.claim["idempotency_key"], work.claim["channel"]
        raced = self._by_key(session, key)
        if channel is None:  # both attempts suppressed the step
            assert raced is not None
            work.outcome = _result(raced)
        elif raced is None or raced.status is CommunicationStatus.FAILED:
            return  # the channel refused the recipient (or the claim was released): next round
        else:
            resumed = self._resume(session, raced)
            if resumed is None:
                work.channels.insert(0, channel)  # released: nothing left, try the channel again
            else:
                work.outcome = resumed

    # -- sending -----------------------------------------------------------------------------

    def _send(self, session: Session, sending: list[_Work]) -> None:
        """Hand each claimed message to its provider, then commit what each send came to."""
        if not sending:
            return
        messages = [_outgoing(w.claim) for w in sending if w.claim is not None]
        remote = sum(getattr(self._senders[m.channel], "network", False) for m in messages)
        if remote > 1:  # providers answer in tens of milliseconds: ask them all at once
            sent = list(self._send_pool.map(self._deliver, messages))
        else:
            sent = [self._deliver(m) for m in messages]
        marks: list[dict[str, Any]] = []
        audits: list[dict[str, Any]] = []
        for work, (delivery, error) in zip(sending, sent, strict=True):
            claim = work.claim
            assert claim is not None
            if delivery is not None:
                at = self._clock()
                marks.append(
                    {
                        "id": claim["id"],
                        "provider": delivery.provider,
                        "provider_id": delivery.provider_id,
                        "file_path": delivery.file_path,
                        "sent_at": at,
                    }
                )
                audits.append(
                    _sent_audit(
                        claim["account_id"], claim["id"], claim["step_id"], claim["channel"]
                    )
                )
                claim.update(status=CommunicationStatus.SENT)
                work.outcome = _claim_result(claim)
                continue
            row = session.get(Communication, claim["id"])
            assert row is not None and row.channel is not None
            if isinstance(error, RecipientRejected):
                assert work.account is not None
                self._refused(session, work.account, row, error)
                state = "opted out" if error.opted_out else error.deliverability
                work.reasons.append(
                    f"{row.channel.value}: {state} ({error.provider} {error.code or 'no code'})"
                )  # and the next round tries the next channel of the chain
            elif isinstance(error, ProviderUnreachable):
                # The request may have reached the provider: never send it again automatically.
                row.status = CommunicationStatus.UNCONFIRMED
                row.reasons = _join(work.reasons, f"{error.provider}: no answer during the send")
                log.warning("send of %s unconfirmed: %s", row.id, type(error).__name__)
                work.outcome = _result(row)
            elif isinstance(error, SendError):
                self._release(session, row, error)
                work.outcome = _retryable(error)  # the provider's text may quote the recipient
            else:
                # Unknown: the claim stays pending; the retry confirms the send or releases it.
                assert error is not None
                work.outcome = error
        if marks and len(marks) == len(sending):
            # Every claim above was committed durably before its provider heard of it; the SENT
            # marks may commit asynchronously (PostgreSQL synchronous_commit): a crash of the
            # database in the next moments would leave rows PENDING, which a retry confirms or
            # marks UNCONFIRMED, never sends again.
            session.execute(text("SET LOCAL synchronous_commit TO OFF"))
        if marks:
            session.execute(_MARK_SENT, _rows(marks, _MARK_COLUMNS))
            session.execute(_AUDIT, _rows(audits, _AUDIT_COLUMNS))
        session.commit()

    def _deliver(self, message: OutgoingMessage) -> tuple[Delivery | None, Exception | None]:
        try:
            return self._senders[message.channel].send(message), None
        except Exception as exc:
            return None, exc

    def _refused(
        self, session: Session, account: Account, row: Communication, exc: RecipientRejected
    ) -> None:
        assert row.channel is not None
        at = self._clock()
        deliverability = None if exc.opted_out else Deliverability(exc.deliverability)
        mark_channel(
            session,
            account.guarantor,
            row.channel,
            at,
            deliverability=deliverability,
            opted_out=exc.opted_out,
        )
        row.status = CommunicationStatus.FAILED
        row.provider = exc.provider
        row.reasons = f"recipient refused by {exc.provider} ({exc.code or 'no code'})"
        detail = {
            "communication_id": str(row.id),
            "channel": row.channel.value,
            "provider": exc.provider,
            "code": exc.code,
            "opted_out": exc.opted_out,
            "deliverability": exc.deliverability,
        }
        session.add(
            AuditEvent(
                actor="system", action="channel_refused", account_id=row.account_id, detail=detail
            )
        )

    def _release(self, session: Session, row: Communication, exc: SendError) -> None:
        """The provider certainly did not take the message: free the key for the retry."""
        session.add(
            AuditEvent(
                actor="system",
                action="send_deferred",
                account_id=row.account_id,
                detail={
                    "communication_id": str(row.id),
                    "channel": row.channel.value if row.channel else None,
                    "error": type(exc).__name__,
                    "provider": exc.provider,
                    "code": exc.code,
                },
            )
        )
        session.execute(delete(Communication).where(Communication.id == row.id))
        level = logging.ERROR if not isinstance(exc, ProviderBusy) else logging.INFO
        log.log(
            level,
            "send of %s deferred: %s %s %s",
            row.id,
            type(exc).__name__,
            exc.provider,
            exc.code,
        )

    # -- finding earlier attempts ---------------------------------------------------------

    def _finished(self, session: Session, rows: Sequence[Communication]) -> SendStepResult | None:
        """The step's outcome if an earlier attempt settled it, finishing a half-done send."""
        for row in rows:
            if row.status in _COUNTED:
                return _result(row)
        for row in rows:
            if row.status is CommunicationStatus.PENDING:
                resumed = self._resume(session, row)
                if resumed is not None:
                    return resumed
        for row in rows:
            if row.status is CommunicationStatus.SUPPRESSED:
                return _result(row)
        return None

    def _resume(self, session: Session, row: Communication) -> SendStepResult | None:
        """A send that died half-way: finish its bookkeeping, never redo it.

        None when nothing can have left (a local sender that wrote no file): the claim is
        released and the step goes on as if it had not been tried.
        """
        if row.status is not CommunicationStatus.PENDING:
            return _result(row)
        assert row.channel is not None
        sender = self._senders.get(row.channel)
        # Letters and call tasks commit sent with their claim: one still pending was claimed by
        # an older release that sent it later; nothing left the building without the mark.
        delivery = None if sender is None else sender.confirm(_outgoing(_values(row)))
        if delivery is not None:
            self._mark_sent(session, row, delivery, self._clock())
        elif sender is None or getattr(sender, "local", False):
            session.execute(delete(Communication).where(Communication.id == row.id))
            session.commit()
            return None
        else:
            row.status = CommunicationStatus.UNCONFIRMED
            row.reasons = _join(
                row.reasons.split("; ") if row.reasons else [],
                "worker stopped during the send; not re-sent automatically",
            )
        session.commit()
        return _result(row)

    def _by_key(self, session: Session, key: str) -> Communication | None:
        query = select(Communication).where(Communication.idempotency_key == key)
        return session.scalars(query).first()

    # -- checks at the moment of sending --------------------------------------------------

    def _check_quiet_hours(self, policy: Policy, guarantor: Guarantor, now: dt.datetime) -> None:
        """Checked again at the moment of sending: a late worker must not text at 23:00."""
        local = now.astimezone(zone(guarantor.time_zone))
        hours = policy.contact.allowed_hours
        if hours.start <= local.time() < hours.end:
            return
        day = local.date() if local.time() < hours.start else local.date() + dt.timedelta(days=1)
        opens = dt.datetime.combine(day, hours.start, tzinfo=local.tzinfo)
        raise ApplicationError(
            "outside the patient's allowed contact hours",
            type="QuietHours",
            next_retry_delay=opens - local,
        )

    # -- content ----------------------------------------------------------------------------

    def _render(
        self,
        bundle: PolicyBundle,
        step: SendStepInput,
        account: Account,
        channel: Channel,
        now: dt.datetime,
    ) -> tuple[str | None, str]:
        guarantor = account.guarantor
        recipient = Recipient(
            first_name=guarantor.first_name,
            last_name=guarantor.last_name,
            account_number=account.account_number,
            lines=tuple(_statement_line(c) for c in account.charges),
        )
        today = now.astimezone(zone(guarantor.time_zone)).date()
        variables = context(bundle.policy, channel, recipient, step.balance_cents, step.tone, today)
        try:
            rendered = render(bundle, step.template, guarantor.language, channel, variables)
        except RenderError as exc:
            raise ApplicationError(str(exc), type="TemplateError", non_retryable=True) from exc
        return rendered.subject, rendered.body

    def _letter(
        self,
        bundle: PolicyBundle,
        step: SendStepInput,
        account: Account,
        body: str,
        now: dt.datetime,
    ) -> LetterContent:
        policy = bundle.policy
        guarantor = account.guarantor
        today = now.astimezone(zone(guarantor.time_zone)).date()
        rows = tuple(_statement_line(c) for c in account.charges)
        fap_required = policy.eca.enabled or step.kind is StepKind.FINAL_NOTICE
        return LetterContent(
            practice_name=policy.practice.name,
            practice_phone=policy.practice.phone,
            pay_url=policy.practice.pay_url,
            recipient_name=f"{guarantor.first_name} {guarantor.last_name}",
            address_lines=tuple(address_lines(guarantor)),
            account_number=account.account_number,
            statement_date=today,
            due_date=today + dt.timedelta(days=PAYMENT_TERMS_DAYS),
            amount_due_cents=step.balance_cents,
            currency=policy.currency,
            lines=rows,
            aging_cents=aging_of(rows, step.balance_cents, today),
            title=step.template.replace("-", " ").capitalize(),
            financial_assistance=(
                policy.practice.financial_assistance_summary if fap_required else ""
            ),
        )

    def _call_task(
        self,
        bundle: PolicyBundle,
        step: SendStepInput,
        account: Account,
        communication_id: uuid.UUID,
        script: str,
        now: dt.datetime,
    ) -> StaffTask:
        """A worklist entry: who to call, what to say, and what staff need to know first."""
        today = now.astimezone(zone(account.guarantor.time_zone)).date()
        rows = tuple(_statement_line(c) for c in account.charges)
        summary = {
            "balance_cents": step.balance_cents,
            "currency": bundle.policy.currency,
            "visits": len(rows),
            "oldest_service_date": min((r.service_date for r in rows), default=today).isoformat(),
            "aging_cents": dict(aging_of(rows, step.balance_cents, today)),
            "step": step.step_id,
            "tone": step.tone.value,
        }
        return StaffTask(
            account_id=account.id,
            kind=TaskKind.CALL,
            step_id=step.step_id,
            title=f"Call about account {account.account_number}",
            detail={
                "script": script,
                "communication_id": str(communication_id),
                "summary": summary,
                "outcomes": ["reached", "voicemail", "no_answer", "wrong_number", "promise_to_pay"],
            },
        )

    def _mark_sent(
        self, session: Session, row: Communication, delivery: Delivery, at: dt.datetime
    ) -> None:
        row.status = CommunicationStatus.SENT
        row.provider = delivery.provider
        row.provider_id = delivery.provider_id
        row.file_path = delivery.file_path
        row.sent_at = at
        session.add(AuditEvent(**_sent_audit(row.account_id, row.id, row.step_id, row.channel)))


def cap_problem(
    policy: Policy, channel: Channel, contacted: Sequence[dt.datetime], now: dt.datetime
) -> tuple[str, dt.timedelta] | None:
    """The cap ``channel`` would break now, given its recent uses, and for how long."""
    for cap in policy.contact.caps:
        if cap.channel is not channel:
            continue
        window = dt.timedelta(days=cap.per_days)
        times = sorted(t for t in contacted if t > now - window)
        if len(times) >= cap.max:
            free_at = times[len(times) - cap.max] + window
            return (
                f"{channel.value}: cap of {cap.max} in {cap.per_days} days reached",
                max(free_at - now, dt.timedelta(seconds=1)),
            )
    return None


def _sent_audit(
    account_id: uuid.UUID, communication_id: uuid.UUID, step_id: str, channel: Channel | None
) -> dict[str, Any]:
    return {
        "actor": "system",
        "action": "message_sent",
        "account_id": account_id,
        "detail": {
            "communication_id": str(communication_id),
            "step": step_id,
            "channel": channel.value if channel else None,
        },
    }


def _values(row: Communication) -> dict[str, Any]:
    """A stored outbox row as the values of a claim, for the helpers below."""
    return {
        "id": row.id,
        "idempotency_key": row.idempotency_key,
        "channel": row.channel,
        "status": row.status,
        "reasons": row.reasons,
        "recipient": row.recipient,
        "subject": row.subject,
        "body": row.body,
    }


def _result(row: Communication) -> SendStepResult:
    return _claim_result(_values(row))


def _outgoing(claim: Mapping[str, Any]) -> OutgoingMessage:
    return OutgoingMessage(
        str(claim["id"]),
        claim["idempotency_key"],
        claim["channel"],
        claim["recipient"] or "",
        claim["subject"],
        claim["body"] or "",
    )


def _claim_result(claim: Mapping[str, Any]) -> SendStepResult:
    suppressed = claim["status"] is CommunicationStatus.SUPPRESSED
    return SendStepResult(
        communication_id=str(claim["id"]),
        outcome=StepOutcome.SUPPRESSED if suppressed else StepOutcome.SENT,
        channel=claim["channel"],
        reasons=claim["reasons"].split("; ") if claim["reasons"] else [],
    )


def _reportable(
    outcome: SendStepResult | BaseException,
) -> SendStepResult | BaseException:
    """A database error as a failure that names its kind only.

    PostgreSQL's messages may quote the row they refused ("Failing row contains ..."), and that
    text would reach the activity's failure in Temporal's history: keep the SQLSTATE instead.
    """
    if isinstance(outcome, DBAPIError):
        code = getattr(outcome.orig, "sqlstate", None) or "unknown"
        return ApplicationError(
            f"the database refused the step ({type(outcome.orig).__name__}, SQLSTATE {code})",
            type="DatabaseError",
        )
    return outcome


def _lost() -> BaseException:
    """A step the batch ended without an outcome for: a bug, reported as a retryable failure."""
    return ApplicationError("the step was left without an outcome", type="BatchIncomplete")


def aging_of(
    rows: Sequence[StatementLine], balance_cents: int, today: dt.date
) -> tuple[tuple[str, int], ...]:
    """The balance by age of its visits; payments since the lines were posted age off the oldest."""
    buckets = {name: 0 for name, _, _ in AGING_BUCKETS}
    credit = max(sum(r.balance_cents for r in rows) - balance_cents, 0)
    for row in sorted(rows, key=lambda r: r.service_date):
        owed = max(row.balance_cents, 0)
        taken = min(owed, credit)
        credit -= taken
        days = (today - row.service_date).days
        for name, low, high in AGING_BUCKETS:
            if days >= low and (high is None or days <= high):
                buckets[name] += owed - taken
                break
        else:
            buckets[AGING_BUCKETS[0][0]] += owed - taken  # a visit dated after the statement
    return tuple(buckets.items())


def _retryable(exc: SendError) -> ApplicationError:
    """A provider failure that did not send anything, as the error type the retry policy reads."""
    if isinstance(exc, ProviderBusy):
        delay = min(exc.retry_after or BUSY_RETRY_DELAY, MAX_RETRY_DELAY)
        kind = "ProviderRateLimited" if exc.rate_limited else "ProviderUnavailable"
        return ApplicationError(
            f"{exc.provider} asked to retry later ({exc.code or 'no code'})",
            type=kind,
            next_retry_delay=delay,
        )
    kind = "ProviderAuthFailed" if isinstance(exc, ProviderAuthFailed) else "ProviderRejected"
    return ApplicationError(
        f"{exc.provider} refused our request ({exc.code or 'no code'});"
        " check the provider settings",
        type=kind,
        next_retry_delay=AUTH_RETRY_DELAY,
    )


def _join(reasons: list[str], extra: str) -> str:
    return "; ".join([*reasons, extra])


def _statement_line(charge: ChargeLine) -> StatementLine:
    return StatementLine(
        service_date=charge.service_date,
        description=charge.description,
        charges_cents=charge.charges_cents,
        insurance_paid_cents=charge.insurance_paid_cents,
        insurance_adjustment_cents=charge.insurance_adjustment_cents,
        patient_paid_cents=charge.patient_paid_cents,
        good_faith_estimate_cents=charge.good_faith_estimate_cents,
        nsa_protected_cents=charge.nsa_protected_cents,
    )
