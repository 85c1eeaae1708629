"""Alternating turns of a baseline and its subject on the same server, the median turn kept.

On a shared machine a turn's ratio moves by a tenth or more from one minute to the next; the two
sides of one turn run in the same minute, so the turn with the median ratio is the fair figure,
and every turn is kept in ``details["rounds"]``. Who goes first alternates: a dev server slows as
the workflows it holds add up (a fifth and more over a few thousand open starts, seen here), so
the side that always went second would always meet the fuller server.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Awaitable, Callable
from typing import Any

from bench.common import timed

Side = Callable[[int], Awaitable[int]]
"""Runs one side of turn ``i``; returns how many items it processed."""


async def alternate(
    turns: int, baseline: Side, subject: Side
) -> tuple[float, float, dict[str, Any]]:
    """Run ``turns`` turns (even turns baseline first, odd ones the subject first). Returns
    (figure, baseline, details) of the turn with the median ratio; details hold every turn, who
    went first and the load averages."""
    rounds: list[dict[str, Any]] = []
    for turn in range(turns):
        if turn % 2:
            with timed() as ours_time:
                our_items = await subject(turn)
            with timed() as base_time:
                base_items = await baseline(turn)
        else:
            with timed() as base_time:
                base_items = await baseline(turn)
            with timed() as ours_time:
                our_items = await subject(turn)
        base_rate = base_items / base_time()
        our_rate = our_items / ours_time()
        rounds.append(
            {
                "figure": round(our_rate, 1),
                "baseline": round(base_rate, 1),
                "ratio": round(our_rate / base_rate, 3),
                "first": "subject" if turn % 2 else "baseline",
                "load_1m": round(os.getloadavg()[0], 2),
            }
        )
    ratios = sorted(r["ratio"] for r in rounds)
    median = statistics.median_low(ratios)
    chosen = next(r for r in rounds if r["ratio"] == median)
    return chosen["figure"], chosen["baseline"], {"rounds": rounds, "turns": turns}
