"""Staff users: a login name, one or more roles of the catalogue (``config/roles.yaml``)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.orm.base import Base, Timestamped, new_id


class User(Timestamped, Base):
    """A person who acts on balances. Never deleted: a disabled user keeps the name, so an id in
    the audit trail or a workflow's history always means the same person."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    roles: Mapped[list[str]] = mapped_column(JSONB, default=list)
    active: Mapped[bool] = mapped_column(default=True)
    disabled_at: Mapped[dt.datetime | None]
