"""Reg F's call frequency cap, 12 CFR 1006.14(b)(2): at most 7 calls in 7 days.

Proven at both places the rule binds: when the ladder plans a call (the pure decision core the
workflow, the preview and the simulation share) and when the call is about to go out (the send-time
check over the outbox). In each, 7 calls in the rolling window still allow the step that would be
the 7th, and block the 8th until the oldest call leaves the window.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.exceptions import ApplicationError

from activities.messaging import MessagingActivities, PolicyStore
from config.loader import load_policy
from config.settings import Settings
from models.orm import Communication, CommunicationStatus
from models.payloads import ContactProfile, LadderState, StepOutcome, StepRecord
from models.policy import Channel, Policy
from tests.fakes.accounts import make_account, step_input
from tests.support.clock import MORNING
from worker import build_senders
from workflows.decisions import schedule

CAP_REASON = "cap of 7 call in 7 days"
WEEK = dt.timedelta(days=7)


def _calls_policy() -> Policy:
    """Eight call steps on one day, every day open, no spacing: only the cap can hold a call."""
    return Policy.model_validate(
        {
            "name": "calls",
            "practice": {"name": "Synthetic Clinic", "phone": "(555) 010-9999"},
            "thresholds": {"minimum_balance": "5"},
            "contact": {
                "practice_time_zone": "America/New_York",
                "default_patient_time_zone": "America/New_York",
                "business_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "min_spacing_hours": 0,
                "caps": [{"channel": "call", "max": 7, "per_days": 7}],
            },
            "steps": [
                {"id": f"call-{i}", "day": 0, "channels": ["call"], "template": "t"}
                for i in range(1, 9)
            ],
        }
    )


def _state_after_calls(calls: int) -> LadderState:
    """A ladder that started at MORNING and made ``calls`` calls, one an hour from then on."""
    state = LadderState(balance_cents=5500, anchor_at=MORNING, opened_at=MORNING)
    state.history = [
        StepRecord(
            step_id=f"call-{i + 1}",
            outcome=StepOutcome.SENT,
            at=MORNING + dt.timedelta(hours=i),
            channel=Channel.CALL,
        )
        for i in range(calls)
    ]
    return state


@pytest.mark.parametrize(("made", "blocked"), [(6, False), (7, True)])
def test_plan_allows_the_7th_call_and_moves_the_8th_out_of_the_window(
    made: int, blocked: bool
) -> None:
    policy = _calls_policy()
    now = MORNING + dt.timedelta(hours=made)  # an hour after the last call; 15:00 or 16:00 EST
    planned = schedule(
        policy, made, _state_after_calls(made), ContactProfile(), now, [Channel.CALL]
    )
    if blocked:
        # The first call leaves the rolling window exactly 7 days after it was made.
        assert planned.at == MORNING + WEEK, planned
        assert CAP_REASON in planned.reasons
    else:
        assert planned.at == now, planned
        assert CAP_REASON not in planned.reasons


def _record_calls(session_factory: sessionmaker[Session], account_id: str, calls: int) -> None:
    """``calls`` call attempts already made on the account in the past 7 days."""
    with session_factory.begin() as session:
        for i in range(calls):
            session.add(
                Communication(
                    idempotency_key=f"{account_id}/earlier/call-{i}",
                    account_id=uuid.UUID(account_id),
                    step_id=f"call-{i}",
                    policy_hash="0" * 64,
                    channel=Channel.CALL,
                    template="call",
                    status=CommunicationStatus.SENT,
                    sent_at=MORNING - dt.timedelta(days=6, hours=-i),
                )
            )


@pytest.mark.parametrize(("made", "blocked"), [(6, False), (7, True)])
def test_send_time_allows_the_7th_call_and_holds_the_8th(
    settings: Settings, session_factory: sessionmaker[Session], made: int, blocked: bool
) -> None:
    bundle = load_policy("physician")  # caps: 7 calls in 7 days
    messaging = MessagingActivities(
        session_factory,
        build_senders(settings),
        PolicyStore(session_factory),
        clock=lambda: MORNING,
    )
    account_id = make_account(session_factory, bundle)
    _record_calls(session_factory, account_id, made)
    step = step_input(bundle, account_id, "call-1", channels=[Channel.CALL])
    if blocked:
        with pytest.raises(ApplicationError) as caught:
            messaging.send_step(step)
        assert caught.value.type == "ContactCapReached"
        # It may retry when the oldest call leaves the window: 6 days after it, 1 day from now.
        assert caught.value.next_retry_delay == dt.timedelta(days=1)
        with session_factory() as session:
            claimed = session.scalars(
                select(Communication).where(Communication.idempotency_key == step.idempotency_key)
            ).all()
        assert claimed == []  # nothing claimed, no call task opened
    else:
        result = messaging.send_step(step)
        assert result.outcome is StepOutcome.SENT and result.channel is Channel.CALL
