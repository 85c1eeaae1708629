"""Twilio webhooks: delivery status callbacks and inbound texts, verified by X-Twilio-Signature.

The signature is Twilio's HMAC-SHA1 over the full URL Twilio called and the sorted form fields,
checked with the twilio library's own ``RequestValidator``. Behind a proxy the URL the app sees
differs from the one Twilio called, so the public URL (``DUNNING_API__PUBLIC_URL``) is used.
Twilio sends no event id or timestamp: a status is deduplicated by message and status, an inbound
text by its message id, so a replayed request changes nothing.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl

from sqlalchemy import select
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from activities.sms import ASYNC_UNDELIVERABLE_CODES, OPTED_OUT_CODES, UNDELIVERABLE_CODES
from api.webhooks.common import claim, mark_seen, release
from config.settings import Settings
from models.actions import ChannelEventKind, ChannelEventSignal
from models.orm import Account, AuditEvent, Communication, CommunicationStatus
from models.policy import Channel
from services import intake as intake_service
from services import replies
from starter import Intake

PROVIDER = "twilio"
SIGNATURE_HEADER = "X-Twilio-Signature"
SID_RE = re.compile(r"^(SM|MM)[0-9a-fA-F]{32}$")
log = logging.getLogger(__name__)


class Refused(Exception):
    """A webhook that is forged, replayed or malformed: nothing was changed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def public_url(settings: Settings, path: str, query: str, seen_url: str) -> str:
    """The URL Twilio signed: the configured public base plus the path and query, if set."""
    base = settings.api.public_url.rstrip("/")
    if not base:
        return seen_url
    return base + path + (f"?{query}" if query else "")


def verify(settings: Settings, url: str, body: bytes, signature: str | None) -> dict[str, str]:
    """The form fields of a request whose signature is Twilio's; else :class:`Refused`."""
    token = settings.twilio.auth_token
    if token is None or not token.get_secret_value():
        raise Refused(403, "twilio webhooks are not configured")
    if not signature:
        raise Refused(403, "missing X-Twilio-Signature")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise Refused(403, "signature does not match") from None
    params = dict(pairs)
    if len(params) != len(pairs):  # Twilio never repeats a field; a repeat is tampering
        raise Refused(403, "signature does not match")
    if not RequestValidator(token.get_secret_value()).validate(url, params, signature):
        raise Refused(403, "signature does not match")
    return params


@dataclass(frozen=True)
class StatusOutcome:
    duplicate: bool
    communication_id: str | None
    event: ChannelEventKind | None


def _channel_event_for(status: str, error_code: str) -> ChannelEventKind | None:
    if status not in ("undelivered", "failed") or not error_code.isdigit():
        return None
    code = int(error_code)
    if code in OPTED_OUT_CODES:
        return ChannelEventKind.OPTED_OUT
    if code in ASYNC_UNDELIVERABLE_CODES | UNDELIVERABLE_CODES:
        return ChannelEventKind.SMS_UNDELIVERABLE
    return None


async def handle_status(
    intake: Intake, params: dict[str, str], outbox_id: str | None
) -> StatusOutcome:
    """A delivery report: update the outbox row; an undeliverable or opted-out number is a
    channel event for every open account of the guarantor."""
    sid, status = params.get("MessageSid", ""), params.get("MessageStatus", "").lower()
    if not SID_RE.match(sid) or not re.match(r"^[a-z_]{1,32}$", status):
        raise Refused(400, "MessageSid and MessageStatus are required")
    error_code = params.get("ErrorCode", "")
    event_id = f"{sid}:{status}"
    session_factory = intake.session_factory
    if not claim(session_factory, PROVIDER, event_id, status):
        return StatusOutcome(True, None, None)
    try:
        outcome = await _apply_status(intake, sid, status, error_code, outbox_id)
    except BaseException:
        release(session_factory, PROVIDER, event_id)
        raise
    mark_seen(session_factory, PROVIDER, event_id, status)
    return outcome


async def _apply_status(
    intake: Intake, sid: str, status: str, error_code: str, outbox_id: str | None
) -> StatusOutcome:
    session_factory = intake.session_factory
    kind = _channel_event_for(status, error_code)
    guarantor_id = None
    communication_id = None
    with session_factory.begin() as session:
        row = session.scalars(
            select(Communication).where(
                Communication.provider == PROVIDER, Communication.provider_id == sid
            )
        ).first()
        if row is None and outbox_id:
            try:
                row = session.get(Communication, uuid.UUID(outbox_id))
            except ValueError:
                row = None
            if row is not None and row.provider_id not in (None, sid):
                row = None
        if row is not None:
            communication_id = str(row.id)
            if status in ("undelivered", "failed"):
                row.status = CommunicationStatus.FAILED
                row.reasons = "; ".join(
                    x for x in (row.reasons, f"twilio {status} {error_code}".strip()) if x
                )
            elif status in ("sent", "delivered") and row.status in (
                CommunicationStatus.PENDING,
                CommunicationStatus.UNCONFIRMED,
            ):
                row.status = CommunicationStatus.SENT
            account = session.get(Account, row.account_id)
            assert account is not None
            guarantor_id = account.guarantor_id
            session.add(
                AuditEvent(
                    actor="twilio",
                    action="sms_status",
                    account_id=account.id,
                    detail={
                        "communication_id": communication_id,
                        "status": status,
                        "error_code": error_code,
                    },
                )
            )
    if kind is not None and guarantor_id is not None:
        event = ChannelEventSignal(reference=f"tw:{sid}", kind=kind, channel=Channel.SMS)
        await intake_service.channel_event_for_guarantors(intake, [guarantor_id], event, "twilio")
    return StatusOutcome(False, communication_id, kind if guarantor_id else None)


async def handle_inbound(intake: Intake, params: dict[str, str], settings: Settings) -> str:
    """An inbound text, understood by :mod:`services.replies`: a revocation however phrased (in
    English or Spanish) opts SMS out, a wrong number stops texts and calls to it, START restores
    consent, HELP gets the practice's contact, anything else opens a staff task. Returns the
    TwiML answer: one text at most, in the account's language and signed by its policy practice,
    with no balance or service."""
    sid, sender = params.get("MessageSid", ""), params.get("From", "")
    if not SID_RE.match(sid) or not sender:
        raise Refused(400, "MessageSid and From are required")
    session_factory = intake.session_factory
    answer = MessagingResponse()
    if not claim(session_factory, PROVIDER, sid, "inbound"):
        return str(answer)
    try:
        with session_factory() as session:
            guarantors = intake_service.guarantors_by_phone(session, sender)
        outcome = await replies.handle_reply(
            intake,
            channel=Channel.SMS,
            guarantor_ids=guarantors,
            reference=f"tw:{sid}",
            text=params.get("Body", ""),
            actor="twilio",
        )
    except BaseException:
        release(session_factory, PROVIDER, sid)  # the provider's retry applies it
        raise
    if outcome.reply:
        answer.message(outcome.reply)
    mark_seen(session_factory, PROVIDER, sid, f"inbound_{outcome.intent.value}")
    return str(answer)
