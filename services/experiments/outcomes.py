"""Outcomes per arm from the live ledger: payments, contacts sent, harms, write-offs, placements.

Everything is counted from the moment a balance entered the experiment (its assignment), never
before. A windowed figure (collected within 30/60/90 days, paid in full within 90) counts only
the balances that have been in for the whole window by ``as_of`` ("matured"): a balance that
entered last week has had no chance to pay within 90 days, and counting it as a zero would bias
every arm towards the one that entered earlier.
"""

from __future__ import annotations

import datetime as dt
import statistics
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from models.experiment import GuardMetric, Metric
from models.orm import (
    Account,
    AccountStatus,
    AuditEvent,
    Communication,
    CommunicationStatus,
    ExperimentArm,
    ExperimentAssignment,
    Payment,
)
from models.policy import Channel
from simulation.response import MICROS_PER_DOLLAR, ResponseModel

DAY = 86_400.0
WINDOWS = (30, 60, 90)
CURVE_DAYS = 90

OPT_OUT_ACTIONS = ("opted_out", "consent_revoked")
DISPUTE_REASONS = ("dispute", "no_surprises_dispute")


@dataclass
class BalanceOutcome:
    account_id: uuid.UUID
    arm: str
    entered_at: dt.datetime
    balance_cents: int
    payments: list[tuple[float, int]] = field(default_factory=list)
    """(days since entry, cents), in order."""
    contacts: int = 0
    cost_micros: int = 0
    harms: set[GuardMetric] = field(default_factory=set)

    def observed_days(self, as_of: dt.datetime) -> float:
        return max(0.0, (as_of - self.entered_at).total_seconds() / DAY)

    def collected_within(self, days: float) -> int:
        return sum(c for d, c in self.payments if d < days)

    def value(self, metric: Metric) -> float:
        """The balance's value of ``metric`` (dollars, a share, or 0/1)."""
        collected = self.collected_within(metric.window_days)
        if metric is Metric.COLLECTION_RATE_90D:
            return collected / self.balance_cents if self.balance_cents > 0 else 0.0
        if metric is Metric.PAID_IN_FULL_90D:
            return 1.0 if self.balance_cents > 0 and collected >= self.balance_cents else 0.0
        return collected / 100


@dataclass
class ArmOutcome:
    name: str
    policy: str
    champion: bool
    status: str
    stop_reason: str | None
    balances: int
    balance_cents: int
    collected_cents: int
    """Everything paid since entry, matured or not."""
    matured: dict[int, int]
    """Balances in for at least 30, 60 and 90 days."""
    collected_mean: dict[int, float]
    """Dollars per matured balance within 30, 60 and 90 days."""
    paid_in_full_90d: float | None
    median_days_to_payment: float | None
    contacts: int
    cost_cents: int
    harms: dict[str, int]
    curve: list[float]
    """Mean dollars collected per balance by day 0..90 after entry, over the balances observed
    that long (a cumulative collection curve that never counts an unobserved day as zero)."""

    @property
    def contacts_per_balance(self) -> float:
        return self.contacts / self.balances if self.balances else 0.0

    @property
    def cost_per_balance_cents(self) -> float:
        return self.cost_cents / self.balances if self.balances else 0.0

    @property
    def cost_per_dollar(self) -> float | None:
        return self.cost_cents / self.collected_cents if self.collected_cents else None

    def rate(self, harm: GuardMetric) -> float:
        return self.harms.get(harm.value, 0) / self.balances if self.balances else 0.0


