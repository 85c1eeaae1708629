"""Step throughput: ladder steps one worker executes per second (outbox, real PostgreSQL).

``n`` balances on a bench-only policy of eight steps that are all due at once (see
``bench.common.instant_policy``) are imported before the worker starts; the clock runs from the
worker's start until every step's outbox row is ``sent``. Each step is the real ``send_step`` as
the worker runs it, batched with the steps due at the same time: send-time checks, rendering, the
outbox claim committed before any send, the letter queued with its statement or the email
appended to the day's mailbox, the SENT mark, the audit row.

Baseline: ``bench-baseline`` on the same dev server with, per workflow, exactly the timers and
activities one of our finished ladders shows in its history (the instant ladder sets no timer
between steps), a no-op activity, the same number of activity slots, timed from its worker's start
to the last workflow's completion.

Both sides warm up once (10 balances, not measured), then take five turns each, alternating who
goes first;
figure and baseline are those of the turn with the median ratio (each turn's two sides ran in the
same minute), and every turn's figures are in ``details``. Both
run in this one process with the worker's garbage-collector settings (``worker.tune_gc``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import func, select

from bench.common import (
    Result,
    Stack,
    balance_rows,
    instant_policy,
    midday_zone,
    quick_from_argv,
    stack,
    timed,
    write_csv,
)
from bench.history_cost import shape_of
from models.orm import Communication, CommunicationStatus
from starter import Intake, workflow_id
from worker import build_worker, tune_gc

STEPS = 8
MIN_LOOK = 0.05
"""Seconds: the finish is seen within this of when it happens."""
ROUNDS = 5
WARM_UP = 10
TARGET = ">= 0.8"


def sent_count(st: Stack) -> int:
    with st.session_factory() as session:
        sent = session.scalar(
            select(func.count())
            .select_from(Communication)
            .where(Communication.status == CommunicationStatus.SENT)
        )
    return sent or 0


async def ours(st: Stack, n: int, round_: int) -> tuple[float, dict[str, int]]:
    zone = midday_zone()
    policy = instant_policy(st.directory, STEPS, zone)
    rows = balance_rows(n, policy, zone)
    settings = st.settings_for(f"bench-steps-{round_}")
    intake = Intake(st.session_factory, st.client, settings)
    await intake.import_balances(write_csv(st.directory / f"balances-{round_}.csv", rows))
    before = sent_count(st)

    async def sent() -> int:
        # In a thread, so the count never holds up the worker's event loop.
        return await asyncio.to_thread(sent_count, st) - before

    with timed() as elapsed:
        async with build_worker(st.client, settings, st.session_factory):
            await until_counted(sent, n * STEPS, elapsed)
            seconds = elapsed()
            # Let the last activity results reach the histories, then read one.
            await asyncio.sleep(1)
            wid = workflow_id(intake.account_id(rows[-1]["account_number"]))
            shape = await shape_of(st.client, wid)
    return seconds, {
        "timers": shape.timers,
        "activities": shape.activities,
        "workflow_tasks": shape.workflow_tasks,
        "events": shape.events,
    }


async def until_counted(
    count: Callable[[], Awaitable[int]],
    total: int,
    elapsed: Callable[[], float],
    timeout: float = 600.0,
) -> None:
    """Wait until ``count()`` reaches ``total``, looking often only near the end.

    Each look is a query in this process: polled every 50 ms for a whole turn, the observer ran
    about as many statements as the worker it watched (105 counts beside 44 batches of about 7
    statements, in a 60-balance turn) and took its share of the GIL and of PostgreSQL from the
    side it timed. The next look comes after half the time the current pace says is left, between
    50 ms and 1 s: few looks while most steps are ahead, and still within 50 ms of the end.
    """
    started = time.monotonic()
    while (done := await count()) < total:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{done} of {total} steps sent in {timeout:.0f}s")
        spent = elapsed()
        left = (total - done) * spent / done if done else 1.0
        await asyncio.sleep(min(1.0, max(MIN_LOOK, left / 2)))


async def baseline(st: Stack, n: int, timers: int, activities: int, round_: int) -> float:
    queue = f"bench-steps-baseline-{round_}"
    handles = [
        await st.client.start_workflow(
            "bench-baseline",
            args=[activities, timers],
            id=f"baseline-{uuid.uuid4().hex}",
            task_queue=queue,
        )
        for _ in range(n)
    ]
    with timed() as elapsed:
        async with st.baseline_worker(queue):
            await asyncio.gather(*(h.result() for h in handles))
            return elapsed()


async def measure(quick: bool) -> Result:
    """Ours and the baseline in turns, ``ROUNDS`` times; the median turn, and every turn's figures.

    Turns and medians, because a shared two-core machine is noisy: a round's ratio can move by a
    third from one minute to the next, and both sides of a turn see the same minute.
    """
    n, rounds = (10, 1) if quick else (150, ROUNDS)
    total = n * STEPS
    per_round: list[dict[str, float]] = []
    async with stack() as st:
        # The worker process's collector settings, as `dunning run` sets them; process-wide, so
        # the baseline's turns run with them too.
        tune_gc()
        shape: dict[str, int] | None = None
        if not quick:
            # A warm-up turn of each side, not measured: a worker runs for days, and its first
            # minute (compiling statements and templates, loading policies) is not its pace.
            _, shape = await ours(st, WARM_UP, -1)
            await baseline(st, WARM_UP, shape["timers"], shape["activities"], -1)
        for round_ in range(rounds):
            # Who goes first alternates, so that neither side always meets the server fresher.
            if shape is not None and round_ % 2:
                theirs = await baseline(st, n, shape["timers"], shape["activities"], round_)
                seconds, shape = await ours(st, n, round_)
            else:
                seconds, shape = await ours(st, n, round_)
                theirs = await baseline(st, n, shape["timers"], shape["activities"], round_)
            per_round.append(
                {
                    "steps_per_s": round(total / seconds, 1),
                    "baseline_per_s": round(n * shape["activities"] / theirs, 1),
                    "ratio": round((total / seconds) / (n * shape["activities"] / theirs), 3),
                }
            )
    # The median turn: each turn's two sides ran in the same minute, so its ratio is the fair
    # one; the medians of the two sides separately could pair a fast minute with a slow one.
    middle = sorted(per_round, key=lambda r: r["ratio"])[len(per_round) // 2]
    figure, base = middle["steps_per_s"], middle["baseline_per_s"]
    assert shape is not None
    return Result(
        "step_throughput",
        figure,
        base,
        "steps/s",
        f"{n} balances x {STEPS} steps, the median of {rounds} turns; baseline {n} x "
        f"{shape['timers']} timers + {shape['activities']} no-op activities; round ratios "
        + ", ".join(f"{r['ratio']:.2f}" for r in per_round),
        TARGET,
        {
            "balances": n,
            "steps_per_balance": STEPS,
            "history_per_balance": shape,
            "rounds": per_round,
        },
    )


if __name__ == "__main__":
    print(asyncio.run(measure(quick_from_argv(__doc__ or ""))).line())
