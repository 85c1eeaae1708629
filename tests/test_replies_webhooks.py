"""Inbound texts understood, not matched: the Twilio webhook acts on the classifier's outcome.

Against the app and a real worker on the dev server, with Twilio's own signature algorithm.
Replies speak the account's language and are signed by the account's policy practice; every
revocation and wrong number is in the account's events and the audit trail; an unclear message
opens a staff task instead of a guess.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.orm import (
    ApiRole,
    AuditEvent,
    ChannelPreference,
    Deliverability,
    StaffTask,
    TaskKind,
    TaskStatus,
)
from models.orm import repositories as repo
from models.policy import Channel
from starter import get_account
from tests.api_support import (
    Api,
    account_body,
    api_settings,
    ec_key_pair,
    running_api,
    synthetic_phone,
)
from tests.test_webhooks_providers import _twilio

pytestmark = pytest.mark.devserver
PATH = "/webhooks/twilio/inbound"


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment, settings: Settings, session_factory: sessionmaker[Session]
) -> AsyncIterator[Api]:
    cfg = api_settings(settings, ec_key_pair()[1])
    async with running_api(dev_env.client, cfg, session_factory) as a:
        yield a


async def _account(api: Api, policy: str, **guarantor: Any) -> tuple[str, str]:
    number = f"R-{uuid.uuid4().hex[:8].upper()}"
    phone = synthetic_phone()
    body = account_body(phone=phone, **guarantor)
    body["policy"] = policy
    r = await api.http.put(f"/accounts/{number}", json=body, headers=api.auth(ApiRole.INTEGRATION))
    assert r.status_code == 200, r.text
    return number, phone


async def _text(api: Api, phone: str, text: str) -> str:
    body, headers = _twilio(
        PATH,
        {"MessageSid": "SM" + uuid.uuid4().hex, "From": phone, "To": "+15550100000", "Body": text},
    )
    r = await api.http.post(PATH, content=body, headers=headers)
    assert r.status_code == 200, r.text
    return r.text


def _prefs(api: Api, number: str) -> dict[Channel, ChannelPreference]:
    with api.session_factory() as session:
        account = repo.account_by_number(session, number)
        assert account is not None
        rows = session.scalars(
            select(ChannelPreference).where(ChannelPreference.guarantor_id == account.guarantor_id)
        ).all()
        return {p.channel: p for p in rows}


async def _events(api: Api, number: str) -> list[str]:
    with api.session_factory() as session:
        account = repo.account_by_number(session, number)
        assert account is not None
        account_id = str(account.id)
    state = await get_account(api.client, account_id)
    return [f"{e.kind}:{e.detail}" for e in state.events]


def _audit(api: Api, number: str) -> list[str]:
    with api.session_factory() as session:
        account = repo.account_by_number(session, number)
        assert account is not None
        return list(
            session.scalars(
                select(AuditEvent.action).where(AuditEvent.account_id == account.id)
            ).all()
        )


async def test_spanish_revocation_is_honoured_and_answered_in_spanish_by_the_hospital(
    api: Api,
) -> None:
    number, phone = await _account(api, "hospital-501r", language="es")
    twiml = await _text(api, phone, "No más")
    # The hospital's own name and number, in Spanish; not the deployment's default practice.
    assert "Lakeside Community Hospital" in twiml and "(555) 010-0300" in twiml
    assert "no recibirá más mensajes" in twiml
    assert api.settings.practice.name not in twiml
    pref = _prefs(api, number)[Channel.SMS]
    assert pref.opted_out_at is not None and not pref.consent
    assert "opted_out:sms" in await _events(api, number)
    assert "opted_out" in _audit(api, number)


@pytest.mark.parametrize(
    "text", ["Parar", "BASTA", "Stop contacting me", "STOP!!! I paid", "I want you to stop"]
)
async def test_phrasings_that_were_ignored_now_revoke(api: Api, text: str) -> None:
    number, phone = await _account(api, "physician")
    twiml = await _text(api, phone, text)
    assert "not receive more texts" in twiml
    assert _prefs(api, number)[Channel.SMS].opted_out_at is not None
    assert "opted_out:sms" in await _events(api, number)


async def test_wrong_number_stops_texts_and_calls_and_is_an_event(api: Api) -> None:
    number, phone = await _account(api, "hospital-501r", language="en")
    twiml = await _text(api, phone, "Sorry, wrong number")
    assert "not text or call this number" in twiml and "Lakeside Community Hospital" in twiml
    prefs = _prefs(api, number)
    for channel in (Channel.SMS, Channel.CALL):
        assert prefs[channel].deliverability is Deliverability.UNDELIVERABLE, channel
    assert "wrong_number:sms" in await _events(api, number)
    assert "wrong_number" in _audit(api, number)


async def test_unclear_message_opens_a_staff_task_and_changes_no_consent(api: Api) -> None:
    number, phone = await _account(api, "physician")
    text = "Can I stop by the office on Friday to pay?"
    twiml = await _text(api, phone, text)
    assert "<Message>" not in twiml  # no guess, no automatic answer
    pref = _prefs(api, number)[Channel.SMS]
    assert pref.opted_out_at is None and pref.consent
    with api.session_factory() as session:
        account = repo.account_by_number(session, number)
        assert account is not None
        tasks = session.scalars(
            select(StaffTask).where(
                StaffTask.account_id == account.id, StaffTask.kind == TaskKind.REPLY
            )
        ).all()
    assert len(tasks) == 1 and tasks[0].status is TaskStatus.OPEN
    assert tasks[0].detail["text"] == text and tasks[0].detail["channel"] == "sms"
    assert "reply_needs_person" in _audit(api, number)


async def test_start_and_help_are_kept(api: Api) -> None:
    number, phone = await _account(api, "hospital-501r", language="es")
    await _text(api, phone, "STOP")
    assert _prefs(api, number)[Channel.SMS].opted_out_at is not None
    twiml = await _text(api, phone, "START")
    assert "activos de nuevo" in twiml
    assert _prefs(api, number)[Channel.SMS].consent
    twiml = await _text(api, phone, "Ayuda")
    assert "(555) 010-0300" in twiml and "$" not in twiml
