"""The signal outbox (ledger facts on their way to workflows) and reconciliation drift records."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Identity, Index, String, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.orm.base import Base


class SignalOutbox(Base):
    """A workflow message committed in the same transaction as the ledger fact it carries.

    Delivered in ``id`` order per account, then marked; the workflow deduplicates by the fact's
    reference, so a delivery repeated after a crash changes nothing.
    """

    __tablename__ = "signal_outbox"
    __table_args__ = (
        Index(
            "ix_signal_outbox_pending",
            "account_id",
            "id",
            postgresql_where=text("delivered_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    name: Mapped[str] = mapped_column(String(48))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    start_input: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    delivered_at: Mapped[dt.datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(String(300))


class DriftRecord(Base):
    """What a reconciliation found between the ledger and a workflow, and whether it was fixed."""

    __tablename__ = "drift_records"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    account_id: Mapped[uuid.UUID | None]
    workflow_id: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB)
    repaired: Mapped[bool]
    found_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
