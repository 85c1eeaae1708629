"""Step throughput: ladder steps one worker executes per second (outbox, real PostgreSQL).

``n`` balances on a bench-only policy of eight steps that are all due at once (see
``bench.common.instant_policy``) are imported before the worker starts; the clock runs from the
worker's start until every step's outbox row is ``sent``. Each step is the real ``send_step``:
send-time checks, rendering, the outbox claim, a PDF letter or an email file, the audit row.

Baseline: ``bench-baseline`` on the same dev server with, per workflow, exactly the timers and
activities one of our finished ladders shows in its history (the instant ladder sets no timer
between steps), a no-op activity, the same number of activity slots, timed from its worker's start
to the last workflow's completion.
"""

from __future__ import annotations

import asyncio
import uuid

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
    wait_until,
    write_csv,
)
from bench.history_cost import shape_of
from models.orm import Communication, CommunicationStatus
from starter import Intake, workflow_id
from worker import build_worker

STEPS = 8
TARGET = ">= 0.8"


async def ours(st: Stack, n: int) -> tuple[float, dict[str, int]]:
    zone = midday_zone()
    policy = instant_policy(st.directory, STEPS, zone)
    rows = balance_rows(n, policy, zone)
    settings = st.settings_for("bench-steps")
    intake = Intake(st.session_factory, st.client, settings)
    await intake.import_balances(write_csv(st.directory / "balances.csv", rows))

    async def all_sent() -> bool:
        with st.session_factory() as session:
            sent = session.scalar(
                select(func.count())
                .select_from(Communication)
                .where(Communication.status == CommunicationStatus.SENT)
            )
        return (sent or 0) >= n * STEPS

    with timed() as elapsed:
        async with build_worker(st.client, settings, st.session_factory):
            await wait_until(all_sent, 600)
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


async def baseline(st: Stack, n: int, timers: int, activities: int) -> float:
    queue = "bench-steps-baseline"
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
    n = 10 if quick else 150
    async with stack() as st:
        seconds, shape = await ours(st, n)
        theirs = await baseline(st, n, shape["timers"], shape["activities"])
    total = n * STEPS
    return Result(
        "step_throughput",
        total / seconds,
        n * shape["activities"] / theirs,
        "steps/s",
        f"{n} balances x {STEPS} steps in {seconds:.1f}s; baseline {n} x "
        f"{shape['timers']} timers + {shape['activities']} no-op activities in {theirs:.1f}s",
        TARGET,
        {"balances": n, "steps_per_balance": STEPS, "history_per_balance": shape},
    )


if __name__ == "__main__":
    print(asyncio.run(measure(quick_from_argv(__doc__ or ""))).line())
