"""Simulation: balances per second through the twelve-month policy, 365 days, both cores.

Baseline: the same simulation without the decision cache (``decide`` called at every wake-up),
single process, on a smaller sample; the figure is the CLI's default (cache, one process per core).
"""

from __future__ import annotations

import datetime as dt
import time

from bench.common import TWELVE_MONTH, Result, quick_from_argv
from config.loader import load_policy
from simulation.response import ResponseModel
from simulation.runner import Job, Portfolio, default_workers, run

START = dt.datetime(2026, 12, 1, 14, tzinfo=dt.UTC)


def measure(quick: bool) -> Result:
    n, sample = (1_000, 500) if quick else (100_000, 10_000)
    policy = load_policy(TWELVE_MONTH).policy
    job = Job(policy, policy.name, Portfolio(START, synthetic=n, seed=1), ResponseModel(), 1, 365)
    began = time.perf_counter()
    run(job, workers=default_workers(n) if not quick else 1)
    ours = time.perf_counter() - began
    plain = Job(
        policy,
        policy.name,
        Portfolio(START, synthetic=sample, seed=1),
        ResponseModel(),
        1,
        365,
        use_cache=False,
    )
    began = time.perf_counter()
    run(plain, workers=1)
    theirs = time.perf_counter() - began
    return Result(
        "simulation",
        n / ours,
        sample / theirs,
        "balances/s",
        f"{n:,} balances in {ours:.1f}s; baseline: no cache, 1 process, {sample:,}",
    )


if __name__ == "__main__":
    print(measure(quick_from_argv(__doc__ or "")).line())
