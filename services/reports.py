"""Reports from the live ledger, shared by the console and ``dunning reports`` (and ``report``).

Every report reads the ledger tables (``models.orm``) in one SQL statement (two for the cost to
collect: what was sent, and what came in) and is returned as a :class:`Report`: a header, rows
of text, a chart's figures and the report's definition, so that the console page, its CSV, the
CLI table and the CLI CSV show the same figures. :func:`to_csv` writes any of them as CSV safe to
open in a spreadsheet (a cell starting with = + - @, a tab or a carriage return is prefixed with
``'`` so that it is never run as a formula).

Definitions (months are calendar months in UTC; "owed" is what the ledger says the patient owes:
charge lines net of insurance, adjustments and No Surprises Act protected amounts, minus
payments):

- **aging**: open accounts with a balance above zero, by days since the account opened (0-30,
  31-60, 61-90, 91-120, 120+): how many and how much.
- **days-in-ar**: A/R / average daily charges. A/R is the open balances owed now; the average
  daily charge is the patient responsibility (charges - insurance paid - insurance adjustment -
  NSA protected) of the visits whose service date falls in the last ``period_days`` (90), divided
  by ``period_days``.
- **collection-rate**: per month, collected / charged. Charged: patient responsibility of the
  visits of that month (by service date); collected: payments received that month plus what
  patients paid at those visits (the line's ``patient_paid``). A cash-basis rate (a payment counts
  in the month it came in): chosen over "/ opening balance" because the ledger keeps no balance
  history, and the opening balance of a past month cannot be read from it exactly.
- **over-90**: the share of A/R (amount and accounts) in accounts opened more than 90 days ago.
- **outcomes-by-step**: per policy and step, the accounts a message of that step was sent to
  (its first send), and of those the share that paid within 14 days after it, with the amount
  they paid in those 14 days. Contacts whose 14 days have not ended are counted apart ("window
  open") and left out of the share. A payment may follow several steps: this is not attribution.
- **cost-by-channel**: messages sent in the last ``period_days`` per channel times the channel's
  cost per message (the simulation's response model, ``simulation.response``: letter $0.75,
  email $0.001, SMS $0.0079, call $2.50; a response-model YAML file overrides them), and the
  payments of the period attributed to the channel of the last message sent to the account in
  the 14 days before the payment (last touch); cost per dollar collected.
- **opt-outs**: channels opted out of (STOP, unsubscribe, revocation) per month and channel, and
  what those guarantors owe now on open accounts.
- **disputes**: holds for a dispute or a No Surprises Act dispute per month (from the audit
  trail), and what was owed on the account when it was disputed.
- **write-offs**: balances that ended written off or settled, per month of their end, and the
  amount written off (owed by the ledger minus the balance the account ended with).
- **placements**: accounts placed with an agency per month, and what was owed when placed.

Every report takes an optional policy name: only accounts on that policy count.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    cast,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy.orm import Session
from sqlalchemy.types import Date

from models.actions import WORKFLOW_WRITE_OFFS
from models.orm import (
    Account,
    AccountStatus,
    Adjustment,
    AuditEvent,
    ChannelPreference,
    ChargeLine,
    Communication,
    CommunicationStatus,
    Payment,
)
from models.orm.repositories import AGING_BUCKETS
from models.policy import Channel
from services import audit
from services.audit import Outcome
from services.identity import Actor
from simulation.response import ResponseModel

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
REPORTS = (
    "aging",
    "days-in-ar",
    "collection-rate",
    "over-90",
    "outcomes-by-step",
    "cost-by-channel",
    "opt-outs",
    "disputes",
    "write-offs",
    "placements",
)
PAID_WITHIN = dt.timedelta(days=14)
"""Outcomes by step: a payment this soon after a step's message counts for that step; the cost
to collect attributes a payment to the last message this soon before it."""
DISPUTE_REASONS = ("dispute", "no_surprises_dispute")
MICROS_PER_CENT = 10_000
S = TypeVar("S", bound="Select[*tuple[Any, ...]]")


class UnknownReport(ValueError):
    """A report name not in :data:`REPORTS`."""


@dataclass(frozen=True)
class Options:
    """What a report covers: the instant it is read at, how far back, and which policy."""

    as_of: dt.datetime
    months: int = 6
    period_days: int = 90
    policy: str | None = None
    costs: Mapping[Channel, int] | None = None
    """Cost per message in millionths of a dollar; None: the simulation's defaults."""

    def __post_init__(self) -> None:
        if not 1 <= self.months <= 120:
            raise ValueError("months: between 1 and 120")
        if not 1 <= self.period_days <= 3660:
            raise ValueError("period_days: between 1 and 3660")


