"""What happens when a patient writes back: a text to our number or a reply to an email.

The message is classified by :mod:`models.replies` (revocation understood, not matched). Ledger
first, then the workflows, as everywhere:

- a revocation opts the channel out (SMS for a text, email for an email) on every account of the
  guarantors behind the sender, each open workflow told by a ``channel_event`` signal;
- a wrong number marks the number undeliverable for texts and calls;
- START restores SMS consent, HELP only answers;
- anything else opens a ``reply`` staff task on each open account: a person reads it.

The answer speaks the account's language and is signed by the account's own policy practice
(the policy names its practice and languages; the guarantor has a language), not by the
deployment's default practice. Every outcome is in the audit trail; the channel events are also
in the workflow's events (``dunning status --json``, ``GET /accounts/{n}``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.loader import PolicyFileError
from models.actions import ChannelEventKind, ChannelEventSignal
from models.orm import Account, AccountStatus, AuditEvent, Guarantor, StaffTask, TaskKind
from models.policy import Channel
from models.replies import ReplyIntent, classify, reply_text
from services import intake as intake_service
from starter import Intake

TEXT_KEPT_CHARS = 1000
"""How much of an unclear message the staff task keeps for the person who reads it."""

EVENT_OF_INTENT: dict[ReplyIntent, ChannelEventKind] = {
    ReplyIntent.REVOKE: ChannelEventKind.OPTED_OUT,
    ReplyIntent.WRONG_NUMBER: ChannelEventKind.WRONG_NUMBER,
    ReplyIntent.START: ChannelEventKind.CONSENT_GIVEN,
}


@dataclass(frozen=True)
class Voice:
    """Who answers, and in which language."""

    language: str
    practice: str
    phone: str


@dataclass
class ReplyOutcome:
    intent: ReplyIntent
    reply: str
    voice: Voice
    accounts_told: int = 0
    task_ids: list[str] = field(default_factory=list)


def voice_for(intake: Intake, session: Session, guarantor_ids: list[uuid.UUID]) -> Voice:
    """The account's language and policy practice; the deployment's practice if none is known.

    With several accounts behind one number, the most recently opened open account speaks (an
    open one before a closed one).
    """
    settings = intake.settings
    fallback = Voice("en", settings.practice.name, settings.practice.phone)
    if not guarantor_ids:
        return fallback
    row = session.execute(
        select(Account.policy_name, Guarantor.language)
        .join(Guarantor, Guarantor.id == Account.guarantor_id)
        .where(Account.guarantor_id.in_(guarantor_ids))
        .order_by((Account.status == AccountStatus.OPEN).desc(), Account.opened_at.desc())
        .limit(1)
    ).first()
    if row is None:
        return fallback
    policy_name, language = row
    try:
        policy = intake.policy(policy_name).policy
    except PolicyFileError:
        return Voice(language or "en", fallback.practice, fallback.phone)
    spoken = language if language in policy.languages else policy.languages[0]
    return Voice(spoken, policy.practice.name, policy.practice.phone)


async def handle_reply(
    intake: Intake,
    *,
    channel: Channel,
    guarantor_ids: list[uuid.UUID],
    reference: str,
    text: str,
    actor: str,
    intent: ReplyIntent | None = None,
) -> ReplyOutcome:
    """Classify one inbound message and act on it; ``reference`` deduplicates the signals.

    ``channel`` is what the patient wrote through (SMS or EMAIL): a revocation opts that channel
    out. A wrong number said by text marks the phone (texts and calls); by email, it opts the
    address out. ``intent`` is given when the caller classified already (an email's subject and
    body, :func:`models.replies.classify_email`).
    """
    intent = intent or classify(text)
    if intent is ReplyIntent.START and channel is not Channel.SMS:
        intent = ReplyIntent.UNCLEAR  # "yes" in an email is not consent to texts
    with intake.session_factory() as session:
        voice = voice_for(intake, session, guarantor_ids)
    reply = reply_text(intent, voice.language, voice.practice, voice.phone)
    outcome = ReplyOutcome(intent, reply, voice)
    kind = EVENT_OF_INTENT.get(intent)
    if kind is not None:
        if kind is ChannelEventKind.WRONG_NUMBER and channel is not Channel.SMS:
            kind = ChannelEventKind.OPTED_OUT  # "wrong person" by email: no more email to it
        event = ChannelEventSignal(reference=reference, kind=kind, channel=channel)
        outcome.accounts_told = await intake_service.channel_event_for_guarantors(
            intake, guarantor_ids, event, actor
        )
    elif intent is ReplyIntent.UNCLEAR:
        outcome.task_ids = open_reply_tasks(intake, guarantor_ids, channel, reference, text, actor)
    return outcome


def open_reply_tasks(
    intake: Intake,
    guarantor_ids: list[uuid.UUID],
    channel: Channel,
    reference: str,
    text: str,
    actor: str,
) -> list[str]:
    """A ``reply`` task on each open account of the guarantors, once per message."""
    if not guarantor_ids:
        return []
    ids: list[str] = []
    with intake.session_factory.begin() as session:
        accounts = session.scalars(
            select(Account).where(
                Account.guarantor_id.in_(guarantor_ids), Account.status == AccountStatus.OPEN
            )
        ).all()
        for account in accounts:
            known = session.scalars(
                select(StaffTask.id).where(
                    StaffTask.account_id == account.id,
                    StaffTask.kind == TaskKind.REPLY,
                    StaffTask.detail["reference"].astext == reference,
                )
            ).first()
            if known is not None:
                ids.append(str(known))
                continue
            task = StaffTask(
                account_id=account.id,
                kind=TaskKind.REPLY,
                title=f"Read the patient's {'text' if channel is Channel.SMS else 'email'} "
                "and decide (it was not a clear stop, start or help)",
                requested_by=actor,
                detail={
                    "channel": channel.value,
                    "reference": reference,
                    "text": text[:TEXT_KEPT_CHARS],
                },
            )
            session.add(task)
            session.flush()
            session.add(
                AuditEvent(
                    actor=actor,
                    action="reply_needs_person",
                    account_id=account.id,
                    detail={
                        "task_id": str(task.id),
                        "channel": channel.value,
                        "reference": reference,
                    },
                )
            )
            ids.append(str(task.id))
    return ids
