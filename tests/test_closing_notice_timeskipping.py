"""The closing notice after a cease-communication request, over months on the time-skipping
server: one letter after approval and nothing after it; nothing at all when nobody decides.

Each scenario is a synthetic $300.00 balance on ``tests/policies/staff-test.yaml`` from a stated
instant (``staff_case``); the first one's history is a committed replay history.
"""

from __future__ import annotations

import uuid

import pytest

from models.actions import ClosingNoticeStatus, ClosingPurpose, LifeEventKind, LifeEventSignal
from models.payloads import BalanceState, Decision, StepDecision, StepOutcome
from models.policy import Channel
from starter import ActionRejected, decide_step, get_account, signal
from tests.support.scenario import Case, StaffCase
from workflows.contract import Rejection

pytestmark = pytest.mark.timeskipping


async def _cease(c: Case) -> str:
    """The cease fact as the service sends it (its details stay in PostgreSQL); the task's id."""
    await signal(
        c.client,
        c.account_id,
        "life_event",
        LifeEventSignal(
            reference=f"staff:cease:{uuid.uuid4().hex[:16]}",
            kind=LifeEventKind.CEASE_COMMUNICATION,
        ),
    )
    await c.at_day(10.01)
    notice = (await get_account(c.client, c.account_id)).closing_notice
    assert notice is not None and notice.status is ClosingNoticeStatus.AWAITING_APPROVAL
    assert notice.task_id
    return notice.task_id


async def test_one_closing_letter_after_approval_then_nothing(staff_case: StaffCase) -> None:
    async with staff_case() as c:
        await c.at_day(10)
        before = await c.sent()
        task_id = await _cease(c)
        assert (await c.status()).state is BalanceState.CONTACT_STOPPED

        approve = StepDecision(
            task_id=task_id, decision=Decision.APPROVE, decided_by="sup-1", role="supervisor"
        )
        with pytest.raises(ActionRejected, match="purpose") as no_purpose:
            await decide_step(c.client, c.account_id, approve)
        assert no_purpose.value.kind is Rejection.INVALID_REQUEST
        await decide_step(
            c.client,
            c.account_id,
            approve.model_copy(update={"purpose": ClosingPurpose.TERMINATE}),
        )
        await c.at_day(11)
        account = await get_account(c.client, c.account_id)
        assert account.closing_notice is not None
        assert account.closing_notice.status is ClosingNoticeStatus.SENT
        assert account.closing_notice.purpose is ClosingPurpose.TERMINATE
        sent = await c.sent()
        assert set(sent) == {*before, "closing-notice"}
        assert sent["closing-notice"] == (10, Channel.LETTER)

        # The ladder's later steps (days 30 to 120 of the staff-test policy) never go.
        await c.at_day(150)
        history = (await c.status()).history
        assert [r.step_id for r in history if r.outcome is StepOutcome.SENT] == [
            *before,
            "closing-notice",
        ]
        assert (await c.status()).state is BalanceState.CONTACT_STOPPED
        await c.finish("closing_notice_sent")


async def test_nobody_decides_the_closing_notice_nothing_is_sent(staff_case: StaffCase) -> None:
    async with staff_case() as c:
        await c.at_day(10)
        before = await c.sent()
        await _cease(c)
        # Seven days for each approver (supervisor, then manager), then it expires.
        await c.at_day(25)
        notice = (await get_account(c.client, c.account_id)).closing_notice
        assert notice is not None and notice.status is ClosingNoticeStatus.EXPIRED
        await c.at_day(150)
        assert await c.sent() == before
        assert (await c.status()).state is BalanceState.CONTACT_STOPPED
        await c.pay_in_full()
