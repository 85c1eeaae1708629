"""Tasks for people: approvals of firm steps, and call tasks."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import Enum, ForeignKey, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.orm.base import Base, Timestamped, new_id


class TaskKind(StrEnum):
    APPROVAL = "approval"
    CALL = "call"
    ESTATE = "estate"  # a deceased guarantor's account, for the estate queue
    REFUND = "refund"  # an account in credit past the refund period
    ADDRESS = "address"  # a letter came back: find the corrected address
    LOCATE = "locate"  # no usable channel at all: find the patient
    UNCONFIRMED = "unconfirmed"  # a send cut off mid-request: check whether it went out
    REPLY = "reply"  # a patient's text or email nobody could classify: a person reads it
    CONTENT = "content"  # a message not sent: its wording breaks a content rule (send time)


class TaskStatus(StrEnum):
    OPEN = "open"
    APPROVED = "approved"
    DENIED = "denied"
    DONE = "done"
    EXPIRED = "expired"


class StaffTask(Timestamped, Base):
    __tablename__ = "staff_tasks"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[TaskKind] = mapped_column(
        Enum(TaskKind, name="task_kind", values_callable=lambda e: [m.value for m in e])
    )
    status: Mapped[TaskStatus] = mapped_column(
        Enum(TaskStatus, name="task_status", values_callable=lambda e: [m.value for m in e]),
        default=TaskStatus.OPEN,
        index=True,
    )
    step_id: Mapped[str | None] = mapped_column(String(48))
    title: Mapped[str] = mapped_column(String(200))
    approvers: Mapped[list[str]] = mapped_column(JSONB, default=list)
    requested_by: Mapped[str] = mapped_column(String(64), default="system")
    decided_by: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(500))
    due_at: Mapped[dt.datetime | None]
    decided_at: Mapped[dt.datetime | None]
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
