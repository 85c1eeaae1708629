"""New balances start with every workflow patch in force, so their histories carry no markers.

``EscalationInput.features`` (set by the starter) says how many of ``workflows.escalation.PATCHES``
hold from the first event; the committed histories (tests/histories, recorded before it existed)
replay through ``workflow.patched`` as before (tests/test_replay.py).
"""

from __future__ import annotations

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from models.payloads import EscalationInput
from tests.support.scenario import StaffCase
from worker import WORKFLOWS, workflow_runner
from workflows.escalation import FEATURES, PATCHES

pytestmark = pytest.mark.timeskipping


async def test_a_new_balance_runs_every_patch_without_a_marker_and_replays(
    staff_case: StaffCase,
) -> None:
    async with staff_case() as c:
        await c.at_day(10)
        assert set(await c.sent()) == {"statement-1", "notice-1"}
        await c.pay_in_full()
        history = await c.handle().fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    inp = pydantic_data_converter.payload_converter.from_payloads(
        list(started.input.payloads), [EscalationInput]
    )[0]
    assert inp.features == FEATURES == len(PATCHES)
    markers = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED]
    assert markers == []
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )
    await replayer.replay_workflow(history)
