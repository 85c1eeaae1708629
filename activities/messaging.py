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
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
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


class MessagingActivities:
    """Sends escalation steps through the configured senders, exactly once."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        senders: Mapping[Channel, Sender],
        policies: PolicyStore,
        clock: Clock = activity_now,
    ) -> None:
        self._session_factory = session_factory
        self._senders = senders
        self._policies = policies
        self._clock = clock

    @activity.defn(name="send_step")
    def send_step(self, step: SendStepInput) -> SendStepResult:
        """Check the step is still allowed, render it, claim its outbox row, then send it."""
        bundle = self._policies.get(step.policy_hash)
        with self._session_factory() as session:
            finished = self._finished(session, step)
            if finished is not None:
                return finished
            # One round trip: the account with its guarantor, channels and charge lines.
            account = (
                session.scalars(
                    select(Account)
                    .where(Account.id == uuid.UUID(step.account_id))
                    .options(
                        joinedload(Account.guarantor).joinedload(Guarantor.channels),
                        joinedload(Account.charges),
                    )
                )
                .unique()
                .one()
            )
            reasons: list[str] = []
            if account.status is not AccountStatus.OPEN:
                return self._suppress(session, step, [f"account is {account.status.value}"])
            now = self._clock()
            self._check_quiet_hours(bundle.policy, account.guarantor, now)
            cap_free_in: dt.timedelta | None = None
            for channel in step.channels:
                prefs = {p.channel: p for p in account.guarantor.channels}
                problem = channel_problem(bundle.policy, channel, account.guarantor, prefs)
                if problem:
                    reasons.append(problem)
                    continue
                capped = self._cap_problem(session, bundle.policy, account.id, channel, now)
                if capped is not None:
                    reasons.append(capped[0])
                    cap_free_in = min(capped[1], cap_free_in or capped[1])
                    continue
                result = self._attempt(session, bundle, step, account, channel, now, reasons)
                if result is not None:
                    return result
            if cap_free_in is not None:
                # The chain is blocked only for now: the step waits, as the scheduler would have.
                raise ApplicationError(
                    "contact cap of the rolling window reached",
                    type="ContactCapReached",
                    next_retry_delay=cap_free_in,
                )
            return self._suppress(session, step, reasons)

    # -- one channel ----------------------------------------------------------------------

    def _attempt(
        self,
        session: Session,
        bundle: PolicyBundle,
        step: SendStepInput,
        account: Account,
        channel: Channel,
        now: dt.datetime,
        reasons: list[str],
    ) -> SendStepResult | None:
        """Send on ``channel``; None when the recipient was refused for good (try the next)."""
        subject, body = self._render(bundle, step, account, channel, now)
        key = attempt_key(step.idempotency_key, channel)
        row = self._claim(
            session,
            step,
            key,
            channel,
            CommunicationStatus.PENDING,
            reasons,
            recipient=contact_point(account.guarantor, channel),
            subject=subject,
            body=body,
            language=account.guarantor.language,
        )
        if row is None:  # a concurrent attempt claimed the key first
            session.rollback()
            raced = self._by_key(session, key)
            if raced is None or raced.status is CommunicationStatus.FAILED:
                return None
            return self._resume(session, raced) or self._result(raced)
        if channel is Channel.CALL:
            # A call task lives in our own database: claim and task commit together.
            session.add(self._call_task(bundle, step, account, row, body, now))
            self._mark_sent(session, row, Delivery("staff", str(row.id)), now)
            session.commit()
            return self._result(row)
        session.commit()  # the claim is durable before the provider hears of it
        letter = (
            self._letter(bundle, step, account, body, now) if channel is Channel.LETTER else None
        )
        message = self._outgoing(row, letter)
        try:
            delivery = self._senders[channel].send(message)
        except RecipientRejected as exc:
            self._refused(session, account, row, exc)
            state = "opted out" if exc.opted_out else exc.deliverability
            reasons.append(f"{channel.value}: {state} ({exc.provider} {exc.code or 'no code'})")
            session.commit()
            return None
        except ProviderUnreachable as exc:
            # The request may have reached the provider: never send it again automatically.
            row.status = CommunicationStatus.UNCONFIRMED
            row.reasons = _join(reasons, f"{exc.provider}: no answer during the send")
            session.commit()
            log.warning("send of %s unconfirmed: %s", row.id, type(exc).__name__)
            return self._result(row)
        except SendError as exc:
            self._release(session, row, exc)
            session.commit()
            raise _retryable(exc) from None  # the provider's text may quote the recipient
        # The claim above was committed durably before the provider heard of the message; the
        # SENT mark may commit asynchronously (PostgreSQL synchronous_commit): a crash of the
        # database in the next moments would leave the row PENDING, which a retry confirms or
        # marks UNCONFIRMED, never sends again.
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))
        self._mark_sent(session, row, delivery, self._clock())
        session.commit()
        return self._result(row)

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

    def _finished(self, session: Session, step: SendStepInput) -> SendStepResult | None:
        """The step's outcome if an earlier attempt settled it, finishing a half-done send."""
        keys = [step.idempotency_key, *(attempt_key(step.idempotency_key, c) for c in Channel)]
        rows = session.scalars(
            select(Communication)
            .where(Communication.idempotency_key.in_(keys))
            .order_by(Communication.created_at)
        ).all()
        for row in rows:
            if row.status in _COUNTED:
                return self._result(row)
        for row in rows:
            if row.status is CommunicationStatus.PENDING:
                resumed = self._resume(session, row)
                if resumed is not None:
                    return resumed
        for row in rows:
            if row.status is CommunicationStatus.SUPPRESSED:
                return self._result(row)
        return None

    def _resume(self, session: Session, row: Communication) -> SendStepResult | None:
        """A send that died half-way: finish its bookkeeping, never redo it.

        None when nothing can have left (a local sender that wrote no file): the claim is
        released and the step goes on as if it had not been tried.
        """
        if row.status is not CommunicationStatus.PENDING:
            return self._result(row)
        assert row.channel is not None
        sender = self._senders[row.channel]
        delivery = sender.confirm(self._outgoing(row, None))
        if delivery is not None:
            self._mark_sent(session, row, delivery, self._clock())
        elif getattr(sender, "local", False):
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
        return self._result(row)

    def _by_key(self, session: Session, key: str) -> Communication | None:
        query = select(Communication).where(Communication.idempotency_key == key)
        return session.scalars(query).first()

    def _suppress(
        self, session: Session, step: SendStepInput, reasons: list[str]
    ) -> SendStepResult:
        row = self._claim(
            session, step, step.idempotency_key, None, CommunicationStatus.SUPPRESSED, reasons
        )
        if row is None:
            session.rollback()
            raced = self._by_key(session, step.idempotency_key)
            assert raced is not None
            return self._result(raced)
        session.commit()
        return self._result(row)

    def _claim(
        self,
        session: Session,
        step: SendStepInput,
        key: str,
        channel: Channel | None,
        status: CommunicationStatus,
        reasons: list[str],
        **fields: str | None,
    ) -> Communication | None:
        row_id = uuid.uuid4()
        values = {
            "id": row_id,
            "idempotency_key": key,
            "account_id": uuid.UUID(step.account_id),
            "step_id": step.step_id,
            "policy_hash": step.policy_hash,
            "channel": channel,
            "template": step.template,
            "status": status,
            "reasons": "; ".join(reasons) or None,
            **fields,
        }
        # RETURNING the row itself: no second round trip to read what was just written.
        return session.scalars(
            insert(Communication)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(Communication),
            execution_options={"populate_existing": True},
        ).first()

    # -- checks at the moment of sending --------------------------------------------------

    def _cap_problem(
        self,
        session: Session,
        policy: Policy,
        account_id: uuid.UUID,
        channel: Channel,
        now: dt.datetime,
    ) -> tuple[str, dt.timedelta] | None:
        """The cap ``channel`` would break now, and how long until it would not."""
        for cap in policy.contact.caps:
            if cap.channel is not channel:
                continue
            window = dt.timedelta(days=cap.per_days)
            when = func.coalesce(Communication.sent_at, Communication.created_at)
            times = sorted(
                session.scalars(
                    select(when).where(
                        Communication.account_id == account_id,
                        Communication.channel == channel,
                        Communication.status.in_(_COUNTED),
                        when > now - window,
                    )
                ).all()
            )
            if len(times) >= cap.max:
                free_at = times[len(times) - cap.max] + window
                return (
                    f"{channel.value}: cap of {cap.max} in {cap.per_days} days reached",
                    max(free_at - now, dt.timedelta(seconds=1)),
                )
        return None

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
        row: Communication,
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
                "communication_id": str(row.id),
                "summary": summary,
                "outcomes": ["reached", "voicemail", "no_answer", "wrong_number", "promise_to_pay"],
            },
        )

    def _outgoing(self, row: Communication, letter: LetterContent | None) -> OutgoingMessage:
        assert row.channel is not None
        return OutgoingMessage(
            str(row.id),
            row.idempotency_key,
            row.channel,
            row.recipient or "",
            row.subject,
            row.body or "",
            letter=letter,
        )

    def _mark_sent(
        self, session: Session, row: Communication, delivery: Delivery, at: dt.datetime
    ) -> None:
        row.status = CommunicationStatus.SENT
        row.provider = delivery.provider
        row.provider_id = delivery.provider_id
        row.file_path = delivery.file_path
        row.sent_at = at
        session.add(
            AuditEvent(
                actor="system",
                action="message_sent",
                account_id=row.account_id,
                detail={
                    "communication_id": str(row.id),
                    "step": row.step_id,
                    "channel": row.channel.value if row.channel else None,
                },
            )
        )

    @staticmethod
    def _result(row: Communication) -> SendStepResult:
        outcome = (
            StepOutcome.SUPPRESSED
            if row.status is CommunicationStatus.SUPPRESSED
            else StepOutcome.SENT
        )
        reasons = row.reasons.split("; ") if row.reasons else []
        return SendStepResult(
            communication_id=str(row.id), outcome=outcome, channel=row.channel, reasons=reasons
        )


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
    )
