"""What a simulation found: totals per policy, side-by-side tables and a chart."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from models.money import format_cents
from models.payloads import StepOutcome
from models.policy import Channel
from simulation.engine import OUTCOMES, BalanceRun
from simulation.response import MICROS_PER_DOLLAR, ResponseModel


@dataclass
class Summary:
    """Totals of one policy over a portfolio; mergeable, so that parts can run in parallel."""

    policy: str
    start: dt.datetime
    horizon_days: int
    balances: int = 0
    initial_cents: int = 0
    collected_cents: int = 0
    cost_micros: int = 0
    placed_cents: int = 0
    written_off_cents: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    open_cents: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    sends: dict[str, int] = field(default_factory=lambda: {c.value: 0 for c in Channel})
    steps: dict[str, dict[str, int]] = field(default_factory=dict)
    collected_by_day: list[int] = field(default_factory=list)
    sends_by_month: dict[str, list[int]] = field(default_factory=dict)
    days_to_pay_total: float = 0.0

    def __post_init__(self) -> None:
        months = self.horizon_days // 30 + 2
        if not self.collected_by_day:
            self.collected_by_day = [0] * (self.horizon_days + 1)
        if not self.sends_by_month:
            self.sends_by_month = {c.value: [0] * months for c in Channel}

    def add(self, run: BalanceRun) -> None:
        """Count one balance's run."""
        state = run.state
        self.balances += 1
        self.initial_cents += run.balance.balance_cents
        self.cost_micros += run.cost_micros
        self.placed_cents += run.placed_cents
        self.written_off_cents += run.written_off_cents
        self.outcomes[run.outcome] += 1
        self.open_cents[run.outcome] += max(0, state.balance_cents)
        last = len(self.collected_by_day) - 1
        for at, cents in run.payments:
            self.collected_cents += cents
            self.collected_by_day[min(last, (at - self.start).days)] += cents
        if run.outcome == "paid" and run.payments:
            self.days_to_pay_total += (
                run.payments[-1][0] - run.balance.entered_at
            ).total_seconds() / 86400
        months = len(next(iter(self.sends_by_month.values())))
        for record in state.history:
            counts = self.steps.setdefault(record.step_id, {o.value: 0 for o in StepOutcome})
            counts[record.outcome.value] += 1
            if record.outcome is StepOutcome.SENT and record.channel is not None:
                self.sends[record.channel.value] += 1
                month = min(months - 1, (record.at - self.start).days // 30)
                self.sends_by_month[record.channel.value][month] += 1

    def merge(self, other: Summary) -> None:
        for name in (
            "balances",
            "initial_cents",
            "collected_cents",
            "cost_micros",
            "placed_cents",
            "written_off_cents",
            "days_to_pay_total",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in (
            (self.outcomes, other.outcomes),
            (self.open_cents, other.open_cents),
            (self.sends, other.sends),
        ):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        for step, counts in other.steps.items():
            target = self.steps.setdefault(step, dict.fromkeys(counts, 0))
            for k, v in counts.items():
                target[k] += v
        self.collected_by_day = [
            a + b for a, b in zip(self.collected_by_day, other.collected_by_day, strict=True)
        ]
        for channel, months in other.sends_by_month.items():
            self.sends_by_month[channel] = [
                a + b for a, b in zip(self.sends_by_month[channel], months, strict=True)
            ]

    # -- derived figures ---------------------------------------------------------------------

    @property
    def cost_cents(self) -> int:
        return round(self.cost_micros / (MICROS_PER_DOLLAR / 100))

    @property
    def collection_rate(self) -> float:
        return self.collected_cents / self.initial_cents if self.initial_cents else 0.0

    @property
    def cost_per_dollar(self) -> float:
        return (
            self.cost_micros / MICROS_PER_DOLLAR / (self.collected_cents / 100)
            if self.collected_cents
            else 0.0
        )

    @property
    def mean_days_to_pay(self) -> float:
        paid = self.outcomes["paid"]
        return self.days_to_pay_total / paid if paid else 0.0

    def agency_net_cents(self, response: ResponseModel) -> int:
        """What the agency is expected to pass back of what it was given."""
        placed_open = self.open_cents["placed"]
        return round(placed_open * response.agency.recovery_rate * (1 - response.agency.fee_rate))

    def to_dict(self, response: ResponseModel) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "start": self.start.isoformat(),
            "horizon_days": self.horizon_days,
            "balances": self.balances,
            "initial_cents": self.initial_cents,
            "collected_cents": self.collected_cents,
            "collection_rate": round(self.collection_rate, 4),
            "cost_cents": self.cost_cents,
            "cost_per_dollar_collected": round(self.cost_per_dollar, 4),
            "mean_days_to_pay": round(self.mean_days_to_pay, 1),
            "placed_cents": self.placed_cents,
            "agency_net_cents": self.agency_net_cents(response),
            "written_off_cents": self.written_off_cents,
            "outcomes": self.outcomes,
            "open_cents": self.open_cents,
            "sends": self.sends,
            "steps": self.steps,
            "collected_by_day": self.collected_by_day,
            "sends_by_month": self.sends_by_month,
        }


def summary_table(summaries: list[Summary], response: ResponseModel) -> Table:
    """One column per policy: what was sent, what it cost, what came in and what is left."""
    table = Table("", *(s.policy for s in summaries), title="Simulated portfolio")

    def row(label: str, values: list[str]) -> None:
        table.add_row(label, *values)

    row("balances", [f"{s.balances:,}" for s in summaries])
    row("owed at entry", [format_cents(s.initial_cents) for s in summaries])
    for channel in Channel:
        row(f"{channel.value}s sent", [f"{s.sends[channel.value]:,}" for s in summaries])
    row("cost of contacts", [format_cents(s.cost_cents) for s in summaries])
    row("collected", [format_cents(s.collected_cents) for s in summaries])
    row("collection rate", [f"{s.collection_rate:.1%}" for s in summaries])
    row("cost per $ collected", [f"${s.cost_per_dollar:.3f}" for s in summaries])
    row("mean days to pay in full", [f"{s.mean_days_to_pay:.1f}" for s in summaries])
    for outcome in OUTCOMES:
        row(
            f"{outcome.replace('_', ' ')} (accounts, still owed)",
            [f"{s.outcomes[outcome]:,} ({format_cents(s.open_cents[outcome])})" for s in summaries],
        )
    row("placed with agency", [format_cents(s.placed_cents) for s in summaries])
    row(
        "expected back from agency", [format_cents(s.agency_net_cents(response)) for s in summaries]
    )
    row("written off", [format_cents(s.written_off_cents) for s in summaries])
    return table


def steps_table(summary: Summary) -> Table:
    table = Table("step", *(o.value for o in StepOutcome), title=f"Steps of {summary.policy}")
    for step, counts in summary.steps.items():
        table.add_row(step, *(f"{counts[o.value]:,}" for o in StepOutcome))
    return table


def chart(summaries: list[Summary], path: Path) -> Path:
    """Cumulative dollars collected per policy, and contacts sent per channel per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    for s in summaries:
        total, cumulative = 0, []
        for cents in s.collected_by_day:
            total += cents
            cumulative.append(total / 100)
        left.plot(
            range(len(cumulative)),
            cumulative,
            label=f"{s.policy} ({s.collection_rate:.1%} of {format_cents(s.initial_cents)})",
        )
    left.set_title("Collected over time")
    left.set_xlabel("days since the first import")
    left.set_ylabel("collected, cumulative (USD)")
    left.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("${x:,.0f}"))
    left.grid(alpha=0.3)
    left.legend(loc="lower right")

    channels = [c.value for c in Channel]
    width = 0.8 / max(1, len(summaries))
    for i, s in enumerate(summaries):
        xs = [j + (i - (len(summaries) - 1) / 2) * width for j in range(len(channels))]
        bars = right.bar(xs, [s.sends[c] for c in channels], width, label=s.policy)
        right.bar_label(bars, labels=[f"{s.sends[c]:,}" for c in channels], fontsize=7, padding=2)
    right.set_xticks(range(len(channels)), channels)
    right.set_title("Contacts sent per channel")
    right.set_ylabel("contacts")
    right.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    right.legend()
    right.margins(y=0.12)
    fig.suptitle(
        f"{summaries[0].balances:,} balances from {summaries[0].start:%Y-%m-%d}, "
        f"{summaries[0].horizon_days} days"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
