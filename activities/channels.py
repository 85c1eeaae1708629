"""Senders: how a rendered message leaves the building.

The local outbox is the embedded default when no provider credentials are configured: each message
becomes a readable file under ``<data_dir>/outbox/<channel>/``. Its name is the message's idempotency
key, and it is written atomically, so a retried send finds it and does not write it twice.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from models.policy import Channel


@dataclass(frozen=True)
class OutgoingMessage:
    communication_id: str
    idempotency_key: str
    channel: Channel
    recipient: str
    subject: str | None
    body: str


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


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class OutboxSender:
    """Writes each message to a file a person can read."""

    name = "outbox"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, message: OutgoingMessage) -> Path:
        digest = hashlib.sha256(message.idempotency_key.encode()).hexdigest()[:16]
        stem = _UNSAFE.sub("_", message.idempotency_key)[:80]
        return self.directory / message.channel.value / f"{stem}-{digest}.txt"

    def send(self, message: OutgoingMessage) -> Delivery:
        path = self._path(message)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = [f"Channel: {message.channel.value}", f"To: {message.recipient}",
                  f"Message-Id: {message.communication_id}"]
        if message.subject:
            header.append(f"Subject: {message.subject}")
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(header) + "\n\n" + message.body, encoding="utf-8")
        os.replace(tmp, path)  # atomic: a reader never sees half a message
        return Delivery(self.name, message.communication_id, str(path))

    def confirm(self, message: OutgoingMessage) -> Delivery | None:
        path = self._path(message)
        return Delivery(self.name, message.communication_id, str(path)) if path.exists() else None
