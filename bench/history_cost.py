"""History cost: history events and bytes per balance, real ladder vs the no-op workflow.

Each workflow runs alone on a fresh time-skipping server (the server hangs with several open
workflows at once), so the real policies keep their real day offsets, send times, business days
and quiet hours; nothing is shortened. Three cases:

- ``physician``: the standard ladder with no reply. It sends seven steps over 90 days and ends
  parked on the agency referral's approval, which nobody gives (an open history).
- ``plan12``: a physician balance put on a twelve-month payment plan on day 3 and paid on time,
  installment by installment (a reminder before each due date), until the workflow ends paid.
- ``twelve_month``: the year-long ``bench/policies/twelve-month.yaml`` ladder with no reply.

Baseline: ``bench-baseline`` on its own fresh time-skipping server, with exactly as many timers,
activities and signals as the real history holds, and open or completed as the real one is. It
is what any workflow doing that much work costs; the ratio is our overhead on top. Events are
what Temporal Cloud's actions follow; bytes are reported alongside.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import uuid
from pathlib import Path

from temporalio.client import Client, WorkflowHandle

from bench.common import (
    TWELVE_MONTH,
    Database,
    HistoryShape,
    Result,
    balance_rows,
    baseline_worker,
    database,
    quick_from_argv,
    time_skipping,
    wait_until,
    write_csv,
)
from config.settings import POLICY_DIR
from models.actions import Installment, PlanRequest
from starter import Intake, set_payment_plan, workflow_id
from worker import build_worker

PHYSICIAN = POLICY_DIR / "physician.yaml"
PLAN_MONTHS = 12
TARGET = "<= 1.2"


async def shape_of(client: Client, wid: str) -> HistoryShape:
    """Every run of a workflow id, following continue-as-new back to the first run."""
    shape = HistoryShape()
    run_id: str | None = None
    while True:
        history = await client.get_workflow_handle(wid, run_id=run_id).fetch_history()
        shape.add(history)
        started = history.events[0].workflow_execution_started_event_attributes
        run_id = started.continued_execution_run_id or None
        if run_id is None:
            return shape


QUIET = {
    "WORKFLOW_TASK_COMPLETED",
    "TIMER_STARTED",
    "TIMER_CANCELED",
    "WORKFLOW_EXECUTION_COMPLETED",
}
"""Last events of a history with nothing in flight that would make the server add a task."""


async def _settled(
    handle: WorkflowHandle[object, object], activities: int = 0, timers: int = 0, signals: int = 0
) -> bool:
    """At least this much has happened and nothing is in flight (the history is at rest)."""
    shape = HistoryShape().add(await handle.fetch_history())
    last = next(reversed(shape.last_types), "")
    return (
        last in QUIET
        and shape.by_type.get("ACTIVITY_TASK_COMPLETED", 0) >= activities
        and shape.by_type.get("ACTIVITY_TASK_SCHEDULED", 0)
        == shape.by_type.get("ACTIVITY_TASK_COMPLETED", 0)
        and shape.by_type.get("TIMER_FIRED", 0) >= timers
        and shape.signals >= signals
    )


async def _import(db: Database, client: Client, policy: Path, queue: str) -> tuple[Intake, str]:
    row = balance_rows(1, policy, "America/New_York")[0]
    intake = Intake(db.session_factory, client, db.settings_for(queue))
    await intake.import_balances(write_csv(db.directory / f"{queue}.csv", [row]))
    return intake, row["account_number"]


async def ladder(db: Database, policy: Path, days: int) -> HistoryShape:
    """A balance on ``policy`` with no reply, ``days`` after it entered the ladder."""
    queue = f"bench-history-{uuid.uuid4().hex[:8]}"
    async with time_skipping() as env:
        settings = db.settings_for(queue)
        async with build_worker(env.client, settings, db.session_factory):
            intake, number = await _import(db, env.client, policy, queue)
            await env.sleep(dt.timedelta(days=days))
            wid = workflow_id(intake.account_id(number))
            await wait_until(lambda: _settled(env.client.get_workflow_handle(wid)), 60)
            return await shape_of(env.client, wid)


async def plan12(db: Database) -> HistoryShape:
    """A physician balance on a twelve-month plan from day 3, every installment paid on time."""
    queue = f"bench-history-{uuid.uuid4().hex[:8]}"
    async with time_skipping() as env:
        settings = db.settings_for(queue)
        async with build_worker(env.client, settings, db.session_factory):
            start = await env.get_current_time()
            intake, number = await _import(db, env.client, PHYSICIAN, queue)
            account_id = intake.account_id(number)

            async def at_day(day: float) -> None:
                target = start + dt.timedelta(days=day)
                now = await env.get_current_time()
                if target > now:
                    await env.sleep(target - now)

            await at_day(3)
            balance = 5500  # balance_rows: 185.00 charged, 90.00 + 40.00 by insurance
            each = balance // PLAN_MONTHS
            amounts = [each] * (PLAN_MONTHS - 1) + [balance - each * (PLAN_MONTHS - 1)]
            dues = [start.date() + dt.timedelta(days=30 * (m + 1)) for m in range(PLAN_MONTHS)]
            await set_payment_plan(
                env.client,
                account_id,
                PlanRequest(
                    agreed_by="clerk-1",
                    installments=[
                        Installment(due_on=d, amount_cents=a)
                        for d, a in zip(dues, amounts, strict=True)
                    ],
                ),
            )
            for month, amount in enumerate(amounts):
                await at_day(30 * (month + 1) - 0.5)  # paid the day it is due
                await intake.post_payment(number, amount, f"PLAN-{number}-{month + 1}")
            handle = env.client.get_workflow_handle(workflow_id(account_id))
            await handle.result()
            return await shape_of(env.client, handle.id)


async def baseline(ours: HistoryShape, slots: int) -> HistoryShape:
    """The no-op workflow with ``ours``'s timers, activities and signals, open or completed."""
    async with time_skipping() as env:
        queue = f"bench-history-baseline-{uuid.uuid4().hex[:8]}"
        async with baseline_worker(env.client, queue, slots):
            signals = ours.signals
            handle: WorkflowHandle[object, object] = await env.client.start_workflow(
                "bench-baseline",
                args=[ours.activities, ours.timers, not ours.completed, signals],
                id=f"baseline-{uuid.uuid4().hex}",
                task_queue=queue,
                # a balance's first charge comes with signal-with-start
                start_signal="poke" if signals else None,
            )
            # Its steps first, then each further signal on its own, as a payment arrives at a
            # balance that is waiting.
            first = min(signals, 1)
            await wait_until(lambda: _settled(handle, ours.activities, ours.timers, first), 60)
            for sent in range(2, signals + 1):
                await handle.signal("poke")
                await wait_until(functools.partial(_settled, handle, signals=sent), 60)
            if ours.completed:
                await handle.result()
            await wait_until(lambda: _settled(handle), 60)
            return await shape_of(env.client, handle.id)


