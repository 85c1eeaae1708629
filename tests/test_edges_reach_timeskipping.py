"""Returned mail, unreachable patients and re-entry without bursts (issue #19 items 3 and 5).

Each scenario imports a synthetic $300.00 balance on ``tests/policies/edges-letters.yaml``
(letter-only steps every ten days, every day open, ``on_no_channel: {wait_days: 10, then: task}``)
and runs the real workflow and activities on the time-skipping server, one workflow at a time.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.actions import ChannelEventKind, ChannelEventSignal, Installment, PlanRequest
from models.orm import StaffTask, TaskKind, TaskStatus
from models.orm import repositories as repo
from models.payloads import BalanceState, StepOutcome
from models.policy import Channel
from starter import get_account, set_payment_plan
from tests.factories import patient_day
from tests.support.scenario import Case, case, no_history

pytestmark = pytest.mark.timeskipping


def _tasks(c: Case, kind: TaskKind) -> list[StaffTask]:
    with c.session_factory() as session:
        return list(
            session.scalars(
                select(StaffTask).where(
                    StaffTask.account_id == uuid.UUID(c.account_id), StaffTask.kind == kind
                )
            )
        )


async def test_returned_letter_waits_for_a_corrected_address_with_an_address_task(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    """Before: statement-2..final notice were all "skipped: no allowed channel" and no task asked
    for a corrected address; the account stayed "escalating" with nothing left to send."""
    async with case(
        ts_env,
        settings,
        session_factory,
        tmp_path,
        no_history,
        policy="edges-letters",
        sms_consent="no",
    ) as c:
        await c.at_day(2)
        assert (await c.sent())["statement-1"][1] is Channel.LETTER
        await c.intake.channel_event(
            c.number, ChannelEventSignal(reference="RTS-1", kind=ChannelEventKind.LETTER_RETURNED)
        )
        await c.at_day(14)
        [task] = _tasks(c, TaskKind.ADDRESS)
        assert task.status is TaskStatus.OPEN
        view = await c.status()
        assert view.state is BalanceState.ESCALATING
        assert view.next_step is not None and view.next_step.step_id == "statement-2"
        assert "waiting for a usable contact point" in view.next_step.reasons[0]
        assert all(r.outcome is not StepOutcome.SKIPPED for r in view.history)
        await c.intake.channel_event(
            c.number,
            ChannelEventSignal(
                reference="ADDR-1", kind=ChannelEventKind.ADDRESS_CORRECTED, channel=Channel.LETTER
            ),
        )
        await c.at_day(15)
        sent = await c.sent()
        assert sent["statement-2"][1] is Channel.LETTER and 14 <= sent["statement-2"][0] <= 15
        assert [t.status for t in _tasks(c, TaskKind.ADDRESS)] == [TaskStatus.DONE]
        await c.intake.post_payment(c.number, 30000, f"PAY-{c.number}")
        await c.handle().result()


async def test_a_letter_step_past_its_wait_follows_on_no_channel(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    async with case(
        ts_env,
        settings,
        session_factory,
        tmp_path,
        no_history,
        policy="edges-letters",
        sms_consent="no",
    ) as c:
        await c.at_day(2)
        await c.intake.channel_event(
            c.number, ChannelEventSignal(reference="RTS-2", kind=ChannelEventKind.LETTER_RETURNED)
        )
        await c.at_day(45)
        view = await c.status()
        # then: task: the ladder stays on statement-2, no step skipped, the address task open.
        assert "a staff task asks for one" in view.waiting_for
        assert [r.step_id for r in view.history] == ["statement-1"]
        assert [t.status for t in _tasks(c, TaskKind.ADDRESS)] == [TaskStatus.OPEN]
        await c.intake.post_payment(c.number, 30000, f"PAY-{c.number}")
        await c.handle().result()
        # Paid: nothing is left to find.
        assert view.state is not BalanceState.LADDER_COMPLETE


async def test_an_unreachable_patient_is_parked_with_a_locate_task(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    """Before: with no usable channel every step was skipped and the state became
    ``ladder_complete``; nothing parked the account or asked a person to find the patient."""
    async with case(
        ts_env,
        settings,
        session_factory,
        tmp_path,
        no_history,
        policy="edges-letters",
        email="",
        phone="",
        sms_consent="no",
    ) as c:
        await c.at_day(2)
        await c.intake.channel_event(
            c.number, ChannelEventSignal(reference="RTS-3", kind=ChannelEventKind.LETTER_RETURNED)
        )
        await c.at_day(90)
        view = await c.status()
        assert view.state is BalanceState.UNREACHABLE
        assert view.waiting_for.startswith("unreachable")
        assert [r.step_id for r in view.history] == ["statement-1"]  # nothing skipped or sent
        [task] = _tasks(c, TaskKind.LOCATE)
        assert task.status is TaskStatus.OPEN and "Locate" in task.title
        account = await get_account(c.client, c.account_id)
        assert "locate_task_opened" in [e.kind for e in account.events]
        with c.session_factory() as session:  # aging shows it beside the buckets
            assert repo.unreachable_receivables(session) == (1, 30000)
        await c.intake.post_payment(c.number, 30000, f"PAY-{c.number}")
        await c.handle().result()
        assert [t.status for t in _tasks(c, TaskKind.LOCATE)] == [TaskStatus.DONE]  # paid


async def test_a_broken_plan_does_not_burst(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    """Before: the four statements that came due during the plan went out back to back, spaced
    only by the 48-hour minimum (days 41, 43, 45, 47)."""
    async with case(
        ts_env, settings, session_factory, tmp_path, no_history, policy="edges-letters"
    ) as c:
        await c.at_day(1)
        first = c.start.date()
        await set_payment_plan(
            c.client,
            c.account_id,
            PlanRequest(
                agreed_by="clerk-1",
                installments=[
                    Installment(due_on=first + dt.timedelta(days=35), amount_cents=30000)
                ],
            ),
        )
        await c.at_day(55)
        view = await c.status()
        ladder = [r for r in view.history if not r.step_id.startswith("plan")]
        sent_after = [
            (r.step_id, patient_day(r.at, c.start))
            for r in ladder
            if r.outcome is StepOutcome.SENT and r.step_id != "statement-1"
        ]
        assert len(sent_after) == 1, sent_after  # one contact, not four in eight days
        assert sent_after[0][0] == "statement-5"
        skipped = [r for r in ladder if r.outcome is StepOutcome.SKIPPED]
        assert [r.step_id for r in skipped] == ["statement-2", "statement-3", "statement-4"]
        assert all("re-entry after plan broken" in r.reasons[0] for r in skipped)
        await c.intake.post_payment(c.number, 30000, f"PAY-{c.number}")
        await c.handle().result()
