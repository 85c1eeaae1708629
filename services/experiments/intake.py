"""The intake hook: an eligible balance entering the ladder gets its arm's policy.

``starter.Intake`` calls :func:`policy_for_entry` inside the ledger transaction that posts the
balance, so the assignment row is committed with the charge lines (or not at all). A balance is
assigned once, when it enters; a charge joining a running balance keeps the arm it has; a balance
that was running before the experiment started is never assigned.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.experiment import ExperimentConfig
from models.imports import BalanceRow
from models.orm import (
    Account,
    AccountStatus,
    ArmStatus,
    AuditEvent,
    DefaultPolicy,
    Experiment,
    ExperimentArm,
    ExperimentAssignment,
    ExperimentStatus,
)
from models.orm import repositories as repo
from services.experiments.core import ArmSlot, Candidate, bucket, ineligible_because, pick_arm


@dataclass(frozen=True)
class LiveArm:
    id: uuid.UUID
    name: str
    policy_name: str
    share_bp: int
    active: bool
    champion: bool


@dataclass(frozen=True)
class LiveExperiment:
    id: uuid.UUID
    key: str
    config: ExperimentConfig
    arms: list[LiveArm]

    def open_on(self, day: dt.date) -> bool:
        ends = self.config.ends_on
        return self.config.starts_on <= day and (ends is None or day <= ends)

    def arm_for(self, point: float) -> LiveArm:
        slots = [ArmSlot(a.name, a.share_bp, a.active) for a in self.arms]
        name = pick_arm(slots, point)
        return next(a for a in self.arms if a.name == name)


@dataclass
class Entry:
    policy_name: str
    assignment: ExperimentAssignment | None = None
    """Set when the balance was assigned just now."""


@dataclass
class Routing:
    """What intake needs to know, read once per import or request."""

    default_policy: str | None = None
    experiments: list[LiveExperiment] = field(default_factory=list)


def stored_default_policy(session: Session) -> str | None:
    """The default policy for new balances a promotion stored, if any (the latest)."""
    return session.scalars(
        select(DefaultPolicy.policy_name).order_by(DefaultPolicy.id.desc()).limit(1)
    ).first()


def load_routing(session: Session) -> Routing:
    running = session.scalars(
        select(Experiment).where(Experiment.status == ExperimentStatus.RUNNING)
    ).all()
    live = []
    for experiment in running:
        arms = session.scalars(
            select(ExperimentArm)
            .where(ExperimentArm.experiment_id == experiment.id)
            .order_by(ExperimentArm.position)
        ).all()
        live.append(
            LiveExperiment(
                experiment.id,
                experiment.key,
                ExperimentConfig.model_validate(experiment.config),
                [
                    LiveArm(
                        a.id,
                        a.name,
                        a.policy_name,
                        a.share_bp,
                        a.status is ArmStatus.ACTIVE,
                        a.champion,
                    )
                    for a in arms
                ],
            )
        )
    return Routing(stored_default_policy(session), live)


def policy_for_entry(
    session: Session,
    routing: Routing,
    account: Account,
    rows: list[BalanceRow],
    policy_name: str,
    *,
    running: bool,
    new: bool = False,
    now: dt.datetime | None = None,
) -> Entry | None:
    """The policy an arm gives this balance, or None to keep ``policy_name``.

    A new assignment is added to the session (with an audit row); the caller fills in its
    ``policy_hash`` once it has loaded the arm's policy.

    Args:
        account: the account (a new one already has its id).
        rows: the rows being posted (their balance, visits, state and language decide eligibility).
        policy_name: the policy the balance gets without any experiment.
        running: whether a ladder already follows the balance (the rows join it).
        new: the account was created by these rows (it cannot have an arm yet).
    """
    if not routing.experiments:
        return None
    pinned = (
        None
        if new
        else session.execute(
            select(ExperimentAssignment, ExperimentArm, Experiment.status)
            .join(ExperimentArm, ExperimentArm.id == ExperimentAssignment.arm_id)
            .join(Experiment, Experiment.id == ExperimentAssignment.experiment_id)
            .where(ExperimentAssignment.account_id == account.id)
        ).first()
    )
    if pinned is not None:
        kept = pinned[1]
        if running:
            # The rows join the ladder the arm started (unless a migration moved it since).
            return Entry(kept.policy_name) if account.policy_name == kept.policy_name else None
        if pinned[2] is not ExperimentStatus.RUNNING:
            return None  # a new ladder after the experiment ended: the usual policy
        if kept.status is ArmStatus.ACTIVE:
            return Entry(kept.policy_name)
        champion = session.scalars(
            select(ExperimentArm.policy_name).where(
                ExperimentArm.experiment_id == kept.experiment_id, ExperimentArm.champion
            )
        ).one()
        return Entry(champion)
    if running:
        return None  # a balance running before the experiment is never reassigned mid-ladder
    now = now or dt.datetime.now(dt.UTC)
    first = rows[0]
    candidate = Candidate(
        policy=policy_name,
        balance_cents=sum(max(r.balance_cents, 0) for r in rows),
        oldest_service_date=min(r.service_date for r in rows),
        state=first.state,
        language=first.language,
        today=now.date(),
    )
    for experiment in routing.experiments:
        if not experiment.open_on(candidate.today):
            continue
        policies = experiment.config.eligible_policies
        if ineligible_because(experiment.config.eligibility, policies, candidate) is not None:
            continue
        if repo.BATCH_ACCOUNTS not in session.info:
            session.flush()  # the account first: the rows below refer to it by id alone
        point = bucket(experiment.key, str(account.id))
        arm = experiment.arm_for(point)
        assignment = ExperimentAssignment(
            experiment_id=experiment.id,
            arm_id=arm.id,
            account_id=account.id,
            bucket=point,
            policy_hash="",
            balance_cents=candidate.balance_cents,
            assigned_at=now,
        )
        repo.add_dependent(session, assignment)
        repo.add_dependent(
            session,
            AuditEvent(
                actor="import",
                action="experiment_assigned",
                account_id=account.id,
                detail={
                    "experiment": experiment.key,
                    "arm": arm.name,
                    "bucket": point,
                    "policy": arm.policy_name,
                },
            ),
        )
        return Entry(arm.policy_name, assignment)
    return None


def is_running(account: Account) -> bool:
    return account.status is AccountStatus.OPEN and account.balance_cents > 0
