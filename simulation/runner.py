"""Run a policy over a whole portfolio, optionally in several processes, with progress."""

from __future__ import annotations

import datetime as dt
import os
import random
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from models.policy import Policy
from simulation.engine import DecisionCache, simulate_balance
from simulation.portfolio import SimBalance, synthetic
from simulation.report import Summary
from simulation.response import ResponseModel

CHUNK = 2_500
ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class Portfolio:
    """Either explicit balances (a CSV export) or a synthetic portfolio made from a seed."""

    start: dt.datetime
    balances: Sequence[SimBalance] = ()
    synthetic: int = 0
    seed: int = 0

    def __len__(self) -> int:
        return len(self.balances) if self.balances else self.synthetic

    def chunk(self, policy: Policy, offset: int, n: int) -> list[SimBalance]:
        if self.balances:
            return list(self.balances[offset : offset + n])
        return list(synthetic(n, policy, self.start, self.seed, offset))


def response_rng(seed: int, index: int) -> random.Random:
    """One random stream per balance: the same balance meets the same luck under either policy."""
    return random.Random((seed << 32) ^ (index * 2_654_435_761))


@dataclass(frozen=True)
class Job:
    policy: Policy
    name: str
    portfolio: Portfolio
    response: ResponseModel
    seed: int
    horizon_days: int
    use_cache: bool = True

    @property
    def horizon_end(self) -> dt.datetime:
        return self.portfolio.start + dt.timedelta(days=self.horizon_days)

    def summary(self) -> Summary:
        return Summary(self.name, self.portfolio.start, self.horizon_days)


def run_chunk(job: Job, offset: int, n: int, cache: DecisionCache | None) -> Summary:
    summary = job.summary()
    end = job.horizon_end
    for i, balance in enumerate(job.portfolio.chunk(job.policy, offset, n), start=offset):
        run = simulate_balance(
            job.policy,
            balance,
            end,
            response=job.response,
            rng=response_rng(job.seed, i),
            cache=cache,
        )
        summary.add(run)
    return summary


_worker_job: Job | None = None
_worker_cache: DecisionCache | None = None


def _init_worker(job: Job) -> None:
    global _worker_job, _worker_cache
    _worker_job = job
    _worker_cache = DecisionCache(job.policy) if job.use_cache else None


def _worker_chunk(offset: int, n: int) -> Summary:
    assert _worker_job is not None
    return run_chunk(_worker_job, offset, n, _worker_cache)


def default_workers(total: int) -> int:
    """Processes worth starting: one per core, but not for small portfolios."""
    return max(1, min(os.cpu_count() or 1, total // 20_000))


def run(job: Job, *, workers: int = 1, progress: ProgressFn | None = None) -> Summary:
    """Simulate every balance of ``job.portfolio`` under ``job.policy``; totals in a Summary."""
    total = len(job.portfolio)
    chunks = [(offset, min(CHUNK, total - offset)) for offset in range(0, total, CHUNK)]
    summary = job.summary()
    if workers <= 1:
        cache = DecisionCache(job.policy) if job.use_cache else None
        for offset, n in chunks:
            summary.merge(run_chunk(job, offset, n, cache))
            if progress:
                progress(n)
        return summary
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(job,)) as pool:
        futures = [(n, pool.submit(_worker_chunk, offset, n)) for offset, n in chunks]
        for n, future in futures:
            summary.merge(future.result())
            if progress:
                progress(n)
    return summary
