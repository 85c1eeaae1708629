"""The communications outbox: one row per message, written before any provider is called."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import Enum, ForeignKey, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.orm.base import Base, Timestamped, new_id
from models.policy import Channel


class CommunicationStatus(StrEnum):
    PENDING = "pending"  # claimed: the idempotency key is taken, the provider not yet called
    SENT = "sent"
    SUPPRESSED = "suppressed"  # not allowed at the moment of sending; nothing went out
    FAILED = "failed"
    UNCONFIRMED = "unconfirmed"  # the worker died mid-send; never re-sent automatically


class Communication(Timestamped, Base):
    __tablename__ = "communications"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    step_id: Mapped[str] = mapped_column(String(48))
    policy_hash: Mapped[str] = mapped_column(String(64))
    channel: Mapped[Channel | None] = mapped_column(
        Enum(
            Channel,
            name="channel",
            values_callable=lambda e: [m.value for m in e],
            create_type=False,
        )
    )
    template: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8), default="en")
    status: Mapped[CommunicationStatus] = mapped_column(
        Enum(
            CommunicationStatus,
            name="communication_status",
            values_callable=lambda e: [m.value for m in e],
        ),
        default=CommunicationStatus.PENDING,
    )
    recipient: Mapped[str | None] = mapped_column(String(300))
    subject: Mapped[str | None] = mapped_column(String(200))
    body: Mapped[str | None] = mapped_column(Text)
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_id: Mapped[str | None] = mapped_column(String(100))
    file_path: Mapped[str | None] = mapped_column(String(500))
    letter: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """Letters: the statement the printed letter lays out, composed by the print batch."""
    reasons: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[dt.datetime | None]
    due_at: Mapped[dt.datetime | None]
    """When the step was due: rolling caps count the contact from here, as the schedule does."""
