"""The batch pipeline of the step activity: settle earlier attempts, check, claim, send, record.

One activity per step, because on one machine the Temporal server's rate of actions, not the
worker, limits throughput. Exactly-once towards the patient rests on the outbox rows: each attempt
on a channel claims the unique idempotency key ``<step key>:<channel>`` and commits it *before*
the provider is called, so a retry, a replay or a killed worker finds the row and never sends twice.

A step walks its fallback chain inside this one activity. Every check is made again at the moment
of sending, not only when the workflow scheduled the step, by the decision core's own functions on
fresh data (``activities.messaging.eligibility``): the account is still open, the channel has a
contact point, consent and no opt-out, is deliverable, the person's rolling caps, spacing and
one message a day are kept across all the guarantor's accounts (``workflows.person``, on one query
per batch), and it is inside the patient's allowed hours in every known location. Steps of several
accounts of one person due together on a text or a letter become one message, recorded against
each account; a step the person's rules block is deferred, and its workflow waits. A recipient
the provider refuses for good (an invalid or unsubscribed number, a landline for SMS, an invalid
email) marks the channel and the next channel of the chain is tried, with its own row. At most one
row of a step ever ends ``sent`` (or ``unconfirmed``, when a network provider's request was cut
off: a staff task then asks a person to check; the local outbox is never unconfirmed), because the
chain stops at the first and every later attempt of the activity starts by looking for it.

Provider failures become ``ApplicationError`` types the workflow's retry policy understands:

- ``ProviderRateLimited`` / ``ProviderUnavailable``: retried after the provider's Retry-After.
  The provider did not take the message, so the claim is released and the retry sends it.
- ``ProviderAuthFailed`` / ``ProviderRejected``: retried slowly and logged as errors. Nothing was
  sent and the step is kept until an operator fixes the configuration.
- ``QuietHours`` / ``ContactCapReached``: retried when the window opens again (a workflow that
  can wait gets a ``deferred`` result with ``not_before`` instead of ``ContactCapReached``).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import (
    DateTime,
    String,
    Uuid,
    any_,
    bindparam,
    delete,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, joinedload, sessionmaker
from sqlalchemy.sql import Executable
from sqlalchemy.sql.selectable import ScalarSelect
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.channels import (
    Delivery,
    OutgoingMessage,
    ProviderAuthFailed,
    ProviderBusy,
    ProviderUnreachable,
    RecipientRejected,
    Sender,
    SendError,
)
from activities.letters import PRINT_QUEUE, letter_json
from activities.messaging import claims
from activities.messaging.composition import (
    account_services,
    call_task,
    content_task,
    letter_of,
    local_today,
    render_step,
)
from activities.messaging.eligibility import (
    check_quiet_hours,
    contact_point,
    mark_channel,
    profile_now,
)
from activities.messaging.merging import FAMILY, MERGED, merged_letter, render_merged
from activities.statement_cycle import statement_due
from config.loader import PolicyBundle
from models.orm import (
    Account,
    AccountStatus,
    AuditEvent,
    Communication,
    CommunicationStatus,
    ConfidentialAddress,
    Deliverability,
    Guarantor,
    PolicyVersion,
    StaffTask,
    TaskKind,
)
from models.orm.base import new_id
from models.payloads import ContactProfile, SendStepInput, SendStepResult, StepOutcome
from models.policy import Channel
from services.protections import remember_confidential
from workflows.decisions import channel_block
from workflows.person import MERGEABLE, PersonContact, person_free_at
from workflows.protections import send_time_content_problems

Clock = Callable[[], dt.datetime]
PersonKey = tuple[uuid.UUID, Channel, str]
"""A guarantor, a channel and the contact point a message goes to: one message may cover them."""

MERGED_PROVIDER = "merged"
"""The provider of an outbox row recorded for a message that covered several accounts: its
``provider_id`` is the row that was sent (``workflows.person``)."""

log = logging.getLogger(__name__)

AUTH_RETRY_DELAY = dt.timedelta(minutes=10)
"""How soon a step refused for our own credentials or request is tried again."""
BUSY_RETRY_DELAY = dt.timedelta(seconds=30)
"""A rate limit or server error without a Retry-After header."""
MAX_RETRY_DELAY = dt.timedelta(hours=6)
"""A provider's Retry-After is honoured up to this; beyond it something else is wrong."""


