"""Idempotency of API intake and deduplication of provider webhooks."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.orm.base import Base


class IdempotencyKey(Base):
    """The first response to an intake request, per route and the caller's external reference.

    A repeat with the same body gets this response back; a repeat with another body is refused.
    """

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int]
    response: Mapped[dict[str, Any]] = mapped_column(JSONB)
    actor: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class WebhookEvent(Base):
    """A provider event already applied: SendGrid retries for up to a day, Twilio on timeouts."""

    __tablename__ = "webhook_events"

    provider: Mapped[str] = mapped_column(String(16), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    applied_at: Mapped[dt.datetime | None]
    """None while the request that claimed the event is applying it."""