def _results(name: str, ours: HistoryShape, theirs: HistoryShape, what: str) -> list[Result]:
    counts = (
        f"{ours.timers} timers, {ours.activities} activities, {ours.signals} signals, "
        f"{ours.workflow_tasks} vs {theirs.workflow_tasks} workflow tasks"
    )
    details = {
        "case": what,
        "runs": ours.runs,
        "completed": ours.completed,
        "timers": ours.timers,
        "activities": ours.activities,
        "signals": ours.signals,
        "events_by_type": ours.by_type,
        "baseline_events_by_type": theirs.by_type,
    }
    return [
        Result(
            f"history_{name}",
            ours.events,
            theirs.events,
            "events/balance",
            counts,
            TARGET,
            details,
        ),
        Result(
            f"history_bytes_{name}",
            ours.bytes,
            theirs.bytes,
            "bytes/balance",
            f"{ours.bytes / max(ours.events, 1):,.0f} vs "
            f"{theirs.bytes / max(theirs.events, 1):,.0f} bytes/event",
        ),
    ]


async def measure(quick: bool) -> list[Result]:
    results: list[Result] = []
    async with database() as db:
        slots = db.settings.temporal.max_concurrent_activities
        cases = [
            ("physician", "physician ladder, no reply, 130 days", ladder(db, PHYSICIAN, 130)),
            ("plan12", "physician balance, 12-month plan paid on time", plan12(db)),
        ]
        if not quick:
            cases.append(
                (
                    "twelve_month",
                    "twelve-month ladder, no reply, 375 days",
                    ladder(db, TWELVE_MONTH, 375),
                )
            )
        for name, what, run in cases:
            ours = await run
            theirs = await baseline(ours, slots)
            results.extend(_results(name, ours, theirs, what))
    return results


if __name__ == "__main__":
    for result in asyncio.run(measure(quick_from_argv(__doc__ or ""))):
        print(result.line())