def _latest_letter_due() -> ScalarSelect[str | None]:
    """The due date of an account's latest letter sent: its statement cycle's (a column of the
    batch's account query, so the cycle costs no round trip of its own)."""
    return (
        select(Communication.letter["due_date"].astext)
        .where(
            Communication.account_id == Account.id,
            Communication.channel == Channel.LETTER,
            Communication.status == CommunicationStatus.SENT,
            Communication.letter.is_not(None),
        )
        .order_by(Communication.sent_at.desc())
        .limit(1)
        .correlate(Account)
        .scalar_subquery()
    )


# A person's transaction lock: two batches sending to one guarantor (two lanes, two workers) take
# turns from reading what the person received to committing their claims. Keys in one order, so
# that two batches sharing people never deadlock. The lock is taken in a statement before the one
# that reads the person's contacts: PostgreSQL takes a statement's snapshot as it starts, so a lock
# awaited inside the reading statement would let it read from before the other batch's commit.
def _lock_people(people: str) -> str:
    """SQL that locks the guarantors ``g`` of ``people``, in key order; its value is a count."""
    return (
        "SELECT count(*) FROM (SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT"
        f" hashtextextended(CAST(g AS text), 0) AS k FROM {people} ORDER BY k) AS ordered) AS held"
    )


_LOCK_PEOPLE = text(_lock_people("unnest(CAST(:person_locks AS uuid[])) AS g"))
"""Locks the guarantors ``:person_locks``."""
_LOCK_PEOPLE_OF_ACCOUNTS = text(
    "("
    + _lock_people(
        "(SELECT guarantor_id AS g FROM accounts WHERE id = ANY(CAST(:ids AS uuid[]))) AS a"
    )
    + ") >= 0"
)
"""Locks the guarantors of the accounts ``:ids``, as a condition of the batch's account load."""


@cache
def _accounts_query(count_earlier: bool) -> Executable:
    """A batch's accounts (``:ids``) with their guarantors, channels and charge lines, each
    guarantor's confidential address and the due date of each account's latest letter; with
    ``count_earlier``, also how many outbox rows hold one of ``:keys``. It takes the guarantors'
    locks (``_LOCK_PEOPLE_OF_ACCOUNTS``), so the first reading of their contacts costs no round
    trip of its own.

    Built once: a statement constructed for every batch cost more than running it (its clauses
    and cache key, in ``_load_accounts`` of every batch)."""
    counted = (
        select(func.count())
        .select_from(Communication)
        .where(Communication.idempotency_key == any_(bindparam("keys", type_=ARRAY(String()))))
        .scalar_subquery()
        if count_earlier
        else literal(0)
    )
    return (
        select(Account, ConfidentialAddress, _latest_letter_due(), counted)
        .outerjoin(ConfidentialAddress, ConfidentialAddress.guarantor_id == Account.guarantor_id)
        .where(Account.id == any_(bindparam("ids", type_=ARRAY(Uuid()))), _LOCK_PEOPLE_OF_ACCOUNTS)
        .options(
            joinedload(Account.guarantor).joinedload(Guarantor.channels),
            joinedload(Account.charges),
        )
    )


@cache
def _person_contacts_query() -> Executable:
    """What the guarantors ``:guarantors`` received since ``:since``, on all their accounts.
    Built once, as above.

    Two batches for one person must not both find them quiet: each holds the guarantors'
    transaction locks, taken by an earlier statement, from this reading until its claims commit;
    a claim still pending counts, since it is about to go out.
    """
    when = func.coalesce(Communication.due_at, Communication.sent_at, Communication.created_at)
    return (
        select(
            Communication.account_id,
            Account.guarantor_id,
            Communication.channel,
            when,
            Communication.id,
            Communication.provider,
            Communication.provider_id,
        )
        .join(Account, Account.id == Communication.account_id)
        .where(
            Account.guarantor_id == any_(bindparam("guarantors", type_=ARRAY(Uuid()))),
            Communication.channel.is_not(None),
            Communication.status.in_((*claims.COUNTED, CommunicationStatus.PENDING)),
            when > bindparam("since", type_=DateTime(timezone=True)),
        )
    )


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


