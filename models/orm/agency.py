"""What the collection agency must hear of after a placement (issue 17 item 4)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, ForeignKey, Identity, String, func
from sqlalchemy.orm import Mapped, mapped_column

from models.orm.base import Base


class AgencyUpdate(Base):
    """One change of a placed account, once per reference; the dated update file is written from
    these rows (``services.agency``)."""

    __tablename__ = "agency_updates"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    reference: Mapped[str] = mapped_column(String(120), unique=True)
    change: Mapped[str] = mapped_column(String(32))
    amount_cents: Mapped[int] = mapped_column(default=0, server_default="0")
    balance_cents: Mapped[int]
    reported_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