@dataclass(frozen=True)
class Chart:
    """The figures of a report's bar chart (drawn as SVG by the console)."""

    title: str
    labels: list[str]
    values: list[int]
    shown: list[str]


@dataclass(frozen=True)
class Report:
    name: str
    title: str
    definition: str
    rows: list[list[str]]
    """A header, then one row per line of the report (text, as shown and exported)."""
    chart: Chart | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    """The headline numbers, unformatted (tests and callers read these, not the text)."""


# -- aging ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgingBucket:
    bucket: str
    accounts: int
    cents: int


def _policy(stmt: S, policy: str | None) -> S:
    """``stmt`` limited to accounts on ``policy`` (``Account`` is in its FROM), or as it is."""
    return stmt if policy is None else stmt.where(Account.policy_name == policy)


def aging(session: Session, as_of: dt.datetime, policy: str | None = None) -> list[AgingBucket]:
    """Open balances owed (above zero) by days since the account opened: how many, how much."""
    age = func.date_part("day", as_of - Account.opened_at)
    counts = {name: [0, 0] for name, _, _ in AGING_BUCKETS}
    stmt = select(age, Account.balance_cents).where(
        Account.status == AccountStatus.OPEN, Account.balance_cents > 0
    )
    for days, cents in session.execute(_policy(stmt, policy)).all():
        name = bucket_of(int(days))
        counts[name][0] += 1
        counts[name][1] += cents
    return [AgingBucket(name, n, cents) for name, (n, cents) in counts.items()]


def bucket_of(days: int) -> str:
    """The aging bucket of a balance opened ``days`` ago (the same for one account and for all)."""
    for name, low, high in AGING_BUCKETS:
        if days >= low and (high is None or days <= high):
            return name
    return AGING_BUCKETS[0][0]  # opened in the future (a clock set wrong): the youngest


def aging_rows(buckets: list[AgingBucket]) -> list[list[str]]:
    """The aging report as table rows: a header, a row per bucket and a total."""
    rows = [["days", "accounts", "amount"]]
    rows += [[b.bucket, str(b.accounts), dollars(b.cents)] for b in buckets]
    rows.append(
        ["total", str(sum(b.accounts for b in buckets)), dollars(sum(b.cents for b in buckets))]
    )
    return rows


def _aging_report(session: Session, o: Options) -> Report:
    buckets = aging(session, o.as_of, o.policy)
    return Report(
        "aging",
        "Aging of open balances",
        "Open accounts with a balance above zero, by days since the account opened.",
        aging_rows(buckets),
        Chart(
            "Open balances by age (days since opened), amount owed",
            [b.bucket for b in buckets],
            [b.cents for b in buckets],
            [f"${dollars(b.cents)} ({b.accounts})" for b in buckets],
        ),
        {b.bucket: (b.accounts, b.cents) for b in buckets},
    )


# -- days in A/R, share over 90 days ---------------------------------------------------------


def _responsibility() -> ColumnElement[int]:
    """What a visit left the patient to pay (before any patient payment)."""
    return (
        ChargeLine.charges_cents
        - ChargeLine.insurance_paid_cents
        - ChargeLine.insurance_adjustment_cents
        - ChargeLine.nsa_protected_cents
    )


