"""The person responsible for paying, and how each channel reaches them."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from sqlalchemy import Enum, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.orm.base import Base, Timestamped, new_id
from models.policy import Channel


class Deliverability(StrEnum):
    OK = "ok"
    BOUNCED = "bounced"  # email
    UNDELIVERABLE = "undeliverable"  # SMS: landline, invalid or unreachable number
    RETURNED = "returned"  # letter returned by the post office


class Guarantor(Timestamped, Base):
    __tablename__ = "guarantors"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    external_ref: Mapped[str] = mapped_column(String(64), unique=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(32))
    address_line1: Mapped[str | None] = mapped_column(String(200))
    address_line2: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str | None] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(2))
    postal_code: Mapped[str | None] = mapped_column(String(10))
    time_zone: Mapped[str] = mapped_column(String(64), default="")
    language: Mapped[str] = mapped_column(String(8), default="en")
    date_of_birth: Mapped[dt.date | None] = mapped_column(default=None)
    phone_kind: Mapped[str] = mapped_column(String(8), default="")
    """mobile, home or work; empty when unknown (``models.protections.PhoneKind``)."""

    channels: Mapped[list[ChannelPreference]] = relationship(
        back_populates="guarantor", lazy="raise", cascade="all, delete-orphan"
    )


class ChannelPreference(Base):
    """Consent and deliverability of one channel of one guarantor."""

    __tablename__ = "channel_preferences"

    guarantor_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("guarantors.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[Channel] = mapped_column(
        Enum(Channel, name="channel", values_callable=lambda e: [m.value for m in e]),
        primary_key=True,
    )
    consent: Mapped[bool] = mapped_column(default=False)
    opted_out_at: Mapped[dt.datetime | None]
    """The patient opted out (STOP, unsubscribe, revocation): only fresh consent restores it."""
    restricted_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    """Ruled out by a standing request of the patient (mail only, no calls at work, ...), apart
    from any opt-out: lifting the request clears this and nothing else."""
    deliverability: Mapped[Deliverability] = mapped_column(
        Enum(Deliverability, name="deliverability", values_callable=lambda e: [m.value for m in e]),
        default=Deliverability.OK,
    )
    updated_at: Mapped[dt.datetime | None]

    guarantor: Mapped[Guarantor] = relationship(back_populates="channels", lazy="raise")
