"""Staff notes and reported legal facts: free text and contact details kept out of workflows.

A hold note, a denial or write-off reason lives here; the workflow's update carries only the
note's id, so no free text reaches Temporal history. Legal facts (a bankruptcy's filing date and
chapter, an attorney's contact) are the ledger side of the ``life_event`` signal.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.orm.base import Base, new_id


class StaffNote(Base):
    __tablename__ = "staff_notes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    task_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(32), doc="hold, deny, approve, write_off, ...")
    body: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class LegalFact(Base):
    __tablename__ = "legal_facts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32), doc="bankruptcy, deceased, attorney, ...")
    reference: Mapped[str] = mapped_column(String(128), unique=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    reported_by: Mapped[str] = mapped_column(String(64))
    reported_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