def _open_ar(policy: str | None) -> Select[Any]:
    stmt = select(func.coalesce(func.sum(Account.balance_cents), 0)).where(
        Account.status == AccountStatus.OPEN, Account.balance_cents > 0
    )
    return _policy(stmt, policy)


def _days_in_ar(session: Session, o: Options) -> Report:
    last = o.as_of.astimezone(dt.UTC).date()
    first = last - dt.timedelta(days=o.period_days - 1)
    charged = _policy(
        select(func.coalesce(func.sum(_responsibility()), 0))
        .join(Account, Account.id == ChargeLine.account_id)
        .where(ChargeLine.service_date.between(first, last)),
        o.policy,
    )
    ar, charged_cents = session.execute(
        select(_open_ar(o.policy).scalar_subquery(), charged.scalar_subquery())
    ).one()
    ar, charged_cents = int(ar), int(charged_cents)
    daily = charged_cents / o.period_days
    days = round(ar / daily, 1) if daily > 0 else None
    rows = [
        ["figure", "value"],
        ["A/R (open balances owed)", dollars(ar)],
        [f"charged, {first} to {last}", dollars(charged_cents)],
        ["days in the period", str(o.period_days)],
        ["average daily charges", dollars(round(daily))],
        ["days in A/R", "n/a (nothing charged)" if days is None else f"{days:.1f}"],
    ]
    return Report(
        "days-in-ar",
        "Days in A/R",
        f"A/R / average daily charges over the last {o.period_days} days (patient "
        "responsibility of the visits of the period, by service date).",
        rows,
        Chart(
            "A/R against the period's charges",
            ["A/R", f"charged in {o.period_days} days"],
            [max(ar, 0), max(charged_cents, 0)],
            [f"${dollars(ar)}", f"${dollars(charged_cents)}"],
        ),
        {"ar_cents": ar, "charged_cents": charged_cents, "days": days},
    )


def _over_90(session: Session, o: Options) -> Report:
    buckets = aging(session, o.as_of, o.policy)
    old = [b for b in buckets if _low(b.bucket) > 90]
    over_n, over_c = sum(b.accounts for b in old), sum(b.cents for b in old)
    all_n, all_c = sum(b.accounts for b in buckets), sum(b.cents for b in buckets)
    share = over_c / all_c if all_c else None
    rows = [
        ["age", "accounts", "amount", "share of A/R"],
        ["0-90 days", str(all_n - over_n), dollars(all_c - over_c), _pct(all_c - over_c, all_c)],
        ["over 90 days", str(over_n), dollars(over_c), _pct(over_c, all_c)],
        ["total", str(all_n), dollars(all_c), _pct(all_c, all_c)],
    ]
    return Report(
        "over-90",
        "Share of A/R over 90 days",
        "Open balances owed in accounts opened more than 90 days ago, as a share of all A/R.",
        rows,
        Chart(
            "A/R by age: up to 90 days and over",
            ["0-90 days", "over 90 days"],
            [all_c - over_c, over_c],
            [f"${dollars(all_c - over_c)}", f"${dollars(over_c)} ({_pct(over_c, all_c)})"],
        ),
        {"over_cents": over_c, "over_accounts": over_n, "ar_cents": all_c, "share": share},
    )


def _low(bucket: str) -> int:
    return next(low for name, low, _ in AGING_BUCKETS if name == bucket)


# -- months --------------------------------------------------------------------------------------


def months_of(o: Options) -> list[dt.date]:
    """The first days of the report's months, oldest first, ending with the month of ``as_of``."""
    day = o.as_of.astimezone(dt.UTC).date().replace(day=1)
    out = [day]
    for _ in range(o.months - 1):
        day = (day - dt.timedelta(days=1)).replace(day=1)
        out.append(day)
    return out[::-1]