def load_outcomes(
    session: Session,
    experiment_id: uuid.UUID,
    as_of: dt.datetime,
    response: ResponseModel | None = None,
) -> list[BalanceOutcome]:
    """Every assigned balance of the experiment with what the ledger holds for it by ``as_of``."""
    costs = {c: r.cost_micros for c, r in (response or ResponseModel()).channels.items()}
    found: dict[uuid.UUID, BalanceOutcome] = {}
    entered: dict[uuid.UUID, dt.datetime] = {}
    for account_id, arm, at, cents in session.execute(
        select(
            ExperimentAssignment.account_id,
            ExperimentArm.name,
            ExperimentAssignment.assigned_at,
            ExperimentAssignment.balance_cents,
        )
        .join(ExperimentArm, ExperimentArm.id == ExperimentAssignment.arm_id)
        .where(ExperimentAssignment.experiment_id == experiment_id)
    ):
        found[account_id] = BalanceOutcome(account_id, arm, at, cents)
        entered[account_id] = at
    if not found:
        return []
    mine = ExperimentAssignment.experiment_id == experiment_id
    joined = ExperimentAssignment.account_id
    for account_id, received, cents in session.execute(
        select(Payment.account_id, Payment.received_at, Payment.amount_cents)
        .join(ExperimentAssignment, joined == Payment.account_id)
        .where(
            mine,
            Payment.received_at >= ExperimentAssignment.assigned_at,
            Payment.received_at <= as_of,
        )
        .order_by(Payment.received_at)
    ):
        outcome = found[account_id]
        outcome.payments.append(((received - outcome.entered_at).total_seconds() / DAY, cents))
    for account_id, channel in session.execute(
        select(Communication.account_id, Communication.channel)
        .join(ExperimentAssignment, joined == Communication.account_id)
        .where(
            mine,
            Communication.status == CommunicationStatus.SENT,
            Communication.sent_at >= ExperimentAssignment.assigned_at,
            Communication.sent_at <= as_of,
        )
    ):
        outcome = found[account_id]
        outcome.contacts += 1
        outcome.cost_micros += costs.get(channel or Channel.LETTER, 0)
    reason = AuditEvent.detail["reason"].astext
    done = or_(
        AuditEvent.detail["outcome"].astext.is_(None), AuditEvent.detail["outcome"].astext == "done"
    )
    for account_id, action, why in session.execute(
        select(AuditEvent.account_id, AuditEvent.action, reason)
        .join(ExperimentAssignment, joined == AuditEvent.account_id)
        .where(
            mine,
            AuditEvent.at >= ExperimentAssignment.assigned_at,
            AuditEvent.at <= as_of,
            done,
            or_(
                AuditEvent.action.in_([*OPT_OUT_ACTIONS, "reply_needs_person", "hardship"]),
                and_(AuditEvent.action == "hold", reason.isnot(None)),
            ),
        )
    ):
        harm = _harm(action, why)
        if harm is not None and account_id is not None:
            found[account_id].harms.add(harm)
    for account_id, status, closed, placed in session.execute(
        select(Account.id, Account.status, Account.closed_at, Account.placed_at)
        .join(ExperimentAssignment, joined == Account.id)
        .where(mine)
    ):
        outcome = found[account_id]
        if status is AccountStatus.WRITTEN_OFF and (closed is None or closed <= as_of):
            outcome.harms.add(GuardMetric.WRITE_OFFS)
        if placed is not None and outcome.entered_at <= placed <= as_of:
            outcome.harms.add(GuardMetric.PLACEMENTS)
    return list(found.values())


def _harm(action: str, reason: str | None) -> GuardMetric | None:
    if action in OPT_OUT_ACTIONS:
        return GuardMetric.OPT_OUTS
    if action == "reply_needs_person":
        return GuardMetric.COMPLAINTS
    if action == "hardship" or (action == "hold" and reason == "financial_assistance"):
        return GuardMetric.HARDSHIP
    if action == "hold" and reason in DISPUTE_REASONS:
        return GuardMetric.DISPUTES
    return None


@dataclass(frozen=True)
class ArmInfo:
    name: str
    policy: str
    champion: bool
    status: str
    stop_reason: str | None


def summarise(
    outcomes: list[BalanceOutcome], arms: list[ArmInfo], as_of: dt.datetime
) -> list[ArmOutcome]:
    """Per-arm figures in the arms' order (the champion first)."""
    by_arm: dict[str, list[BalanceOutcome]] = defaultdict(list)
    for outcome in outcomes:
        by_arm[outcome.arm].append(outcome)
    result = []
    for arm in arms:
        rows = by_arm.get(arm.name, [])
        matured = {w: [o for o in rows if o.observed_days(as_of) >= w] for w in WINDOWS}
        means = {
            w: (sum(o.collected_within(w) for o in ms) / len(ms) / 100 if ms else 0.0)
            for w, ms in matured.items()
        }
        full = [o.value(Metric.PAID_IN_FULL_90D) for o in matured[90]]
        firsts = [o.payments[0][0] for o in rows if o.payments]
        harms: dict[str, int] = {h.value: 0 for h in GuardMetric}
        for o in rows:
            for h in o.harms:
                harms[h.value] += 1
        result.append(
            ArmOutcome(
                name=arm.name,
                policy=arm.policy,
                champion=arm.champion,
                status=arm.status,
                stop_reason=arm.stop_reason,
                balances=len(rows),
                balance_cents=sum(o.balance_cents for o in rows),
                collected_cents=sum(c for o in rows for _, c in o.payments),
                matured={w: len(ms) for w, ms in matured.items()},
                collected_mean=means,
                paid_in_full_90d=sum(full) / len(full) if full else None,
                median_days_to_payment=statistics.median(firsts) if firsts else None,
                contacts=sum(o.contacts for o in rows),
                cost_cents=round(sum(o.cost_micros for o in rows) / (MICROS_PER_DOLLAR / 100)),
                harms=harms,
                curve=_curve(rows, as_of),
            )
        )
    return result


def _curve(rows: list[BalanceOutcome], as_of: dt.datetime) -> list[float]:
    curve = []
    for day in range(CURVE_DAYS + 1):
        seen = [o for o in rows if o.observed_days(as_of) >= day]
        if not seen:
            break
        curve.append(sum(o.collected_within(day + 1) for o in seen) / len(seen) / 100)
    return curve
