"""The check at the moment of sending is the decision core's, on fresh data (issue #19 item 6),
and a send cut off mid-request opens a staff task while the local outbox never does (#12 item 5).

Real PostgreSQL, the real Twilio SDK against the local fake server, the local outbox on disk.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.exceptions import ApplicationError

from activities.messaging import MessagingActivities, PolicyStore, attempt_key
from config.loader import PolicyBundle, load_policy
from config.settings import Settings
from models.orm import Communication, CommunicationStatus, StaffTask, TaskKind
from models.payloads import StepOutcome
from models.policy import Channel
from tests.fakes.accounts import make_account, step_input
from tests.fakes.providers import (
    DROP,
    TWILIO_SID,
    TWILIO_TOKEN,
    FakeProviders,
    fake_providers,
)
from worker import build_senders
from workflows import decisions

MORNING = dt.datetime(2027, 1, 12, 15, 0, tzinfo=dt.UTC)  # 10:00 in New York, a Tuesday


class Clock:
    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    with fake_providers() as f:
        yield f


@pytest.fixture
def physician() -> PolicyBundle:
    return load_policy("physician")


@pytest.fixture
def clock() -> Clock:
    return Clock(MORNING)


@pytest.fixture
def twilio(
    settings: Settings, fake: FakeProviders, session_factory: sessionmaker[Session], clock: Clock
) -> MessagingActivities:
    configured = settings.model_copy(
        update={
            "twilio": settings.twilio.model_copy(
                update={
                    "account_sid": TWILIO_SID,
                    "auth_token": SecretStr(TWILIO_TOKEN),
                    "messaging_service_sid": "MG" + "1" * 32,
                    "base_url": fake.base_url,
                }
            )
        }
    )
    return MessagingActivities(
        session_factory, build_senders(configured), PolicyStore(session_factory), clock=clock
    )


@pytest.fixture
def outbox(
    settings: Settings, session_factory: sessionmaker[Session], clock: Clock
) -> MessagingActivities:
    return MessagingActivities(
        session_factory, build_senders(settings), PolicyStore(session_factory), clock=clock
    )


def _rows(session_factory: sessionmaker[Session], account_id: str) -> list[Communication]:
    with session_factory() as s:
        return list(
            s.scalars(
                select(Communication)
                .where(Communication.account_id == uuid.UUID(account_id))
                .order_by(Communication.created_at)
            )
        )


def _tasks(session_factory: sessionmaker[Session], account_id: str) -> list[StaffTask]:
    with session_factory() as s:
        return list(
            s.scalars(select(StaffTask).where(StaffTask.account_id == uuid.UUID(account_id)))
        )


def test_cap_boundary_counts_a_contact_from_when_it_was_due_as_the_schedule_does(
    fake: FakeProviders,
    twilio: MessagingActivities,
    physician: PolicyBundle,
    session_factory: sessionmaker[Session],
    clock: Clock,
) -> None:
    """Before: the activity counted the first text from when its retry got it out (5 minutes
    late), the schedule from when it was due; at the schedule's free moment the activity still
    found the cap reached and the step went out a retry later."""
    account_id = make_account(session_factory, physician, email=None)
    first_due = MORNING - dt.timedelta(days=7)
    clock.at = first_due + dt.timedelta(minutes=5)  # a retry, five minutes after it was due
    first = twilio.send_step(step_input(physician, account_id, "notice-1", due_at=first_due))
    assert first.channel is Channel.SMS
    second_due = MORNING - dt.timedelta(days=2)
    clock.at = second_due
    twilio.send_step(step_input(physician, account_id, "reminder-1", due_at=second_due))

    # The decision core (2 texts in 7 days) frees the channel exactly at MORNING.
    cap = next(c for c in physician.policy.contact.caps if c.channel is Channel.SMS)
    assert decisions.cap_free_at([first_due, second_due], cap.max, cap.per_days, MORNING) == (
        MORNING
    )
    clock.at = MORNING
    third = twilio.send_step(
        step_input(physician, account_id, "notice-1", episode="third", due_at=MORNING)
    )
    assert third.outcome is StepOutcome.SENT and third.channel is Channel.SMS
    assert len(fake.of("twilio")) == 3


def test_call_opt_out_is_one_rule_for_schedule_and_send(
    twilio: MessagingActivities,
    physician: PolicyBundle,
    session_factory: sessionmaker[Session],
) -> None:
    """Before: the schedule planned calls to a patient who opted out of calls (the activity
    refused them); now both answer with the core's ``channel_block``."""
    from sqlalchemy.orm import selectinload

    from models.orm import Account, Guarantor
    from models.orm import repositories as repo

    account_id = make_account(
        session_factory, physician, prefs={Channel.CALL: {"opted_out_at": MORNING}}
    )
    with session_factory() as s:
        account = s.get(Account, uuid.UUID(account_id))
        assert account is not None
        guarantor = s.scalars(
            select(Guarantor)
            .where(Guarantor.id == account.guarantor_id)
            .options(selectinload(Guarantor.channels))
        ).one()
        profile = repo.contact_profile(guarantor)
    assert decisions.channel_block(physician.policy, Channel.CALL, profile) == "call: opted out"
    result = twilio.send_step(
        step_input(physician, account_id, "notice-1", channels=[Channel.CALL], due_at=MORNING)
    )
    assert result.outcome is StepOutcome.SUPPRESSED
    assert result.reasons == ["call: opted out"]