def _month(column: Any) -> ColumnElement[Any]:
    """The first day of ``column``'s month in UTC (a date)."""
    return cast(func.date_trunc("month", func.timezone("UTC", column)), Date)


def _in_months(column: Any, o: Options) -> ColumnElement[bool]:
    start = dt.datetime.combine(months_of(o)[0], dt.time(), dt.UTC)
    return and_(column >= start, column <= o.as_of)


Monthly = dict[tuple[dt.date, str], tuple[int, int]]


def _monthly(session: Session, stmt: Select[Any]) -> Monthly:
    """(month, kind) -> (count, cents) of a statement selecting month, kind, count, cents."""
    return {
        (month, getattr(kind, "value", kind)): (int(n), int(cents or 0))
        for month, kind, n, cents in session.execute(stmt).all()
    }


def _by_month_and_kind(session: Session, rows: Any) -> Monthly:
    """:func:`_monthly` of a subquery's ``month``, ``kind`` and ``cents``: count and sum each."""
    return _monthly(
        session,
        select(rows.c.month, rows.c.kind, func.count(), func.sum(rows.c.cents)).group_by(
            rows.c.month, rows.c.kind
        ),
    )


def _ledger_owed_at(at: Any | None, *, before_write_offs: bool = False) -> ColumnElement[int]:
    """What the ledger said the account (``Account``, correlated) owed at ``at`` (None: now);
    ``before_write_offs``: leaving out what financial assistance and approved write-offs took."""
    lines = select(func.coalesce(func.sum(_responsibility() - ChargeLine.patient_paid_cents), 0))
    lines = lines.where(ChargeLine.account_id == Account.id)
    adjusted = select(func.coalesce(func.sum(Adjustment.amount_cents), 0)).where(
        Adjustment.account_id == Account.id
    )
    if before_write_offs:
        adjusted = adjusted.where(Adjustment.kind.not_in(list(WORKFLOW_WRITE_OFFS)))
    paid = select(func.coalesce(func.sum(Payment.amount_cents), 0)).where(
        Payment.account_id == Account.id
    )
    if at is not None:
        lines = lines.where(ChargeLine.created_at <= at)
        adjusted = adjusted.where(Adjustment.created_at <= at)
        paid = paid.where(Payment.received_at <= at)
    return lines.scalar_subquery() + adjusted.scalar_subquery() - paid.scalar_subquery()


def _monthly_report(
    name: str,
    title: str,
    definition: str,
    o: Options,
    data: Monthly,
    kinds: list[tuple[str, str]],
    *,
    amounts: bool = True,
    amount_label: str = "amount",
) -> Report:
    """Rows of a month per line, a count (and an amount) per kind, a total; a chart of totals."""
    header = ["month"]
    for _, label in kinds:
        header += [label] + ([f"{label} {amount_label}"] if amounts and len(kinds) > 1 else [])
    header += ["total", f"total {amount_label}"] if len(kinds) > 1 else [amount_label]
    if not amounts and len(kinds) > 1:
        header = ["month", *(label for _, label in kinds), "total", amount_label]
    rows = [header]
    totals_n: list[int] = []
    totals_c: list[int] = []
    for month in months_of(o):
        row = [month.strftime("%Y-%m")]
        n_all = c_all = 0
        for kind, _ in kinds:
            n, c = data.get((month, kind), (0, 0))
            n_all, c_all = n_all + n, c_all + c
            row.append(str(n))
            if amounts and len(kinds) > 1:
                row.append(dollars(c))
        row += [str(n_all), dollars(c_all)] if len(kinds) > 1 else [dollars(c_all)]
        rows.append(row)
        totals_n.append(n_all)
        totals_c.append(c_all)
    labels = [m.strftime("%Y-%m") for m in months_of(o)]
    chart = Chart(
        f"{title} per month: count",
        labels,
        totals_n,
        [f"{n} (${dollars(c)})" for n, c in zip(totals_n, totals_c, strict=True)],
    )
    figures = {
        "by_month": {
            label: {kind: data.get((month, kind), (0, 0)) for kind, _ in kinds}
            for label, month in zip(labels, months_of(o), strict=True)
        },
        "count": sum(totals_n),
        "cents": sum(totals_c),
    }
    return Report(name, title, definition, rows, chart, figures)


