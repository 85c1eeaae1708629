"""The reconciliation activity run by the ``ledger-reconcile`` schedule."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleSpec,
)

from config.settings import Settings
from models.payloads import ReconcileResult
from services.reconcile import Reconciler
from workflows.reconcile import RECONCILE_ACTIVITY, RECONCILE_WORKFLOW

SCHEDULE_ID = "dunning-reconcile"


class ReconcileActivities:
    def __init__(
        self, session_factory: sessionmaker[Session], client: Client, settings: Settings
    ) -> None:
        self._reconciler = Reconciler(session_factory, client, settings)

    @activity.defn(name=RECONCILE_ACTIVITY)
    async def reconcile_ledger(self) -> ReconcileResult:
        report = await self._reconciler.run(fix=True)
        drifts = report.drifts or []
        if drifts:
            activity.logger.warning(
                "reconcile: %d drift(s), %d repaired", len(drifts), sum(d.repaired for d in drifts)
            )
        return ReconcileResult(
            checked_accounts=report.checked_accounts,
            checked_workflows=report.checked_workflows,
            drifts=len(drifts),
            repaired=sum(d.repaired for d in drifts),
            refund_tasks=report.refund_tasks,
            pruned=report.pruned.total if report.pruned else 0,
        )


async def ensure_schedule(
    client: Client, settings: Settings, *, run_now: bool | None = None
) -> None:
    """Create the reconciliation schedule if missing, and (at worker start) run it once now."""
    schedule_id = f"{SCHEDULE_ID}-{settings.temporal.task_queue}"
    try:
        handle = await client.create_schedule(
            schedule_id,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    RECONCILE_WORKFLOW,
                    id=f"{schedule_id}-run",
                    task_queue=settings.temporal.task_queue,
                ),
                spec=ScheduleSpec(
                    intervals=[
                        ScheduleIntervalSpec(
                            every=dt.timedelta(hours=settings.ledger.reconcile_every_hours)
                        )
                    ]
                ),
            ),
        )
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(schedule_id)
    if settings.ledger.reconcile_at_start if run_now is None else run_now:
        await handle.trigger()
