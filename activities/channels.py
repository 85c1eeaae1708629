"""Senders: how a rendered message leaves the building.

One sender class per outside system, its client injected (``activities.email``: SendGrid,
``activities.sms``: Twilio). Letters and call tasks need no sender: they are queued in our own
database with their claim (``activities.letters`` composes the print batch). This module holds
what senders share: the message handed to a sender, the delivery it reports, the typed failures
it may raise, and the local outbox; and the statement a letter lays out.

The local outbox is the embedded default when no provider credentials are configured: each
message is appended to the day's mailbox of its channel under ``<data_dir>/outbox/<channel>/``,
found again by its id when a retried send asks whether it went out.

Failures carry no patient data: no address, number, name or amount ever reaches an exception
message, because those end up in logs and in Temporal's failure records.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import format_datetime
from pathlib import Path
from typing import Protocol

from activities.rendering import StatementLine
from config.private_files import FILE_MODE, private_dir, private_file
from models.policy import Channel, PhoneHours

# -- what a sender is given -----------------------------------------------------------------


@dataclass(frozen=True)
class AccountSection:
    """One account on a letter that covers several: its visits, payments shown per visit."""

    account_id: str
    account_number: str
    balance_cents: int
    lines: tuple[StatementLine, ...]
    payments_cents: int = 0
    """Payments posted to this account (a family payment lands on accounts oldest first)."""


@dataclass(frozen=True)
class LetterContent:
    """Everything a printed letter shows besides the policy's message."""

    practice_name: str
    practice_phone: str
    pay_url: str
    recipient_name: str
    address_lines: tuple[str, ...]
    account_number: str
    statement_date: dt.date
    due_date: dt.date
    amount_due_cents: int
    currency: str
    lines: tuple[StatementLine, ...]
    aging_cents: tuple[tuple[str, int], ...]
    """Balance by age bucket, oldest last: (("0-30", 1200), ("31-60", 0), ...)."""
    title: str
    financial_assistance: str = ""
    """The plain-language financial-assistance summary; empty where the policy does not ask."""
    accounts: tuple[AccountSection, ...] = ()
    """A letter covering several accounts of one guarantor (``activities.family``): each
    account's visits and balance; ``amount_due_cents`` is then their total. Empty: one account."""
    scope: str = ""
    """Which accounts a letter covers at print time: "" its own, "merged" those of ``accounts``
    (steps due together), "family" every open account of the guarantor (a family statement)."""
    allocation: str = ""
    """How a payment against a letter covering several accounts is applied (the policy's)."""
    language: str = "en"
    """The language of the letter's fixed wording (``config/statement/<language>.yaml``)."""
    title_key: str = ""
    """The wording's title for the step (statement, final_notice...); empty: ``title``."""
    return_address: tuple[str, ...] = ()
    """The practice's return address (upper envelope window), below its name."""
    remit_to: tuple[str, ...] = ()
    """Where checks go (the coupon, behind the return envelope's window), below the name."""
    phone_hours: PhoneHours | None = None
    logo: str = ""
    tax_id: str = ""


@dataclass(frozen=True)
class OutgoingMessage:
    communication_id: str
    idempotency_key: str
    channel: Channel
    recipient: str
    subject: str | None
    body: str
    html: str | None = None
    """Email only: the HTML alternative of ``body``."""
    sender_name: str = ""
    """Email only: the From name, the account's policy practice (``Practice.name``)."""


@dataclass(frozen=True)
class Delivery:
    provider: str
    provider_id: str
    file_path: str | None = None


class Sender(Protocol):
    """One channel's way out. ``send`` must be safe to call once per message."""

    name: str

    def send(self, message: OutgoingMessage) -> Delivery: ...

    def confirm(self, message: OutgoingMessage) -> Delivery | None:
        """After a crash mid-send: the delivery if the message certainly left, else None."""
        ...


# -- what a sender may raise ----------------------------------------------------------------


class SendError(Exception):
    """A provider's answer, reduced to what the step needs to decide. Never holds patient data."""

    def __init__(self, message: str, *, provider: str, code: str = "") -> None:
        super().__init__(message)
        self.provider = provider
        self.code = code