# -- collection rate -----------------------------------------------------------------------------


def _collection_rate(session: Session, o: Options) -> Report:
    first = months_of(o)[0]
    last = o.as_of.astimezone(dt.UTC).date()
    charged = _policy(
        select(
            cast(func.date_trunc("month", ChargeLine.service_date), Date).label("month"),
            literal("charged").label("kind"),
            _responsibility().label("cents"),
        )
        .join(Account, Account.id == ChargeLine.account_id)
        .where(ChargeLine.service_date.between(first, last)),
        o.policy,
    )
    at_visit = _policy(
        select(
            cast(func.date_trunc("month", ChargeLine.service_date), Date).label("month"),
            literal("collected").label("kind"),
            ChargeLine.patient_paid_cents.label("cents"),
        )
        .join(Account, Account.id == ChargeLine.account_id)
        .where(ChargeLine.service_date.between(first, last)),
        o.policy,
    )
    paid = _policy(
        select(
            _month(Payment.received_at).label("month"),
            literal("collected").label("kind"),
            Payment.amount_cents.label("cents"),
        )
        .join(Account, Account.id == Payment.account_id)
        .where(_in_months(Payment.received_at, o)),
        o.policy,
    )
    both = union_all(charged, at_visit, paid).subquery()
    data = _by_month_and_kind(session, both)
    rows = [["month", "charged", "collected", "collection rate"]]
    labels, values, shown = [], [], []
    by_month: dict[str, tuple[int, int, float | None]] = {}
    for month in months_of(o):
        charged_c = data.get((month, "charged"), (0, 0))[1]
        collected_c = data.get((month, "collected"), (0, 0))[1]
        rate = collected_c / charged_c if charged_c > 0 else None
        label = month.strftime("%Y-%m")
        rows.append([label, dollars(charged_c), dollars(collected_c), _pct(collected_c, charged_c)])
        labels.append(label)
        values.append(round(rate * 10_000) if rate is not None else 0)
        shown.append(_pct(collected_c, charged_c))
        by_month[label] = (charged_c, collected_c, rate)
    return Report(
        "collection-rate",
        "Collection rate by month",
        "Collected / charged per month: charged is the patient responsibility of the month's "
        "visits (by service date); collected is the payments received that month plus what was "
        "paid at those visits. Cash basis: a payment counts in the month it came in.",
        rows,
        Chart("Collection rate per month (collected / charged)", labels, values, shown),
        {"by_month": by_month},
    )


# -- outcomes by step ----------------------------------------------------------------------------


