"""The email unsubscribe link: a signed per-message token, one-click (RFC 8058) and a page.

Every email carries ``{public_url}/unsubscribe/email/{token}`` in its text, its HTML and its
``List-Unsubscribe`` header, with ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``. The token
is the outbox row's id and an HMAC-SHA256 of it under a secret of the deployment
(``DUNNING_API__UNSUBSCRIBE_SECRET``; without one, a random key kept in the data folder, shared
by the worker and the API of ``dunning run``). A forged or altered token is refused and changes
nothing; no address, name or account number is ever in the link.

Opting out is ledger first, then the workflows: the address is opted out for every guarantor who
uses it, and each open account's workflow hears a ``channel_event`` (deduplicated by the message,
so a second click changes nothing).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sqlalchemy import select

from config.settings import Settings
from models.actions import ChannelEventKind, ChannelEventSignal
from models.orm import Account, ChannelPreference, Communication, Guarantor
from models.policy import Channel
from services import intake as intake_service
from starter import Intake

KEY_FILE = "unsubscribe.key"
_CONTEXT = b"dunning/unsubscribe/email/v1:"
_MAC_CHARS = 27  # 160 bits of the HMAC, base64url without padding


def secret_for(settings: Settings) -> bytes:
    """The signing key: the configured secret, else one kept (0600) in the data folder."""
    configured = settings.api.unsubscribe_secret
    if configured is not None and configured.get_secret_value():
        return configured.get_secret_value().encode()
    path = Path(settings.data_dir) / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def _mac(secret: bytes, communication_id: str) -> str:
    digest = hmac.new(secret, _CONTEXT + communication_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:_MAC_CHARS]


def sign(secret: bytes, communication_id: str) -> str:
    """The token of one message: ``<outbox id>.<mac>``."""
    return f"{communication_id}.{_mac(secret, communication_id)}"


def verify(secret: bytes, token: str) -> uuid.UUID | None:
    """The outbox id a genuine token names; None for anything forged, altered or malformed."""
    ident, _, mac = token.partition(".")
    if len(token) > 100 or not mac:
        return None
    try:
        parsed = uuid.UUID(ident)
    except ValueError:
        return None
    if str(parsed) != ident or not hmac.compare_digest(mac, _mac(secret, ident)):
        return None
    return parsed


class Unsubscribed(StrEnum):
    DONE = "done"  # opted out now
    ALREADY = "already"  # it was already opted out: nothing changed
    REFUSED = "refused"  # forged, altered or unknown: nothing changed


@dataclass(frozen=True)
class UnsubscribeResult:
    status: Unsubscribed
    accounts_told: int = 0


async def unsubscribe_email(intake: Intake, token: str) -> UnsubscribeResult:
    """Opt the message's address out of email, at once; the workflows are told."""
    ident = verify(secret_for(intake.settings), token)
    if ident is None:
        return UnsubscribeResult(Unsubscribed.REFUSED)
    with intake.session_factory() as session:
        row = session.execute(
            select(Communication.channel, Guarantor.id, Guarantor.email)
            .join(Account, Account.id == Communication.account_id)
            .join(Guarantor, Guarantor.id == Account.guarantor_id)
            .where(Communication.id == ident)
        ).first()
        if row is None or row[0] is not Channel.EMAIL:
            return UnsubscribeResult(Unsubscribed.REFUSED)
        _, guarantor_id, email = row
        ids = intake_service.guarantors_by_email(session, email) if email else []
        if guarantor_id not in ids:
            ids.append(guarantor_id)
        opted = set(
            session.scalars(
                select(ChannelPreference.guarantor_id).where(
                    ChannelPreference.guarantor_id.in_(ids),
                    ChannelPreference.channel == Channel.EMAIL,
                    ChannelPreference.opted_out_at.is_not(None),
                )
            ).all()
        )
    pending = [g for g in ids if g not in opted]
    if not pending:
        return UnsubscribeResult(Unsubscribed.ALREADY)
    event = ChannelEventSignal(
        reference=f"unsub:{ident}", kind=ChannelEventKind.OPTED_OUT, channel=Channel.EMAIL
    )
    told = await intake_service.channel_event_for_guarantors(intake, pending, event, "unsubscribe")
    return UnsubscribeResult(Unsubscribed.DONE, told)
