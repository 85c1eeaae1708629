"""Call tasks: opened by send_step with a script and a summary, closed by staff with an outcome."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from activities.calls import CallTaskError, record_call_outcome
from activities.messaging import MessagingActivities, PolicyStore
from config.loader import load_policy
from config.settings import Settings
from models.orm import ChannelPreference, Deliverability, StaffTask, TaskKind, TaskStatus
from models.payloads import CallResult, StepOutcome
from models.policy import Channel
from tests.fakes.accounts import make_account, step_input
from tests.support.clock import MORNING
from worker import build_senders


def _open_task(settings: Settings, session_factory: sessionmaker[Session]) -> tuple[str, StaffTask]:
    bundle = load_policy("physician")
    messaging = MessagingActivities(
        session_factory,
        build_senders(settings),
        PolicyStore(session_factory),
        clock=lambda: MORNING,
    )
    account_id = make_account(session_factory, bundle, first_name="Robin")
    step = step_input(bundle, account_id, "call-1", balance_cents=5500)
    result = messaging.send_step(step)
    assert result.outcome is StepOutcome.SENT and result.channel is Channel.CALL
    assert messaging.send_step(step).communication_id == result.communication_id
    with session_factory() as s:
        tasks = s.scalars(
            select(StaffTask).where(
                StaffTask.account_id == uuid.UUID(account_id), StaffTask.kind == TaskKind.CALL
            )
        ).all()
    assert len(tasks) == 1  # a retried step opens no second task
    return account_id, tasks[0]


def test_call_task_has_script_and_summary(
    settings: Settings,
    session_factory: sessionmaker[Session],
) -> None:
    _, task = _open_task(settings, session_factory)
    assert task.status is TaskStatus.OPEN and task.step_id == "call-1"
    script = task.detail["script"]
    assert "Voicemail (limited content" in script and "Riverside Family Medicine" in script
    voicemail = script.split("Voicemail", 1)[1]
    assert "$" not in voicemail and "Office visit" not in voicemail  # 12 CFR 1006.2(j)
    summary = task.detail["summary"]
    assert summary["balance_cents"] == 5500 and summary["visits"] == 1
    assert summary["oldest_service_date"] == "2026-10-01"
    assert sum(summary["aging_cents"].values()) == 5500
    assert "promise_to_pay" in task.detail["outcomes"]


def test_promise_to_pay_is_recorded_once_and_becomes_a_signal(
    settings: Settings,
    session_factory: sessionmaker[Session],
) -> None:
    _, task = _open_task(settings, session_factory)
    called = MORNING + dt.timedelta(hours=1)
    with session_factory.begin() as s:
        with pytest.raises(CallTaskError):
            record_call_outcome(
                s, task.id, CallResult.PROMISE_TO_PAY, called_at=called, recorded_by="clerk-1"
            )
        signal = record_call_outcome(
            s,
            task.id,
            CallResult.PROMISE_TO_PAY,
            called_at=called,
            recorded_by="clerk-1",
            promised_date=dt.date(2027, 1, 30),
            promised_cents=5500,
            note="will pay after payday",
        )
    assert signal.task_id == str(task.id) and signal.step_id == "call-1"
    assert signal.conversation and signal.promised_date == dt.date(2027, 1, 30)
    assert "payday" not in signal.model_dump_json()  # staff notes stay in the database
    with session_factory.begin() as s:
        again = record_call_outcome(
            s,
            task.id,
            CallResult.PROMISE_TO_PAY,
            called_at=called,
            recorded_by="clerk-2",
            promised_date=dt.date(2027, 1, 30),
            promised_cents=5500,
        )
        assert again == signal
        with pytest.raises(CallTaskError):
            record_call_outcome(
                s, task.id, CallResult.VOICEMAIL, called_at=called, recorded_by="clerk-2"
            )
    with session_factory() as s:
        stored = s.get(StaffTask, task.id)
        assert stored is not None and stored.status is TaskStatus.DONE
        assert stored.detail["outcome"]["result"] == "promise_to_pay"
        assert stored.decided_by == "clerk-1" and stored.reason == "will pay after payday"


def test_wrong_number_marks_the_phone_for_calls_and_texts(
    settings: Settings,
    session_factory: sessionmaker[Session],
) -> None:
    account_id, task = _open_task(settings, session_factory)
    with session_factory.begin() as s:
        signal = record_call_outcome(
            s, task.id, CallResult.WRONG_NUMBER, called_at=MORNING, recorded_by="clerk-1"
        )
    assert not signal.conversation
    with session_factory() as s:
        from models.orm import Account

        account = s.get(Account, uuid.UUID(account_id))
        assert account is not None
        prefs = {
            p.channel: p
            for p in s.scalars(
                select(ChannelPreference).where(
                    ChannelPreference.guarantor_id == account.guarantor_id
                )
            )
        }
    assert prefs[Channel.CALL].deliverability is Deliverability.UNDELIVERABLE
    assert prefs[Channel.SMS].deliverability is Deliverability.UNDELIVERABLE
