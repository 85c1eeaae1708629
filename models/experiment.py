"""Champion and challenger experiments as configuration (``config/experiments/*.yaml``).

An experiment names a champion policy, one or more challengers with their shares of eligible new
balances, who is eligible, when it runs, the primary metric with the smallest effect worth
detecting, and the guards that stop a challenger. ``services.experiments`` runs it.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class Metric(StrEnum):
    """Per-balance outcomes an experiment can be judged on (``services.experiments.outcomes``)."""

    COLLECTED_30D = "collected_30d"  # dollars paid within 30 days of entering the experiment
    COLLECTED_60D = "collected_60d"
    COLLECTED_90D = "collected_90d"
    COLLECTION_RATE_90D = "collection_rate_90d"  # collected within 90 days / balance at entry
    PAID_IN_FULL_90D = "paid_in_full_90d"  # 1 when paid in full within 90 days, else 0

    @property
    def window_days(self) -> int:
        return {"collected_30d": 30, "collected_60d": 60}.get(self.value, 90)

    @property
    def is_share(self) -> bool:
        """A 0/1 or 0..1 metric (shown as percentages), not dollars."""
        return self in (Metric.COLLECTION_RATE_90D, Metric.PAID_IN_FULL_90D)


class GuardMetric(StrEnum):
    """Harms counted per balance of an arm since it entered (share of balances with one)."""

    OPT_OUTS = "opt_outs"
    DISPUTES = "disputes"
    COMPLAINTS = "complaints"
    HARDSHIP = "hardship"
    WRITE_OFFS = "write_offs"
    PLACEMENTS = "placements"


class Arm(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Slug
    policy: str = Field(min_length=1, max_length=64, description="a policy name in the folders")
    share: Decimal = Field(gt=0, lt=100, description="percent of eligible new balances")


class Eligibility(BaseModel):
    """Who enters: every condition given must hold; one left out admits everyone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policies: list[str] = Field(
        default_factory=list,
        description="the policy a balance would get without the experiment; default the champion's",
    )
    balance_min: Decimal | None = Field(default=None, ge=0, description="dollars, inclusive")
    balance_max: Decimal | None = Field(default=None, ge=0, description="dollars, inclusive")
    age_days_min: int | None = Field(default=None, ge=0, description="days since the oldest visit")
    age_days_max: int | None = Field(default=None, ge=0)
    states: list[Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]] = Field(
        default_factory=list, description="the guarantor's state (two letters)"
    )
    languages: list[str] = Field(default_factory=list, description="the guarantor's language")

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        if (
            self.balance_min is not None
            and self.balance_max is not None
            and self.balance_min > self.balance_max
        ):
            raise ValueError("balance_max: must not be below balance_min")
        if (
            self.age_days_min is not None
            and self.age_days_max is not None
            and self.age_days_min > self.age_days_max
        ):
            raise ValueError("age_days_max: must not be below age_days_min")
        return self


class Guard(BaseModel):
    """Stop a challenger when its rate of a harm passes a limit (after ``min_balances``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: GuardMetric
    max_rate: float | None = Field(default=None, gt=0, le=1, description="share of balances")
    max_excess: float | None = Field(
        default=None, ge=0, le=1, description="share above the champion's (0.02: 2 points)"
    )
    min_balances: int = Field(default=30, ge=1, description="balances in the arm before it acts")

    @model_validator(mode="after")
    def _limit(self) -> Self:
        if self.max_rate is None and self.max_excess is None:
            raise ValueError("max_rate: give max_rate, max_excess or both")
        return self


def _default_guards() -> list[Guard]:
    return [
        Guard(metric=GuardMetric.OPT_OUTS, max_excess=0.03),
        Guard(metric=GuardMetric.DISPUTES, max_excess=0.02),
    ]


class Statistics(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_detectable_effect: float = Field(
        gt=0, description="smallest difference worth detecting, in the metric's unit"
    )
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    power: float = Field(default=0.8, ge=0.5, lt=1)
    bootstrap_resamples: int = Field(default=2000, ge=200, le=100_000)
    seed: int = 14


class Forecast(BaseModel):
    """The simulation's prediction shown beside the observed result (``dunning simulate``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    balances: int = Field(default=2000, ge=0, le=200_000, description="0: no forecast")
    seed: int = 14


class ExperimentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Slug
    description: str = ""
    champion: Arm
    challengers: list[Arm] = Field(min_length=1, max_length=5)
    eligibility: Eligibility = Eligibility()
    starts_on: dt.date
    ends_on: dt.date | None = None
    primary_metric: Metric = Metric.COLLECTED_90D
    statistics: Statistics
    guards: list[Guard] = Field(default_factory=_default_guards)
    forecast: Forecast = Forecast()

    @model_validator(mode="after")
    def _arms(self) -> Self:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError("challengers: every arm needs its own name")
        total = sum(a.share for a in self.arms)
        if total != 100:
            raise ValueError(f"champion.share: the shares add up to {total}, expected 100")
        if self.ends_on is not None and self.ends_on <= self.starts_on:
            raise ValueError("ends_on: must be after starts_on")
        return self

    @property
    def arms(self) -> list[Arm]:
        """Champion first: the order of the arms on the unit interval of buckets."""
        return [self.champion, *self.challengers]

    @property
    def eligible_policies(self) -> list[str]:
        return self.eligibility.policies or [self.champion.policy]