def _outcomes_by_step(session: Session, o: Options) -> Report:
    first = _policy(
        select(
            Communication.account_id.label("account_id"),
            Account.policy_name.label("policy"),
            Communication.step_id.label("step"),
            func.min(Communication.sent_at).label("sent_at"),
            func.min(func.date_part("epoch", Communication.sent_at - Account.opened_at)).label(
                "offset"
            ),
        )
        .join(Account, Account.id == Communication.account_id)
        .where(
            Communication.status == CommunicationStatus.SENT,
            Communication.sent_at.is_not(None),
            Communication.sent_at <= o.as_of,
        )
        .group_by(Communication.account_id, Account.policy_name, Communication.step_id),
        o.policy,
    ).subquery()
    ended = first.c.sent_at <= o.as_of - PAID_WITHIN
    paid = (
        select(func.coalesce(func.sum(Payment.amount_cents), 0))
        .where(
            Payment.account_id == first.c.account_id,
            Payment.received_at > first.c.sent_at,
            Payment.received_at <= first.c.sent_at + PAID_WITHIN,
        )
        .scalar_subquery()
    )
    per = select(first, ended.label("ended"), paid.label("paid")).subquery()
    stmt = (
        select(
            per.c.policy,
            per.c.step,
            func.count().filter(per.c.ended),
            func.count().filter(per.c.ended, per.c.paid > 0),
            func.coalesce(func.sum(per.c.paid).filter(per.c.ended), 0),
            func.count().filter(~per.c.ended),
        )
        .group_by(per.c.policy, per.c.step)
        .order_by(per.c.policy, func.avg(per.c.offset), per.c.step)
    )
    rows = [
        [
            "policy",
            "step",
            "accounts contacted",
            "paid within 14 days",
            "share",
            "amount paid",
            "window open",
        ]
    ]
    labels, values, shown = [], [], []
    figures: dict[str, Any] = {}
    for policy, step, contacted, payers, cents, pending in session.execute(stmt).all():
        rows.append(
            [
                policy,
                step,
                str(contacted),
                str(payers),
                _pct(payers, contacted),
                dollars(int(cents)),
                str(pending),
            ]
        )
        labels.append(step if o.policy else f"{policy}: {step}")
        values.append(round(payers * 10_000 / contacted) if contacted else 0)
        shown.append(_pct(payers, contacted))
        figures[f"{policy}/{step}"] = (int(contacted), int(payers), int(cents), int(pending))
    return Report(
        "outcomes-by-step",
        "Outcomes by step",
        "Per policy step: accounts a message of the step was sent to (first send), and the "
        "share that paid within 14 days after it, with the amount paid then. Contacts of the "
        "last 14 days are counted as 'window open', outside the share. A payment may follow "
        "several steps: this is not attribution.",
        rows,
        Chart("Share paid within 14 days after each step", labels, values, shown),
        figures,
    )


# -- cost to collect -----------------------------------------------------------------------------


def channel_costs(response_model: Path | None = None) -> dict[Channel, int]:
    """Cost per message in millionths of a dollar, from the simulation's response model (its
    defaults, or a response-model YAML file such as ``dunning simulate --responses`` reads)."""
    model = ResponseModel.load(response_model)
    return {channel: r.cost_micros for channel, r in model.channels.items()}