class RecipientRejected(SendError):
    """Permanent for this recipient on this channel: mark the channel and fall back.

    ``deliverability`` is "bounced", "undeliverable" or "returned"; ``opted_out`` means the
    recipient unsubscribed at the provider (Twilio 21610: replied STOP).
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        code: str = "",
        deliverability: str = "undeliverable",
        opted_out: bool = False,
    ) -> None:
        super().__init__(message, provider=provider, code=code)
        self.deliverability = deliverability
        self.opted_out = opted_out


class ProviderBusy(SendError):
    """Rate limited or a server error: the provider did not take the message; try again later."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        code: str = "",
        retry_after: dt.timedelta | None = None,
        rate_limited: bool = False,
    ) -> None:
        super().__init__(message, provider=provider, code=code)
        self.retry_after = retry_after
        self.rate_limited = rate_limited


class ProviderAuthFailed(SendError):
    """Our credentials were refused: nothing was sent; an operator must fix the configuration."""


class ProviderUnreachable(SendError):
    """No answer (connection lost, timeout): the message may or may not have left."""


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> dt.timedelta | None:
    """A Retry-After header (seconds or an HTTP date) as a delay; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return dt.timedelta(seconds=int(value))
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    delay = when - (now or dt.datetime.now(dt.UTC))
    return max(delay, dt.timedelta(0))


# -- the local outbox -------------------------------------------------------------------------

OUTBOX_LOOKBACK_DAYS = 7
"""How many days of mailboxes ``OutboxSender.confirm`` searches for a message."""


class OutboxSender:
    """Appends each message to the day's mailbox of its channel, a file a person can read.

    ``<directory>/<channel>/<YYYY-MM-DD>.mbox`` (UTC days) in mbox format, so any mail reader or a
    pager opens it; each message is one append under a lock, not a file of its own: creating a
    file costs the filesystem a thousand times more than appending to one, and a morning's
    thousands of messages would be as many files. ``confirm`` finds a message by its id.
    """

    name = "outbox"
    network = False  # a file on this machine: it holds the message or it does not, never "maybe"

    def __init__(self, directory: Path, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.directory = directory
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._lock = threading.Lock()
        self._private: set[Path] = set()

    def mailbox(self, channel: Channel, day: dt.date) -> Path:
        return self.directory / channel.value / f"{day.isoformat()}.mbox"

    def send(self, message: OutgoingMessage) -> Delivery:
        now = self._clock()
        path = self.mailbox(message.channel, now.date())
        header = [
            f"From dunning {now.strftime('%a %b %d %H:%M:%S %Y')}",
            f"Message-Id: <{message.communication_id}@dunning>",
            f"Date: {format_datetime(now)}",
            f"X-Dunning-Channel: {message.channel.value}",
            f"To: {message.recipient}",
        ]
        if message.subject:
            header.append(f"Subject: {message.subject}")
        # mbox: a body line starting with "From " would start a new message; quote it.
        body = _FROM_LINE.sub(r">\1", message.body)
        record = "\n".join(header) + "\n\n" + body.rstrip("\n") + "\n\n"
        data = record.encode("utf-8")
        with self._lock:
            if path not in self._private:
                # Once per mailbox and process: the folder made, an existing file made private.
                private_dir(path.parent)
                private_file(path)  # patient data: owner only
                self._private.add(path)
            try:
                _append(path, data)
            except FileNotFoundError:  # the folder was removed meanwhile
                private_dir(path.parent)
                _append(path, data)
        return Delivery(self.name, message.communication_id, str(path))

    def confirm(self, message: OutgoingMessage) -> Delivery | None:
        """The message's delivery if a mailbox of the last days holds it, else None."""
        marker = f"Message-Id: <{message.communication_id}@dunning>\n"
        today = self._clock().date()
        for back in range(OUTBOX_LOOKBACK_DAYS):
            path = self.mailbox(message.channel, today - dt.timedelta(days=back))
            if path.is_file() and marker in path.read_text(encoding="utf-8"):
                return Delivery(self.name, message.communication_id, str(path))
        return None


def _append(path: Path, data: bytes) -> None:
    """One append of a whole message (a reader sees whole messages); a mailbox removed meanwhile
    is made again, owner-only."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


_FROM_LINE = re.compile(r"^(>*From )", re.MULTILINE)
