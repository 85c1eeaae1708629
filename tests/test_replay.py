"""Replay committed histories against today's workflow code.

A change to the workflow that alters its sequence of commands without a ``workflow.patched`` gate
makes these fail, before it can break balances that are running in production. Re-record with
``make histories`` only for a deliberate, gated change.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker import WORKFLOWS, workflow_runner
from workflows.escalation import WORKFLOW_NAME

with workflow.unsafe.imports_passed_through():
    from models.payloads import CloseBalanceInput, EscalationInput, EscalationResult

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def _load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))


SCENARIOS = {
    "ladder_approved_and_placed",
    "paid_mid_ladder_with_new_charge",
    "hardship_granted_mid_ladder",
    "plan_missed_installment",
    "settlement_paid",
    "settlement_expired",
    "write_off_denied_then_approved",
    "referral_after_501r_wait",
    "dispute_hold_resumed",
    "stop_then_letters",
    "returned_letter_then_email",
    "bankruptcy_stops",
    "call_outcomes",
    "paid_with_open_request",
}


def test_histories_are_committed() -> None:
    assert {p.stem for p in HISTORIES} >= SCENARIOS


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replay(path: Path) -> None:
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )
    await replayer.replay_workflow(_load(path))


@workflow.defn(name=WORKFLOW_NAME, sandboxed=False)
class ReorderedEscalation:
    """Closes the balance before anything else: a changed command sequence, with no patch gate."""

    @workflow.run
    async def run(self, inp: EscalationInput) -> EscalationResult:
        await workflow.execute_activity(
            "close_balance",
            CloseBalanceInput(account_id=inp.account_id, state="paid", balance_cents=0),
            start_to_close_timeout=timedelta(seconds=5),
        )
        raise AssertionError("unreachable in replay")


async def test_replay_detects_an_ungated_change() -> None:
    """Proves the replay test can fail: the same history against a reordered workflow."""
    replayer = Replayer(workflows=[ReorderedEscalation], data_converter=pydantic_data_converter)
    with pytest.raises(workflow.NondeterminismError):
        await replayer.replay_workflow(_load(HISTORIES[0]))
