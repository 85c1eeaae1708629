"""SendGrid Inbound Parse: a patient's reply to one of our emails, understood like a text.

SendGrid posts the parsed message as multipart form fields (``from``, ``subject``, ``text``,
``headers``...). Inbound Parse has no signature, so the URL configured at SendGrid carries a key
(``.../webhooks/sendgrid/inbound?key=...``, ``DUNNING_SENDGRID__INBOUND_PARSE_KEY``), compared in
constant time; without a configured key every request is refused. A message is deduplicated by
its Message-ID (SendGrid retries), so a replay changes nothing.

The sender's address finds the guarantors; the patient's own words (above the quoted message)
or, when empty, the subject are classified by :mod:`models.replies`: a revocation opts the address
out of email at once, anything unclear opens a staff task. No answer is emailed back.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from email.utils import parseaddr

from api.webhooks.common import claim, mark_seen, release
from api.webhooks.twilio import Refused
from config.settings import Settings
from models.policy import Channel
from models.replies import ReplyIntent, classify_email
from services import intake as intake_service
from services import replies
from starter import Intake

PROVIDER = "sendgrid-inbound"
MAX_TEXT = 20_000
_MESSAGE_ID = re.compile(r"^message-id:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


def verify_key(settings: Settings, key: str | None) -> None:
    """Refuse unless ``key`` is the configured Inbound Parse key."""
    configured = settings.sendgrid.inbound_parse_key
    if configured is None or not configured.get_secret_value():
        raise Refused(403, "sendgrid inbound parse is not configured")
    if not key or not hmac.compare_digest(key.encode(), configured.get_secret_value().encode()):
        raise Refused(403, "inbound parse key does not match")


@dataclass(frozen=True)
class InboundOutcome:
    duplicate: bool
    intent: ReplyIntent | None
    accounts_told: int = 0
    tasks: int = 0


def _reference(fields: dict[str, str]) -> str:
    found = _MESSAGE_ID.search(fields.get("headers", ""))
    basis = (
        found.group(1)
        if found
        else "\n".join(fields.get(k, "") for k in ("from", "subject", "text"))
    )
    return "sgin:" + hashlib.sha256(basis.encode()).hexdigest()[:40]


async def handle_inbound(intake: Intake, fields: dict[str, str]) -> InboundOutcome:
    """One parsed inbound email: classify and act; nothing for an unknown sender."""
    _, sender = parseaddr(fields.get("from", ""))
    if "@" not in sender:
        raise Refused(400, "from is required")
    reference = _reference(fields)
    session_factory = intake.session_factory
    if not claim(session_factory, PROVIDER, reference, "inbound"):
        return InboundOutcome(True, None)
    text = fields.get("text", "")[:MAX_TEXT]
    subject = fields.get("subject", "")[:500]
    try:
        with session_factory() as session:
            guarantors = intake_service.guarantors_by_email(session, sender)
        intent = classify_email(subject, text)
        outcome = await replies.handle_reply(
            intake,
            channel=Channel.EMAIL,
            guarantor_ids=guarantors,
            reference=reference,
            text=f"{subject}\n\n{text}".strip(),
            actor="sendgrid",
            intent=intent,
        )
    except BaseException:
        release(session_factory, PROVIDER, reference)  # SendGrid's retry applies it
        raise
    mark_seen(session_factory, PROVIDER, reference, f"inbound_{outcome.intent.value}")
    return InboundOutcome(False, outcome.intent, outcome.accounts_told, len(outcome.task_ids))