def test_quiet_hours_at_send_time_hold_in_every_known_location(
    fake: FakeProviders,
    twilio: MessagingActivities,
    physician: PolicyBundle,
    session_factory: sessionmaker[Session],
    clock: Clock,
) -> None:
    """A New York number with a Los Angeles address: 10:00 Eastern is 07:00 in Los Angeles.

    Before: the activity looked only at the stored zone (New York) and texted.
    """
    account_id = make_account(
        session_factory,
        physician,
        email=None,
        phone="+12125550123",
        postal_code="90012",
        region="CA",
        city="Los Angeles",
        time_zone="",
    )
    step = step_input(physician, account_id, "notice-1", channels=[Channel.SMS], due_at=MORNING)
    with pytest.raises(ApplicationError) as err:
        twilio.send_step(step)
    assert err.value.type == "QuietHours"
    assert err.value.next_retry_delay == dt.timedelta(hours=1)  # 08:00 in Los Angeles
    assert fake.of("twilio") == []
    clock.at = MORNING + dt.timedelta(hours=1)
    assert twilio.send_step(step).outcome is StepOutcome.SENT


def test_a_send_cut_off_mid_request_is_unconfirmed_and_opens_a_staff_task(
    fake: FakeProviders,
    twilio: MessagingActivities,
    physician: PolicyBundle,
    session_factory: sessionmaker[Session],
) -> None:
    """Before: the row was marked unconfirmed and reported as sent; no one was asked to check."""
    account_id = make_account(session_factory, physician, email=None)
    fake.script("twilio", DROP)
    step = step_input(physician, account_id, "notice-1", channels=[Channel.SMS], due_at=MORNING)
    result = twilio.send_step(step)
    [row] = _rows(session_factory, account_id)
    assert row.status is CommunicationStatus.UNCONFIRMED
    assert result.communication_id == str(row.id)
    [task] = _tasks(session_factory, account_id)
    assert task.kind is TaskKind.UNCONFIRMED and task.step_id == "notice-1"
    assert task.detail["communication_id"] == str(row.id)
    assert task.detail["provider"] == "twilio" and task.detail["channel"] == "sms"
    assert "+1555" not in str(task.detail)  # what is known, never the recipient
    # A retry of the activity neither sends again nor opens a second task.
    assert twilio.send_step(step).communication_id == str(row.id)
    assert len(fake.of("twilio")) == 1
    assert len(_tasks(session_factory, account_id)) == 1


def test_the_local_outbox_is_never_unconfirmed(
    outbox: MessagingActivities,
    physician: PolicyBundle,
    session_factory: sessionmaker[Session],
) -> None:
    """A claim the worker died on before the outbox wrote it: nothing can have left.

    Before: the outbox was treated as a network provider and the step ended unconfirmed.
    """
    account_id = make_account(session_factory, physician, email=None)
    step = step_input(physician, account_id, "notice-1", channels=[Channel.SMS], due_at=MORNING)
    with session_factory.begin() as s:
        s.add(
            Communication(
                idempotency_key=attempt_key(step.idempotency_key, Channel.SMS),
                account_id=uuid.UUID(account_id),
                step_id=step.step_id,
                policy_hash=step.policy_hash,
                channel=Channel.SMS,
                template=step.template,
                status=CommunicationStatus.PENDING,
                recipient="+15550100123",
                body="claimed, never written",
            )
        )
    result = outbox.send_step(step)
    assert result.outcome is StepOutcome.SENT
    [row] = _rows(session_factory, account_id)
    assert row.status is CommunicationStatus.SENT and row.provider == "outbox"
    assert _tasks(session_factory, account_id) == []
