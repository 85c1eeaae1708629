"""The calendar lookup works inside the Temporal sandbox, for a calendar and year nobody asked yet.

The ``holidays`` library names holidays through gettext, which calls ``locale.normalize``: the
sandbox forbids locale to workflow code, so a worker whose first question about a calendar came
from inside a workflow (decoding a policy, planning a step in a new year) failed its task. This
runs a workflow through the project's own sandbox runner with a cold cache.
"""

from __future__ import annotations

import datetime as dt
import uuid

from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from models import calendars
    from models.calendars import is_holiday
    from models.policy import Calendar, ContactRules
    from worker import workflow_runner


@workflow.defn(name="test-calendar-in-sandbox")
class CalendarWorkflow:
    @workflow.run
    async def run(self, country: str) -> list[bool]:
        rules = ContactRules(calendar=Calendar(country=country))
        return [
            is_holiday(rules, dt.date(2037, 12, 25)),
            is_holiday(rules, dt.date(2037, 12, 23)),
        ]


async def test_a_cold_calendar_is_computed_inside_a_workflow(ts_env: WorkflowEnvironment) -> None:
    calendars._library.cache_clear()
    calendars._closed.cache_clear()
    calendars.holiday_names.cache_clear()
    queue = f"cal-{uuid.uuid4().hex[:8]}"
    async with Worker(
        ts_env.client,
        task_queue=queue,
        workflows=[CalendarWorkflow],
        workflow_runner=workflow_runner([CalendarWorkflow]),
    ):
        result = await ts_env.client.execute_workflow(
            CalendarWorkflow.run,
            "NZ",
            id=f"cal-{uuid.uuid4()}",
            task_queue=queue,
            execution_timeout=dt.timedelta(seconds=30),
        )
    assert result == [True, False]
