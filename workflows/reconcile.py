"""The ``ledger-reconcile`` workflow: one reconciliation pass, run by a Temporal schedule.

The schedule (daily by default, and triggered once when a worker starts) starts this workflow;
it runs the ``reconcile_ledger`` activity, which compares the ledger with the balance workflows
and repairs what drifted (``services.reconcile``).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from models.payloads import ReconcileResult

RECONCILE_WORKFLOW = "ledger-reconcile"
RECONCILE_ACTIVITY = "reconcile_ledger"
RECONCILE_TIMEOUT = timedelta(minutes=30)


@workflow.defn(name=RECONCILE_WORKFLOW)
class LedgerReconcileWorkflow:
    @workflow.run
    async def run(self) -> ReconcileResult:
        result: ReconcileResult = await workflow.execute_activity(
            RECONCILE_ACTIVITY,
            start_to_close_timeout=RECONCILE_TIMEOUT,
            retry_policy=RetryPolicy(maximum_attempts=3),
            result_type=ReconcileResult,
        )
        return result
