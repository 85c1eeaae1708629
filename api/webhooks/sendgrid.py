"""SendGrid's Event Webhook: bounces, drops, spam reports, unsubscribes and deliveries.

Verified with the ``sendgrid`` library's ``EventWebhook`` helper: an ECDSA (P-256, SHA-256)
signature over the timestamp header followed by the raw body, with the public key from SendGrid's
mail settings. A timestamp older than ``MAX_AGE`` is refused (a replay); within it, every event is
deduplicated by ``sg_event_id``, since SendGrid retries a batch for up to a day.
"""

from __future__ import annotations

import binascii
import datetime as dt
import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from sendgrid.helpers.eventwebhook import EventWebhook

from api.webhooks.common import claim, mark_seen, release
from api.webhooks.twilio import Refused
from models.actions import ChannelEventKind, ChannelEventSignal
from models.orm import Account, Communication, CommunicationStatus
from models.policy import Channel
from services import intake as intake_service
from starter import Intake

PROVIDER = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_AGE = dt.timedelta(minutes=10)
MAX_SKEW = dt.timedelta(minutes=5)
OUTBOX_ARGS = ("outbox_id", "communication_id")
"""Custom arguments that carry our outbox row's id (activities/email.py sends ``outbox_id``)."""
log = logging.getLogger(__name__)

EVENT_KINDS: dict[str, ChannelEventKind] = {
    "bounce": ChannelEventKind.EMAIL_BOUNCED,
    "dropped": ChannelEventKind.EMAIL_BOUNCED,
    "spamreport": ChannelEventKind.OPTED_OUT,
    "unsubscribe": ChannelEventKind.OPTED_OUT,
    "group_unsubscribe": ChannelEventKind.OPTED_OUT,
}


class SendGridEvent(BaseModel):
    """One event of a batch; custom arguments arrive as top-level fields."""

    model_config = ConfigDict(extra="allow")

    event: str = Field(min_length=1, max_length=32)
    sg_event_id: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    timestamp: int | None = None
    outbox_id: str | None = Field(default=None, max_length=64)
    communication_id: str | None = Field(default=None, max_length=64)


BATCH = TypeAdapter(list[SendGridEvent])


class Verifier:
    """Checks SendGrid's signature and the timestamp, with the configured public key."""

    def __init__(self, public_key: str) -> None:
        self._webhook: EventWebhook | None = None
        if public_key:
            try:
                self._webhook = EventWebhook(public_key.strip())
            except (ValueError, TypeError):
                log.error("sendgrid.webhook_public_key is not a valid public key")

    def verify(
        self,
        body: bytes,
        signature: str | None,
        timestamp: str | None,
        now: dt.datetime | None = None,
    ) -> list[SendGridEvent]:
        """The batch's events, if signed by SendGrid recently; else :class:`Refused`."""
        if self._webhook is None:
            raise Refused(403, "sendgrid webhooks are not configured")
        if not signature or not timestamp or not timestamp.isdigit() or len(timestamp) > 12:
            raise Refused(403, "missing or malformed signature headers")
        sent = dt.datetime.fromtimestamp(int(timestamp), dt.UTC)
        now = now or dt.datetime.now(dt.UTC)
        if sent < now - MAX_AGE or sent > now + MAX_SKEW:
            raise Refused(403, "timestamp outside the accepted window (replay?)")
        try:
            valid = self._webhook.verify_signature(body.decode("utf-8"), signature, timestamp)
        except (UnicodeDecodeError, binascii.Error, ValueError, TypeError):
            valid = False
        if not valid:
            raise Refused(403, "signature does not match")
        try:
            return BATCH.validate_python(json.loads(body))
        except (ValueError, ValidationError):
            raise Refused(400, "expected a JSON array of SendGrid events") from None


@dataclass
class BatchOutcome:
    accepted: int = 0
    duplicates: int = 0
    ignored: int = 0
    matched: list[str] = field(default_factory=list)


def _reference(event_id: str) -> str:
    return "sg:" + hashlib.sha256(event_id.encode("utf-8")).hexdigest()[:40]


def _outbox_id(event: SendGridEvent) -> uuid.UUID | None:
    for name in OUTBOX_ARGS:
        value = getattr(event, name)
        if value:
            try:
                return uuid.UUID(value)
            except ValueError:
                return None
    return None


async def handle_batch(intake: Intake, events: list[SendGridEvent]) -> BatchOutcome:
    """Apply each new event: a bounce or drop marks email undeliverable, a spam report or
    unsubscribe opts email out, on every open account of the guarantor; then mark it seen."""
    session_factory = intake.session_factory
    outcome = BatchOutcome()
    for event in events:
        if not claim(session_factory, PROVIDER, event.sg_event_id, event.event):
            outcome.duplicates += 1
            continue
        try:
            await _apply(intake, event, outcome)
        except BaseException:
            release(session_factory, PROVIDER, event.sg_event_id)
            raise
        mark_seen(session_factory, PROVIDER, event.sg_event_id, event.event)
    return outcome


async def _apply(intake: Intake, event: SendGridEvent, outcome: BatchOutcome) -> None:
    session_factory = intake.session_factory
    kind = EVENT_KINDS.get(event.event)
    guarantors: list[uuid.UUID] = []
    with session_factory.begin() as session:
        outbox = _outbox_id(event)
        row = session.get(Communication, outbox) if outbox else None
        if row is not None:
            outcome.matched.append(str(row.id))
            account = session.get(Account, row.account_id)
            assert account is not None
            guarantors = [account.guarantor_id]
            if kind is ChannelEventKind.EMAIL_BOUNCED:
                row.status = CommunicationStatus.FAILED
                row.reasons = "; ".join(x for x in (row.reasons, f"sendgrid {event.event}") if x)
        elif kind is not None and event.email:
            # An unsubscribe from SendGrid's own page may carry no custom argument.
            guarantors = intake_service.guarantors_by_email(session, event.email)
        if (
            event.event == "delivered"
            and row is not None
            and row.status in (CommunicationStatus.PENDING, CommunicationStatus.UNCONFIRMED)
        ):
            row.status = CommunicationStatus.SENT
    if kind is not None and guarantors:
        signal = ChannelEventSignal(
            reference=_reference(event.sg_event_id), kind=kind, channel=Channel.EMAIL
        )
        await intake_service.channel_event_for_guarantors(intake, guarantors, signal, "sendgrid")
        outcome.accepted += 1
    elif event.event == "delivered" and row is not None:
        outcome.accepted += 1
    else:
        outcome.ignored += 1