@dataclass(eq=False)
class _Work:
    """One step on its way through a batch."""

    step: SendStepInput
    now: dt.datetime
    channels: list[Channel]
    """The fallback chain still to try, in order."""
    reasons: list[str] = field(default_factory=list)
    free_at: dt.datetime | None = None
    """The guarantor's rules (spacing, caps, one a day) block every channel until then."""
    merged_into: _Work | None = None
    """Another step of the batch whose message covers this one (same person and channel)."""
    covers: list[_Work] = field(default_factory=list)
    """The steps this one's message covers besides its own."""
    account: Account | None = None
    claim: dict[str, Any] | None = None
    """This round's outbox row, to be inserted."""
    won: bool = False
    """The claim was inserted (not raced by another attempt of the step)."""
    tasks: list[StaffTask] = field(default_factory=list)
    """Committed with the claim when it is won: a call task."""
    last_due: dt.date | None = None
    """The due date of the latest letter sent to the account: the statement cycle's."""
    audits: list[dict[str, Any]] = field(default_factory=list)
    """Committed with the claim when it is won: the audit of a message queued with it."""
    outcome: SendStepResult | BaseException | None = None
    sender_name: str = ""
    """The policy practice's name: an email's From name (one practice identity per policy)."""


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

    def warm(self) -> None:
        """Connect, and compile and run once the statements every batch reads with, for nobody.

        A new send process otherwise spent its first batch on them: 110-220 ms against about 40
        ms for the next ones (bench/step_throughput), mostly connecting and compiling the ORM's
        account load, while the steps due at the worker's start queued behind it.
        """
        nobody: list[uuid.UUID] = []
        with self._session_factory() as session:
            for count_earlier in (True, False):
                found = session.execute(
                    _accounts_query(count_earlier), {"ids": nobody, "keys": []}
                ).unique()
                found.all()
            session.execute(_LOCK_PEOPLE, {"person_locks": nobody})
            session.execute(
                _person_contacts_query(), {"guarantors": nobody, "since": self._clock()}
            )
            session.rollback()

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
            # One round trip loads the accounts and counts the batch's earlier outbox rows; only
            # when there are some (a retry, a replay) does the batch settle them first and load
            # again: a settlement may roll back, which would expire what was loaded.
            if self._load_accounts(session, batch, _keys(batch)) != 0:
                for work in batch:
                    work.account, work.last_due, work.outcome = None, None, None
                self._settle_earlier(session, batch)
                self._load_accounts(session, [w for w in batch if w.outcome is None])
            active = [w for w in batch if w.outcome is None]
            locked = True  # the account load took the guarantors' locks, in this transaction
            while active:
                self._choose(session, active, locked)
                locked = False  # the claims commit and release them: the next round retakes them
                self._claim(session, [w for w in active if w.claim is not None])
                self._send(session, [w for w in active if w.outcome is None and w.won])
                self._record_covered(session, [w for w in active if w.covers])
                active = [w for w in active if w.outcome is None]
        return [w.outcome if w.outcome is not None else _lost() for w in works]

    def _settle_earlier(self, session: Session, batch: list[_Work]) -> None:
        """Steps an earlier attempt settled get its outcome, a half-done send finished."""
        owner = _keys(batch)
        rows = session.scalars(
            select(Communication)
            .where(Communication.idempotency_key == any_(claims.array(list(owner), String)))
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

    def _load_accounts(
        self, session: Session, active: list[_Work], keys: Mapping[str, _Work] | None = None
    ) -> int | None:
        """One round trip: the accounts with their guarantors, channels and charge lines, each
        guarantor's confidential address and the due date of each account's latest letter.

        With ``keys``, also how many outbox rows hold one of them (None: no account found)."""
        if not active:
            return None
        ids = {uuid.UUID(w.step.account_id) for w in active}
        accounts: dict[uuid.UUID, Account] = {}
        last_due: dict[uuid.UUID, dt.date] = {}
        confidential: dict[uuid.UUID, ConfidentialAddress | None] = {}
        earlier: int | None = None
        parameters: dict[str, Any] = {"ids": list(ids)}
        if keys is not None:
            parameters["keys"] = list(keys)
        for account, address, due, found in session.execute(
            _accounts_query(keys is not None), parameters
        ).unique():
            accounts[account.id] = account
            confidential[account.guarantor_id] = address
            earlier = found
            if due:
                last_due[account.id] = dt.date.fromisoformat(due)
        remember_confidential(session, confidential)
        for work in active:
            work.account = accounts.get(uuid.UUID(work.step.account_id))
            work.last_due = last_due.get(uuid.UUID(work.step.account_id))
            if work.account is None:
                work.outcome = ApplicationError(
                    "the step's account is not in the ledger", type="AccountMissing"
                )
        return earlier

    # -- choosing a channel and rendering ------------------------------------------------------

    def _choose(self, session: Session, active: list[_Work], locked: bool) -> None:
        """This round's claim of each step: its next usable channel, or its suppression.

        The guarantor's rules count every account of theirs (``workflows.person``): the contacts
        of the last weeks come in one query for the whole batch, and each message chosen in the
        batch joins them, so that the next step of the same person sees it. A step of the same
        person, channel and contact point as one already chosen is covered by its message.
        """
        contacts = self._person_contacts(session, active, locked)
        chosen: dict[PersonKey, _Work] = {}
        for work in active:
            work.claim, work.won, work.tasks, work.audits = None, False, [], []
            work.merged_into, work.covers, work.free_at = None, [], None
        for work in active:
            try:
                self._choose_one(work, contacts, chosen)
            except Exception as exc:
                work.outcome = exc
        for primary in {id(w): w for w in chosen.values() if w.covers}.values():
            try:
                self._cover(primary)
            except Exception as exc:  # nothing of the group is claimed or sent
                primary.outcome, primary.claim = exc, None
                for work in primary.covers:
                    work.outcome = exc

    def _choose_one(
        self,
        work: _Work,
        contacts: dict[uuid.UUID, list[PersonContact]],
        chosen: dict[PersonKey, _Work],
    ) -> None:
        account = work.account
        assert account is not None
        bundle = self._policies.get(work.step.policy_hash)
        if account.status is not AccountStatus.OPEN:
            work.claim = self._row(work, None, CommunicationStatus.SUPPRESSED)
            work.claim["reasons"] = f"account is {account.status.value}"
            return
        policy = bundle.policy
        # Fresh data, the decision core's rules: the same verdicts the schedule reached.
        profile = profile_now(policy, account.guarantor)
        check_quiet_hours(policy, profile, work.now)
        person = contacts.setdefault(account.guarantor_id, [])
        blocked = False
        while work.channels:
            channel = work.channels.pop(0)
            problem = channel_block(policy, channel, profile)
            if problem:
                work.reasons.append(problem)
                continue
            key = (account.guarantor_id, channel, contact_point(account.guarantor, channel))
            primary = chosen.get(key)
            if (
                primary is not None
                and not blocked
                and channel in MERGEABLE
                and primary.step.policy_hash == work.step.policy_hash
            ):
                # Due together for the same person on the same channel: one message covers both.
                work.merged_into = primary
                primary.covers.append(work)
                work.channels.insert(0, channel)  # tried again if the covering send is refused
                return
            verdict = person_free_at(policy, profile, channel, str(account.id), person, work.now)
            if verdict.blocks(work.now):
                blocked = True
                work.reasons += [r for r in verdict.reasons if r not in work.reasons]
                work.free_at = verdict.at if work.free_at is None else min(work.free_at, verdict.at)
                continue
            if not self._prepare(
                work, bundle, profile, channel, local_today(policy, profile, work.now)
            ):
                continue  # its wording breaks a content rule: a staff task says why
            assert work.claim is not None
            person.append(PersonContact(str(account.id), channel, work.now, str(work.claim["id"])))
            chosen.setdefault(key, work)
            return
        if work.free_at is not None:
            # The chain is blocked only for now: the step waits, as the scheduler would have.
            if work.step.defer_ok:
                work.outcome = SendStepResult(
                    communication_id=None,
                    outcome=StepOutcome.DEFERRED,
                    reasons=list(work.reasons),
                    not_before=work.free_at,
                )
                return
            work.outcome = ApplicationError(
                "contact cap of the rolling window reached",
                type="ContactCapReached",
                next_retry_delay=max(work.free_at - work.now, dt.timedelta(seconds=1)),
            )
            return
        work.claim = self._row(work, None, CommunicationStatus.SUPPRESSED)

    def _cover(self, primary: _Work) -> None:
        """Render the primary's message again so that it covers the steps merged into it."""
        claim, account = primary.claim, primary.account
        assert claim is not None and account is not None
        bundle = self._policies.get(primary.step.policy_hash)
        channel = claim["channel"]
        works = [primary, *primary.covers]
        accounts = [w.account for w in works if w.account is not None]
        balances = [w.step.balance_cents for w in works]
        profile = profile_now(bundle.policy, account.guarantor)
        today = local_today(bundle.policy, profile, primary.now)
        letter = claim.get("letter")
        due_date = dt.date.fromisoformat(letter["due_date"]) if letter else None
        due = statement_due(primary.last_due, today, opens_cycle=channel is Channel.LETTER)
        subject, body = render_merged(
            bundle, primary.step, accounts, sum(balances), channel, today, due
        )
        if any(
            send_time_content_problems(
                bundle.policy, profile, channel, subject, body, account_services(a)
            )
            for a in accounts
        ):
            # The message covering them would break a content rule: the primary keeps its own
            # (checked) message, and the others choose again next round.
            for work in primary.covers:
                work.merged_into = None
            primary.covers = []
            return
        claim.update(subject=subject, body=body)
        if channel is Channel.LETTER:
            scope = FAMILY if bundle.policy.statements.family else MERGED
            claim["letter"] = letter_json(
                merged_letter(bundle, primary.step, accounts, balances, today, due_date, scope)
            )

    def _prepare(
        self,
        work: _Work,
        bundle: PolicyBundle,
        profile: ContactProfile,
        channel: Channel,
        today: dt.date,
    ) -> bool:
        """Render ``channel``'s message into the claim, and what commits with it.

        False when the rendered message breaks a content rule of the patient's states (the
        decision core's :func:`~workflows.protections.send_time_content_problems`): it is not
        sent, a staff task says why, and the next channel of the chain is tried.
        """
        account = work.account
        assert account is not None
        due = statement_due(work.last_due, today, opens_cycle=channel is Channel.LETTER)
        subject, body = render_step(bundle, work.step, account, channel, today, due)
        problems = send_time_content_problems(
            bundle.policy, profile, channel, subject, body, account_services(account)
        )
        if problems:
            work.reasons.append(f"{channel.value}: wording breaks a content rule")
            work.tasks.append(content_task(work.step, account, channel, problems))
            return False
        work.sender_name = bundle.policy.practice.name
        claim = self._row(work, channel, CommunicationStatus.PENDING)
        claim.update(
            recipient=contact_point(account.guarantor, channel),
            subject=subject,
            body=body,
            language=account.guarantor.language,
        )
        if channel is Channel.LETTER:
            # Queued for the print batch with its statement: the letter is sent when this commits.
            letter = letter_of(bundle, work.step, account, today, due[0])
            if bundle.policy.statements.family:  # every open account: composed at print time
                letter = merged_letter(
                    bundle, work.step, [account], [work.step.balance_cents], today, due[0], FAMILY
                )
            claim.update(letter=letter_json(letter))
            self._sent_with_claim(work, claim, PRINT_QUEUE)
        elif channel is Channel.CALL:
            # A call task lives in our own database: claim and task commit together.
            self._sent_with_claim(work, claim, "staff")
            work.tasks.append(call_task(bundle, work.step, account, claim["id"], body, today))
        work.claim = claim
        return True

    def _sent_with_claim(self, work: _Work, claim: dict[str, Any], provider: str) -> None:
        claim.update(
            status=CommunicationStatus.SENT,
            provider=provider,
            provider_id=str(claim["id"]),
            sent_at=work.now,
        )
        work.audits.append(
            claims.sent_audit(claim["account_id"], claim["id"], work.step.step_id, claim["channel"])
        )

    def _row(
        self, work: _Work, channel: Channel | None, status: CommunicationStatus
    ) -> dict[str, Any]:
        """An outbox row's values; every claim has the same columns (one multi-row INSERT)."""
        step = work.step
        key = step.idempotency_key
        if channel is not None:
            key = claims.attempt_key(key, channel)
        return {
            "id": new_id(),
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
            "due_at": min(step.due_at, work.now),
            "letter": None,
        }

    def _person_contacts(
        self, session: Session, active: list[_Work], locked: bool
    ) -> dict[uuid.UUID, list[PersonContact]]:
        """What each guarantor of these steps received lately, on all their accounts: one query,
        after one that takes the guarantors' locks unless this transaction holds them (``locked``).

        The window covers every rule that counts contacts (``workflows.person``): the caps'
        windows, the spacing, a day, and the 7 days of a state cap.
        """
        guarantors: set[uuid.UUID] = set()
        earliest: dt.datetime | None = None
        for work in active:
            if work.account is None:
                continue
            policy = self._policies.get(work.step.policy_hash).policy
            window = max(
                [dt.timedelta(days=7), dt.timedelta(hours=policy.contact.min_spacing_hours)]
                + [dt.timedelta(days=cap.per_days) for cap in policy.contact.caps]
            )
            guarantors.add(work.account.guarantor_id)
            since = work.now - window
            earliest = since if earliest is None else min(earliest, since)
        if not guarantors or earliest is None:
            return {}
        if not locked:
            session.execute(_LOCK_PEOPLE, {"person_locks": list(guarantors)})
        found: dict[uuid.UUID, list[PersonContact]] = defaultdict(list)
        for account_id, guarantor_id, channel, at, row_id, provider, provider_id in session.execute(
            _person_contacts_query(), {"guarantors": list(guarantors), "since": earliest}
        ):
            if channel is None:
                continue
            message = provider_id if provider == MERGED_PROVIDER and provider_id else str(row_id)
            found[guarantor_id].append(PersonContact(str(account_id), channel, at, message))
        return found

    def _record_covered(self, session: Session, primaries: list[_Work]) -> None:
        """Record the message of each primary against every account it covered.

        A sent (or unconfirmed) message gives each covered step its own outbox row, pointing to
        the one that went out; a refused one sends the covered steps to their next channel in the
        next round; a failed one fails them the same way, for the retry. Should the worker stop
        between the send and these rows, the covered steps run again and find the person just
        contacted: they wait for the spacing, and are never sent twice at once.
        """
        covered: list[tuple[_Work, dict[str, Any]]] = []
        for primary in primaries:
            outcome, claim = primary.outcome, primary.claim
            for work in primary.covers:
                work.merged_into = None
                if outcome is None or claim is None or not primary.won:
                    # Refused, or another attempt of the primary's step won its key (its message
                    # does not name this account): the next round chooses again.
                    continue
                if isinstance(outcome, BaseException):
                    work.outcome = outcome
                    continue
                if outcome.outcome is not StepOutcome.SENT:
                    continue  # suppressed (a race): the step decides alone in the next round
                status = (
                    CommunicationStatus.SENT
                    if claim["status"] is CommunicationStatus.SENT
                    else CommunicationStatus.UNCONFIRMED  # may have reached the person: counted
                )
                row = self._row(work, claim["channel"], status)
                row.update(
                    recipient=claim["recipient"],
                    language=claim["language"],
                    letter=claim["letter"],
                    provider=MERGED_PROVIDER,
                    provider_id=str(claim["id"]),
                    sent_at=claim.get("sent_at") or self._clock(),
                    reasons=claims.join(
                        work.reasons, "one message with the guarantor's other accounts"
                    ),
                )
                covered.append((work, row))
            primary.covers = []
        if not covered:
            return
        rows = [row for _, row in covered]
        won = set(session.scalars(claims.CLAIM, claims.rows(rows, claims.CLAIM_COLUMNS)))
        audits = [
            claims.sent_audit(r["account_id"], r["id"], r["step_id"], r["channel"])
            for r in rows
            if r["idempotency_key"] in won
        ]
        if audits:
            session.execute(claims.AUDIT, claims.rows(audits, claims.AUDIT_COLUMNS))
        session.commit()
        for work, row in covered:
            work.claim = row
            if row["idempotency_key"] in won:
                work.outcome = claims.claim_result(row)
            else:  # an earlier attempt of the step recorded it: follow that row
                raced = self._by_key(session, row["idempotency_key"])
                work.outcome = claims.result(raced) if raced is not None else _lost()

    # -- claiming ----------------------------------------------------------------------------

    def _claim(self, session: Session, claiming: list[_Work]) -> None:
        """Insert every claim in one statement and commit durably, before any provider call.

        A claim whose key is taken was raced by another attempt of the same step; that step
        follows the row it lost to.
        """
        if not claiming:
            return
        rows = [w.claim for w in claiming if w.claim is not None]
        # Each claim's audit rows and the first statement its letter dates are written with it,
        # in one statement, for the claims that win their key (claims.CLAIM_BATCH).
        audits = [
            {**audit, "claim_key": w.claim["idempotency_key"]}
            for w in claiming
            if w.claim is not None
            for audit in w.audits
        ]
        firsts = [
            # A letter is sent when its claim commits (the print queue); as loaded with the
            # batch, an account whose first statement is dated is done.
            {"account_id": c["account_id"], "at": c["sent_at"], "claim_key": c["idempotency_key"]}
            for w in claiming
            if (c := w.claim) is not None
            and c["status"] is CommunicationStatus.SENT
            and c["channel"] is Channel.LETTER
            and w.account is not None
            and w.account.first_statement_at is None
        ]
        won = set(
            session.scalars(
                claims.CLAIM_BATCH,
                {
                    **claims.rows(rows, claims.CLAIM_COLUMNS),
                    **claims.rows(audits, claims.WON_AUDIT_COLUMNS, "audits"),
                    **claims.rows(firsts, claims.FIRST_COLUMNS, "firsts"),
                },
            )
        )
        raced: list[_Work] = []
        for work in claiming:
            assert work.claim is not None
            work.won = work.claim["idempotency_key"] in won
            if not work.won:
                raced.append(work)
                continue
            session.add_all(work.tasks)
            if work.claim["status"] is not CommunicationStatus.PENDING:  # suppressed, or sent
                work.outcome = claims.claim_result(work.claim)
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
            work.outcome = claims.result(raced)
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
        messages = [claims.outgoing(w.claim, w.sender_name) for w in sending if w.claim is not None]
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
                    claims.sent_audit(
                        claim["account_id"], claim["id"], claim["step_id"], claim["channel"]
                    )
                )
                claim.update(status=CommunicationStatus.SENT)
                work.outcome = claims.claim_result(claim)
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
            elif isinstance(error, ProviderUnreachable) and not self._local(row.channel):
                # The request may have reached the provider: never send it again automatically.
                self._unconfirmed(
                    session,
                    row,
                    claims.join(work.reasons, f"{error.provider}: no answer during the send"),
                    error.provider,
                )
                log.warning("send of %s unconfirmed: %s", row.id, type(error).__name__)
                work.outcome = claims.result(row)
            elif isinstance(error, SendError):
                self._release(session, row, error)
                work.outcome = _retryable(error)  # the provider's text may quote the recipient
            else:
                # Unknown: the claim stays pending; the retry confirms the send or releases it.
                assert error is not None
                work.outcome = error
        if marks:
            # Every claim above was committed durably before its provider heard of it; when
            # every send succeeded the SENT marks may commit asynchronously (PostgreSQL
            # synchronous_commit, set by the statement): a crash of the database in the next
            # moments would leave rows PENDING, which a retry confirms or marks UNCONFIRMED,
            # never sends again.
            relaxed = len(marks) == len(sending)
            session.execute(
                claims.MARK_SENT_BATCH_RELAXED if relaxed else claims.MARK_SENT_BATCH,
                {
                    **claims.rows(marks, claims.MARK_COLUMNS),
                    **claims.rows(audits, claims.AUDIT_COLUMNS, "audits"),
                },
            )
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
            if row.status in claims.COUNTED:
                return claims.result(row)
        for row in rows:
            if row.status is CommunicationStatus.PENDING:
                resumed = self._resume(session, row)
                if resumed is not None:
                    return resumed
        for row in rows:
            if row.status is CommunicationStatus.SUPPRESSED:
                return claims.result(row)
        return None

    def _resume(self, session: Session, row: Communication) -> SendStepResult | None:
        """A send that died half-way: finish its bookkeeping, never redo it.

        None when nothing can have left (a local sender that wrote no file): the claim is
        released and the step goes on as if it had not been tried.
        """
        if row.status is not CommunicationStatus.PENDING:
            return claims.result(row)
        assert row.channel is not None
        sender = self._senders.get(row.channel)
        # Letters and call tasks commit sent with their claim: one still pending was claimed by
        # an older release that sent it later; nothing left the building without the mark.
        delivery = None if sender is None else sender.confirm(claims.outgoing(claims.values(row)))
        if delivery is not None:
            self._mark_sent(session, row, delivery, self._clock())
        elif sender is None or self._local(row.channel):
            session.execute(delete(Communication).where(Communication.id == row.id))
            session.commit()
            return None
        else:
            self._unconfirmed(
                session,
                row,
                claims.join(
                    row.reasons.split("; ") if row.reasons else [],
                    "worker stopped during the send; not re-sent automatically",
                ),
                sender.name,
            )
        session.commit()
        return claims.result(row)

    def _local(self, channel: Channel | None) -> bool:
        """A sender on this machine (the outbox): it either wrote the message or did not.

        It is never a network provider that may have taken a request without answering, so its
        sends are never UNCONFIRMED: an unfinished one is released and sent again.
        """
        sender = self._senders.get(channel) if channel is not None else None
        return sender is None or not getattr(sender, "network", False)

    def _unconfirmed(
        self, session: Session, row: Communication, reasons: str, provider: str
    ) -> None:
        """A send cut off mid-request: never re-sent automatically; a person checks.

        The staff task says what is known (channel, provider, the step, when it was claimed and
        the provider's id if any), never the recipient or the text.
        """
        row.status = CommunicationStatus.UNCONFIRMED
        row.reasons = reasons
        channel = row.channel.value if row.channel else "none"
        session.add(
            StaffTask(
                account_id=row.account_id,
                kind=TaskKind.UNCONFIRMED,
                step_id=row.step_id,
                title=f"Check whether the {channel} of step {row.step_id} went out",
                detail={
                    "communication_id": str(row.id),
                    "channel": channel,
                    "provider": provider,
                    "provider_id": row.provider_id,
                    "step": row.step_id,
                    "claimed_at": row.created_at.isoformat() if row.created_at else None,
                    "reasons": reasons,
                    "outcomes": ["sent", "not_sent"],
                },
            )
        )
        session.add(
            AuditEvent(
                actor="system",
                action="send_unconfirmed",
                account_id=row.account_id,
                detail={"communication_id": str(row.id), "channel": channel, "provider": provider},
            )
        )

    def _by_key(self, session: Session, key: str) -> Communication | None:
        query = select(Communication).where(Communication.idempotency_key == key)
        return session.scalars(query).first()

    def _mark_sent(
        self, session: Session, row: Communication, delivery: Delivery, at: dt.datetime
    ) -> None:
        row.status = CommunicationStatus.SENT
        row.provider = delivery.provider
        row.provider_id = delivery.provider_id
        row.file_path = delivery.file_path
        row.sent_at = at
        session.add(
            AuditEvent(**claims.sent_audit(row.account_id, row.id, row.step_id, row.channel))
        )


def _keys(batch: list[_Work]) -> dict[str, _Work]:
    """Every outbox key a batch's steps may have used (the step's, each channel's attempt)."""
    owner: dict[str, _Work] = {}
    for work in batch:
        key = work.step.idempotency_key
        owner[key] = work
        for channel in Channel:
            owner[claims.attempt_key(key, channel)] = work
    return owner


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
