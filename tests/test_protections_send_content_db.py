"""Content rules at the moment of sending, for the patient's state of residence (issue 18).

Before: the content rules (and Minnesota's ban on saying care will be refused for an unpaid
balance, Minn. Stat. 62J.806) were checked by ``policy check`` only; a policy version stored before
the rules (or wording that reaches a message another way) went out as written. Now the send-time
check runs the same function (``workflows.protections.message_problems``) on the rendered message
with the rules of the patient's states: a message that breaks it is not sent, the next channel of
the chain is tried, and a staff task says why.

Real PostgreSQL; messages go to the local outbox.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from activities.messaging import MessagingActivities, PolicyStore
from activities.rendering import check_templates
from config.loader import PolicyBundle, content_hash, load_policy, template_key
from config.settings import Settings
from models.orm import Communication, CommunicationStatus, StaffTask, TaskKind
from models.payloads import StepOutcome
from models.policy import Channel
from tests.fakes.accounts import make_account, step_input
from worker import build_senders

MORNING = dt.datetime(2027, 1, 12, 16, 0, tzinfo=dt.UTC)  # 10:00 in Minneapolis, 11:00 in NY
REFUSAL = "Future appointments will be cancelled until your balance is paid.\n"
MINNESOTA: dict[str, Any] = {
    "region": "MN",
    "city": "Minneapolis",
    "postal_code": "55401",
    "time_zone": "America/Chicago",
}


def _bundle(base: PolicyBundle, templates: dict[str, str], **practice: str) -> PolicyBundle:
    """A policy version as it was stored before the content rules (never through ``check``)."""
    policy = base.policy
    if practice:
        policy = policy.model_copy(update={"practice": policy.practice.model_copy(update=practice)})
    merged = base.templates | templates
    return dataclasses.replace(
        base, policy=policy, templates=merged, hash=content_hash(policy, merged)
    )


@pytest.fixture
def outbox(settings: Settings, session_factory: sessionmaker[Session]) -> MessagingActivities:
    return MessagingActivities(
        session_factory,
        build_senders(settings),
        PolicyStore(session_factory),
        clock=lambda: MORNING,
    )


@pytest.fixture
def refusing_letter() -> PolicyBundle:
    physician = load_policy("physician")
    key = template_key("statement", "en", Channel.LETTER)
    return _bundle(physician, {key: physician.templates[key] + REFUSAL})


def _tasks(session_factory: sessionmaker[Session], account_id: str) -> list[StaffTask]:
    with session_factory() as s:
        return list(
            s.scalars(
                select(StaffTask).where(
                    StaffTask.account_id == uuid.UUID(account_id),
                    StaffTask.kind == TaskKind.CONTENT,
                )
            )
        )


def _sent(session_factory: sessionmaker[Session], account_id: str) -> list[Communication]:
    with session_factory() as s:
        return list(
            s.scalars(
                select(Communication).where(
                    Communication.account_id == uuid.UUID(account_id),
                    Communication.status == CommunicationStatus.SENT,
                )
            )
        )


def test_a_minnesota_letter_saying_care_will_be_refused_is_not_sent_and_a_task_says_why(
    outbox: MessagingActivities,
    refusing_letter: PolicyBundle,
    session_factory: sessionmaker[Session],
) -> None:
    # The policy check (any state) refuses the same wording with the same function.
    assert any("until your balance is paid" in e.message for e in check_templates(refusing_letter))
    account_id = make_account(session_factory, refusing_letter, **MINNESOTA)
    result = outbox.send_step(step_input(refusing_letter, account_id, "statement-1"))
    assert result.outcome is StepOutcome.SUPPRESSED
    assert result.reasons == ["letter: wording breaks a content rule"]
    assert _sent(session_factory, account_id) == []
    (task,) = _tasks(session_factory, account_id)
    assert task.step_id == "statement-1"
    assert task.detail["template"] == "statement" and task.detail["channel"] == "letter"
    problems = task.detail["problems"]
    assert any("until your balance is paid" in p for p in problems)
    assert all("Minn. Stat. 62J.806" in p for p in problems)


def test_the_same_letter_goes_to_a_patient_whose_states_allow_it(
    outbox: MessagingActivities,
    refusing_letter: PolicyBundle,
    session_factory: sessionmaker[Session],
) -> None:
    account_id = make_account(session_factory, refusing_letter)  # lives in New York
    result = outbox.send_step(step_input(refusing_letter, account_id, "statement-1"))
    assert result.outcome is StepOutcome.SENT and result.channel is Channel.LETTER
    assert _tasks(session_factory, account_id) == []


def test_service_state_minnesota_protects_a_patient_living_elsewhere(
    outbox: MessagingActivities,
    refusing_letter: PolicyBundle,
    session_factory: sessionmaker[Session],
) -> None:
    """The more protective of residence and the policy's (service) state applies."""
    in_minnesota = dataclasses.replace(
        refusing_letter, policy=refusing_letter.policy.model_copy(update={"state": "MN"})
    )
    in_minnesota = dataclasses.replace(
        in_minnesota, hash=content_hash(in_minnesota.policy, in_minnesota.templates)
    )
    account_id = make_account(session_factory, in_minnesota)  # lives in New York
    result = outbox.send_step(step_input(in_minnesota, account_id, "statement-1"))
    assert result.outcome is StepOutcome.SUPPRESSED
    assert len(_tasks(session_factory, account_id)) == 1


def test_a_text_naming_a_specialty_is_not_sent_and_the_chain_goes_on(
    outbox: MessagingActivities, session_factory: sessionmaker[Session]
) -> None:
    """An SMS and an email subject that would name the practice's specialty (HIPAA minimum
    necessary): neither goes out; the step's letter-free chain ends suppressed, one task each."""
    bundle = _bundle(load_policy("physician"), {}, name="Northside Psychiatry")
    account_id = make_account(session_factory, bundle)
    result = outbox.send_step(step_input(bundle, account_id, "notice-1"))
    assert result.outcome is StepOutcome.SUPPRESSED
    assert result.reasons == [
        "email: wording breaks a content rule",
        "sms: wording breaks a content rule",
    ]
    tasks = _tasks(session_factory, account_id)
    assert sorted(t.detail["channel"] for t in tasks) == ["email", "sms"]
    assert all(any("psychiatry" in p for p in t.detail["problems"]) for t in tasks)

    # With a neutral name the same step goes out by email: the check blocks only wording.
    neutral = _bundle(load_policy("physician"), {}, name="Northside Medical Group")
    other = make_account(session_factory, neutral)
    sent = outbox.send_step(step_input(neutral, other, "notice-1"))
    assert sent.outcome is StepOutcome.SENT and sent.channel is Channel.EMAIL