def _cost_by_channel(session: Session, o: Options) -> Report:
    costs = dict(o.costs) if o.costs is not None else channel_costs()
    since = o.as_of - dt.timedelta(days=o.period_days)
    sent = _policy(
        select(Communication.channel, func.count())
        .join(Account, Account.id == Communication.account_id)
        .where(
            Communication.status == CommunicationStatus.SENT,
            Communication.channel.is_not(None),
            Communication.sent_at > since,
            Communication.sent_at <= o.as_of,
        )
        .group_by(Communication.channel),
        o.policy,
    )
    counts = {Channel(c): int(n) for c, n in session.execute(sent).all() if c is not None}
    touch = (
        select(Communication.channel)
        .where(
            Communication.account_id == Payment.account_id,
            Communication.status == CommunicationStatus.SENT,
            Communication.channel.is_not(None),
            Communication.sent_at <= Payment.received_at,
            Communication.sent_at > Payment.received_at - PAID_WITHIN,
        )
        .order_by(Communication.sent_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    came = _policy(
        select(touch.label("channel"), Payment.amount_cents)
        .join(Account, Account.id == Payment.account_id)
        .where(Payment.received_at > since, Payment.received_at <= o.as_of),
        o.policy,
    ).subquery()
    collected = {
        (Channel(c) if c is not None else None): int(cents)
        for c, cents in session.execute(
            select(came.c.channel, func.sum(came.c.amount_cents)).group_by(came.c.channel)
        ).all()
    }
    rows = [
        [
            "channel",
            "messages sent",
            "cost per message",
            "cost",
            "collected after (last touch)",
            "cost per $ collected",
        ]
    ]
    labels, values, shown = [], [], []
    figures: dict[str, Any] = {}
    total_micros = 0
    for channel in Channel:
        n = counts.get(channel, 0)
        micros = n * costs.get(channel, 0)
        total_micros += micros
        got = collected.get(channel, 0)
        rows.append(
            [
                channel.value,
                str(n),
                _micros(costs.get(channel, 0)),
                _micros(micros),
                dollars(got),
                _per_dollar(micros, got),
            ]
        )
        labels.append(channel.value)
        values.append(micros)
        shown.append(f"${_micros(micros)}")
        figures[channel.value] = (n, micros, got)
    unattributed = collected.get(None, 0)
    all_in = sum(collected.values())
    rows.append(["(no message in the 14 days before)", "", "", "", dollars(unattributed), ""])
    rows.append(
        [
            "total",
            str(sum(counts.values())),
            "",
            _micros(total_micros),
            dollars(all_in),
            _per_dollar(total_micros, all_in),
        ]
    )
    figures["unattributed"] = unattributed
    figures["total"] = (sum(counts.values()), total_micros, all_in)
    return Report(
        "cost-by-channel",
        "Cost to collect by channel",
        f"Messages sent in the last {o.period_days} days times each channel's cost per message "
        "(the simulation's response model); payments of the period attributed to the channel "
        "of the last message sent in the 14 days before them.",
        rows,
        Chart("Cost of messages sent, per channel", labels, values, shown),
        figures,
    )


def _micros(micros: int) -> str:
    """Dollars to a tenth of a cent ($0.0079 a text shows as 0.008): costs are below a cent."""
    dollars_ = micros / 1_000_000
    return f"{dollars_:.4f}" if 0 < micros < MICROS_PER_CENT else f"{dollars_:.2f}"


def _per_dollar(micros: int, cents: int) -> str:
    return f"{micros / 1_000_000 / (cents / 100):.4f}" if cents > 0 else "n/a"


# -- opt-outs, disputes, write-offs, placements -----------------------------------------------


def _opt_outs(session: Session, o: Options) -> Report:
    owned = select(Account.id).where(Account.guarantor_id == ChannelPreference.guarantor_id)
    owed = select(func.coalesce(func.sum(Account.balance_cents), 0)).where(
        Account.guarantor_id == ChannelPreference.guarantor_id,
        Account.status == AccountStatus.OPEN,
        Account.balance_cents > 0,
    )
    if o.policy is not None:
        owned = owned.where(Account.policy_name == o.policy)
        owed = owed.where(Account.policy_name == o.policy)
    inner = (
        select(
            _month(ChannelPreference.opted_out_at).label("month"),
            ChannelPreference.channel.label("kind"),
            owed.scalar_subquery().label("cents"),
        )
        .where(_in_months(ChannelPreference.opted_out_at, o), owned.exists())
        .subquery()
    )
    data = _by_month_and_kind(session, inner)
    return _monthly_report(
        "opt-outs",
        "Opt-outs",
        "Channels opted out of (STOP, unsubscribe, revocation of consent) per month and "
        "channel, and what those guarantors owe now on open accounts.",
        o,
        data,
        [(c.value, c.value) for c in Channel],
        amounts=False,
        amount_label="owed now",
    )


def _disputes(session: Session, o: Options) -> Report:
    reason = AuditEvent.detail["reason"].astext
    inner = _policy(
        select(
            _month(AuditEvent.at).label("month"),
            reason.label("kind"),
            _ledger_owed_at(AuditEvent.at).label("cents"),
        )
        .join(Account, Account.id == AuditEvent.account_id)
        .where(
            AuditEvent.action == "hold",
            AuditEvent.detail["outcome"].astext == "done",
            reason.in_(DISPUTE_REASONS),
            _in_months(AuditEvent.at, o),
        ),
        o.policy,
    ).subquery()
    data = _by_month_and_kind(session, inner)
    return _monthly_report(
        "disputes",
        "Disputes",
        "Holds for a dispute or a No Surprises Act dispute per month (from the audit trail), "
        "and what the ledger said was owed on the account when it was disputed.",
        o,
        data,
        [("dispute", "disputes"), ("no_surprises_dispute", "NSA disputes")],
    )


def _write_offs(session: Session, o: Options) -> Report:
    inner = _policy(
        select(
            _month(Account.closed_at).label("month"),
            Account.status.label("kind"),
            (_ledger_owed_at(None, before_write_offs=True) - Account.balance_cents).label("cents"),
        ).where(
            Account.status.in_([AccountStatus.WRITTEN_OFF, AccountStatus.SETTLED]),
            _in_months(Account.closed_at, o),
        ),
        o.policy,
    ).subquery()
    data = _by_month_and_kind(session, inner)
    return _monthly_report(
        "write-offs",
        "Write-offs",
        "Balances that ended written off or settled, per month of their end, and the amount "
        "written off: what the ledger says was owed minus the balance the account ended with.",
        o,
        data,
        [
            (AccountStatus.WRITTEN_OFF.value, "written off"),
            (AccountStatus.SETTLED.value, "settled"),
        ],
        amount_label="written off",
    )


def _placements(session: Session, o: Options) -> Report:
    inner = _policy(
        select(
            _month(Account.placed_at).label("month"),
            literal("placed").label("kind"),
            _ledger_owed_at(Account.placed_at).label("cents"),
        ).where(Account.placed_at.is_not(None), _in_months(Account.placed_at, o)),
        o.policy,
    ).subquery()
    data = _by_month_and_kind(session, inner)
    return _monthly_report(
        "placements",
        "Agency placements",
        "Accounts placed with a collection agency per month, and what the ledger said was owed "
        "when each was placed.",
        o,
        data,
        [("placed", "placed")],
        amount_label="amount placed",
    )


# -- the catalogue -------------------------------------------------------------------------------

BUILDERS: dict[str, Callable[[Session, Options], Report]] = {
    "aging": _aging_report,
    "days-in-ar": _days_in_ar,
    "collection-rate": _collection_rate,
    "over-90": _over_90,
    "outcomes-by-step": _outcomes_by_step,
    "cost-by-channel": _cost_by_channel,
    "opt-outs": _opt_outs,
    "disputes": _disputes,
    "write-offs": _write_offs,
    "placements": _placements,
}
TITLES = {
    "aging": "Aging of open balances",
    "days-in-ar": "Days in A/R",
    "collection-rate": "Collection rate by month",
    "over-90": "Share of A/R over 90 days",
    "outcomes-by-step": "Outcomes by step",
    "cost-by-channel": "Cost to collect by channel",
    "opt-outs": "Opt-outs",
    "disputes": "Disputes",
    "write-offs": "Write-offs",
    "placements": "Agency placements",
}


def build(session: Session, name: str, options: Options) -> Report:
    """The report ``name`` read from the ledger now.

    Raises:
        UnknownReport: ``name`` is not one of :data:`REPORTS`.
    """
    builder = BUILDERS.get(name)
    if builder is None:
        raise UnknownReport(f"name: unknown report {name!r}; the reports are " + ", ".join(REPORTS))
    return builder(session, options)


# -- formatting ----------------------------------------------------------------------------------


def dollars(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole > 0 else "n/a"


def safe_cell(value: str) -> str:
    """A cell a spreadsheet shows as text: a leading formula character gets a ``'`` before it."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def to_csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
    return out.getvalue()


def export(session: Session, actor: Actor, name: str, options: Options, *, door: str) -> Report:
    """The report ``name`` for a download or a CSV on the terminal, with its audit row (what
    leaves the system as a file is recorded, as every action is)."""
    report = build(session, name, options)
    detail: dict[str, Any] = {"report": name, "door": door}
    if options.policy is not None:
        detail["policy"] = options.policy
    audit.record(session, actor, "report_exported", None, Outcome.DONE, detail)
    return report
