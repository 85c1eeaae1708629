"""Replay committed histories against today's workflow code.

A change to the workflow that alters its sequence of commands without a ``workflow.patched`` gate
makes these fail, before it can break balances that are running in production. Re-record with
``make histories`` only for a deliberate, gated change.
"""

from __future__ import annotations

import re
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

HISTORY_DIR = Path(__file__).parent / "histories"
HISTORIES = sorted(HISTORY_DIR.glob("*.json"))


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
    "plan_continued_as_new_first_run",
    "plan_continued_as_new_last_run",
    "family_text_waits_for_spacing",
    "closing_notice_sent",
}


def test_histories_are_committed_and_each_is_re_recorded_by_a_test() -> None:
    """Every scenario's history is committed, none is stale, and ``make histories`` rewrites each
    one: its name appears in a ``record_history`` call of a scenario test."""
    # Old-code histories kept across a gated change (<name>__before_<patch>) are replayed too.
    assert {p.stem for p in HISTORIES if "__before_" not in p.stem} == SCENARIOS
    sources = "".join(
        p.read_text(encoding="utf-8") for p in Path(__file__).parent.glob("test_*.py")
    )
    recorded = set(re.findall(r'(?:record_history|finish)\(\s*"(\w+)"', sources))
    assert recorded == SCENARIOS


def test_a_continue_as_new_is_replayed() -> None:
    """The replay covers a run that ended by continuing as new."""
    history = _load(HISTORY_DIR / "plan_continued_as_new_first_run.json")
    assert history.events[-1].HasField("workflow_execution_continued_as_new_event_attributes")


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
