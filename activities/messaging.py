"""The one activity of an escalation step: check, render, record, send.

One activity per step, because on one machine the Temporal server's rate of actions, not the
worker, limits throughput. Exactly-once towards the patient rests on the outbox row: its unique
idempotency key (balance, episode, step) is committed *before* the provider is called, so a
retry, a replay or a killed worker finds the row and never sends twice.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, selectinload, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.channels import Delivery, OutgoingMessage, Sender
from activities.rendering import Recipient, RenderError, StatementLine, context, render
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
from models.payloads import SendStepInput, SendStepResult, StepOutcome
from models.policy import Channel, Policy
from workflows.decisions import zone

Clock = Callable[[], dt.datetime]


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
    policy: Policy, channel: Channel, guarantor: Guarantor, prefs: Mapping[Channel, ChannelPreference]
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
    if channel is Channel.SMS and policy.contact.sms_requires_consent and not (pref and pref.consent):
        return "sms: no recorded consent (TCPA)"
    return ""


def contact_point(guarantor: Guarantor, channel: Channel) -> str:
    if channel is Channel.EMAIL:
        return guarantor.email or ""
    if channel in (Channel.SMS, Channel.CALL):
        return guarantor.phone or ""
    if not (guarantor.address_line1 and guarantor.city and guarantor.postal_code):
        return ""
    parts = [guarantor.address_line1, guarantor.address_line2 or "",
             f"{guarantor.city}, {guarantor.region or ''} {guarantor.postal_code}"]
    return f"{guarantor.first_name} {guarantor.last_name}, " + ", ".join(p for p in parts if p)


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
            existing = self._existing(session, step.idempotency_key)
            if existing is not None:
                return self._resume(session, existing)
            account = session.scalars(
                select(Account)
                .where(Account.id == uuid.UUID(step.account_id))
                .options(selectinload(Account.guarantor).selectinload(Guarantor.channels),
                         selectinload(Account.charges))
            ).one()
            now = self._clock()
            self._check_quiet_hours(bundle.policy, account.guarantor, now)
            prefs = {p.channel: p for p in account.guarantor.channels}
            reasons: list[str] = []
            chosen: Channel | None = None
            for channel in step.channels:
                problem = channel_problem(bundle.policy, channel, account.guarantor, prefs)
                if problem:
                    reasons.append(problem)
                    continue
                chosen = channel
                break
            if account.status is not AccountStatus.OPEN:
                reasons.append(f"account is {account.status.value}")
                chosen = None
            if chosen is None:
                row = self._claim(session, step, None, CommunicationStatus.SUPPRESSED, reasons)
                session.commit()
                return SendStepResult(communication_id=str(row.id) if row else None,
                                      outcome=StepOutcome.SUPPRESSED, reasons=reasons)
            rendered = self._render(bundle, step, account, chosen, now)
            message_row = self._claim(
                session, step, chosen, CommunicationStatus.PENDING, reasons,
                recipient=contact_point(account.guarantor, chosen),
                subject=rendered[0], body=rendered[1], language=account.guarantor.language,
            )
            if message_row is None:  # a concurrent attempt claimed the key first
                session.rollback()
                raced = self._existing(session, step.idempotency_key)
                assert raced is not None
                return self._resume(session, raced)
            if chosen is Channel.CALL:
                # A call task lives in our own database: claim and task commit together.
                session.add(StaffTask(account_id=account.id, kind=TaskKind.CALL, step_id=step.step_id,
                                      title=f"Call about account {account.account_number}",
                                      detail={"script": rendered[1],
                                              "communication_id": str(message_row.id)}))
                delivery = Delivery("staff", str(message_row.id))
                self._mark_sent(session, message_row, delivery, now)
                session.commit()
                return self._result(message_row)
            session.commit()  # the claim is durable before the provider hears of it
            sender = self._senders[chosen]
            delivery = sender.send(self._outgoing(message_row))
            self._mark_sent(session, message_row, delivery, self._clock())
            session.commit()
            return self._result(message_row)

    # -- pieces ---------------------------------------------------------------------------

    def _existing(self, session: Session, key: str) -> Communication | None:
        return session.scalars(select(Communication).where(Communication.idempotency_key == key)).first()

    def _resume(self, session: Session, row: Communication) -> SendStepResult:
        """A step seen before: report what happened; finish a send that died half-way, never redo it."""
        if row.status is CommunicationStatus.PENDING:
            assert row.channel is not None
            sender = self._senders[row.channel]
            delivery = sender.confirm(self._outgoing(row))
            if delivery is not None:
                self._mark_sent(session, row, delivery, self._clock())
            else:
                row.status = CommunicationStatus.UNCONFIRMED
                row.reasons = "worker stopped during the send; not re-sent automatically"
            session.commit()
        return self._result(row)

    def _claim(
        self,
        session: Session,
        step: SendStepInput,
        channel: Channel | None,
        status: CommunicationStatus,
        reasons: list[str],
        **fields: str | None,
    ) -> Communication | None:
        row_id = uuid.uuid4()
        values = {
            "id": row_id,
            "idempotency_key": step.idempotency_key,
            "account_id": uuid.UUID(step.account_id),
            "step_id": step.step_id,
            "policy_hash": step.policy_hash,
            "channel": channel,
            "template": step.template,
            "status": status,
            "reasons": "; ".join(reasons) or None,
            **fields,
        }
        inserted = session.execute(
            insert(Communication).values(**values)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(Communication.id)
        ).scalar()
        if inserted is None:
            return None
        return session.get(Communication, row_id)

    def _render(
        self, bundle: PolicyBundle, step: SendStepInput, account: Account, channel: Channel,
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

    def _outgoing(self, row: Communication) -> OutgoingMessage:
        assert row.channel is not None
        return OutgoingMessage(str(row.id), row.idempotency_key, row.channel, row.recipient or "",
                               row.subject, row.body or "")

    def _mark_sent(self, session: Session, row: Communication, delivery: Delivery,
                   at: dt.datetime) -> None:
        row.status = CommunicationStatus.SENT
        row.provider = delivery.provider
        row.provider_id = delivery.provider_id
        row.file_path = delivery.file_path
        row.sent_at = at
        session.add(AuditEvent(actor="system", action="message_sent", account_id=row.account_id,
                               detail={"communication_id": str(row.id), "step": row.step_id,
                                       "channel": row.channel.value if row.channel else None}))

    @staticmethod
    def _result(row: Communication) -> SendStepResult:
        outcome = (StepOutcome.SUPPRESSED if row.status is CommunicationStatus.SUPPRESSED
                   else StepOutcome.SENT)
        reasons = row.reasons.split("; ") if row.reasons else []
        return SendStepResult(communication_id=str(row.id), outcome=outcome, channel=row.channel,
                              reasons=reasons)


def _statement_line(charge: ChargeLine) -> StatementLine:
    return StatementLine(
        service_date=charge.service_date,
        description=charge.description,
        charges_cents=charge.charges_cents,
        insurance_paid_cents=charge.insurance_paid_cents,
        insurance_adjustment_cents=charge.insurance_adjustment_cents,
        patient_paid_cents=charge.patient_paid_cents,
    )
