"""Champion and challenger experiments: the experiment, its arms, each balance's pinned arm, and
the default policy for new balances that a promotion sets (``services.experiments``)."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Enum,
    Float,
    ForeignKey,
    Identity,
    Integer,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.orm.base import Base, new_id


class ExperimentStatus(StrEnum):
    RUNNING = "running"  # eligible new balances are assigned an arm
    STOPPED = "stopped"  # no new assignments; assigned balances keep their arm
    PROMOTED = "promoted"  # stopped, and an arm's policy became the default for new balances


class ArmStatus(StrEnum):
    ACTIVE = "active"
    STOPPED = "stopped"  # by a guard or a person: its share goes to the champion


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    """The config file's ``id``: with the account id, the input of the assignment hash."""
    config: Mapped[dict[str, Any]] = mapped_column(JSONB)
    config_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[ExperimentStatus] = mapped_column(
        Enum(
            ExperimentStatus,
            name="experiment_status",
            values_callable=lambda e: [m.value for m in e],
        ),
        default=ExperimentStatus.RUNNING,
    )
    started_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    started_by: Mapped[str] = mapped_column(String(64))
    stopped_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    stop_reason: Mapped[str | None] = mapped_column(String(300), default=None)
    promoted_arm: Mapped[str | None] = mapped_column(String(64), default=None)


class ExperimentArm(Base):
    __tablename__ = "experiment_arms"
    __table_args__ = (UniqueConstraint("experiment_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    experiment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("experiments.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)
    """Order of the arms on the unit interval of buckets: the champion first."""
    champion: Mapped[bool] = mapped_column(default=False)
    policy_name: Mapped[str] = mapped_column(String(64))
    policy_hash: Mapped[str] = mapped_column(String(64))
    share_bp: Mapped[int] = mapped_column(Integer)
    """Share of eligible balances in basis points (10000 = all)."""
    status: Mapped[ArmStatus] = mapped_column(
        Enum(
            ArmStatus, name="experiment_arm_status", values_callable=lambda e: [m.value for m in e]
        ),
        default=ArmStatus.ACTIVE,
    )
    stopped_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    stop_reason: Mapped[str | None] = mapped_column(String(300), default=None)


class ExperimentAssignment(Base):
    """A balance's arm, written in the ledger transaction that brings the balance in; pinned for
    the balance's life (one experiment per balance, never reassigned)."""

    __tablename__ = "experiment_assignments"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    experiment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("experiments.id"), index=True)
    arm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("experiment_arms.id"), index=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), unique=True)
    bucket: Mapped[float] = mapped_column(Float)
    """sha256(experiment key, account id) as a number in [0, 1): anyone can recompute it."""
    policy_hash: Mapped[str] = mapped_column(String(64))
    balance_cents: Mapped[int] = mapped_column(BigInteger)
    """The balance when it entered: the base of collection rates and paid in full."""
    assigned_at: Mapped[dt.datetime]


class DefaultPolicy(Base):
    """The policy new balances that name none get; the latest row wins over the settings'."""

    __tablename__ = "default_policies"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    policy_name: Mapped[str] = mapped_column(String(64))
    set_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    set_by: Mapped[str] = mapped_column(String(64))
    experiment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("experiments.id"), default=None
    )
