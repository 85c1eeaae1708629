"""The simulation's forecast for each arm, to show beside what the ledger observed.

Every arm's policy runs over the same synthetic portfolio with the same luck per balance
(``simulation.runner.response_rng``), each balance followed for the primary metric's window from
the day it enters: the forecast difference is the response model's prediction of the effect.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from models.experiment import Metric
from models.policy import Policy
from simulation.engine import BalanceRun, DecisionCache, simulate_balance
from simulation.portfolio import synthetic
from simulation.response import ResponseModel
from simulation.runner import response_rng

FORECAST_START = dt.datetime(2027, 1, 4, 15, 0, tzinfo=dt.UTC)
"""A fixed Monday: a forecast does not change with the day it is asked."""


@dataclass(frozen=True)
class ArmForecast:
    arm: str
    balances: int
    mean: float
    """The primary metric per balance (dollars, or a share)."""


def simulate_arm(
    policy: Policy,
    n: int,
    seed: int,
    window_days: int,
    response: ResponseModel | None = None,
    start: dt.datetime = FORECAST_START,
) -> list[BalanceRun]:
    """``n`` synthetic balances under ``policy``, each followed ``window_days`` from its entry.

    The portfolio depends on ``seed`` only (profiles are rebuilt for each policy's consent
    rules), and balance ``i`` meets the same random responses under every policy.
    """
    model = response or ResponseModel()
    cache = DecisionCache(policy)
    runs = []
    for i, balance in enumerate(synthetic(n, policy, start, seed)):
        end = balance.entered_at + dt.timedelta(days=window_days)
        runs.append(
            simulate_balance(
                policy, balance, end, response=model, rng=response_rng(seed, i), cache=cache
            )
        )
    return runs


def run_value(run: BalanceRun, metric: Metric) -> float:
    """The metric of one simulated balance, as ``outcomes.BalanceOutcome.value`` computes it."""
    collected = sum(c for _, c in run.payments)
    cents = run.balance.balance_cents
    if metric is Metric.COLLECTION_RATE_90D:
        return collected / cents if cents > 0 else 0.0
    if metric is Metric.PAID_IN_FULL_90D:
        return 1.0 if cents > 0 and collected >= cents else 0.0
    return collected / 100


def forecast(
    arms: list[tuple[str, Policy]], metric: Metric, n: int, seed: int
) -> list[ArmForecast]:
    result = []
    for name, policy in arms:
        runs = simulate_arm(policy, n, seed, metric.window_days)
        values = [run_value(r, metric) for r in runs]
        result.append(ArmForecast(name, len(values), sum(values) / len(values) if values else 0.0))
    return result
