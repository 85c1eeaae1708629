"""send_step through the real twilio and sendgrid libraries, against a local fake of their APIs.

Each test builds the senders with ``worker.build_senders`` from settings that carry credentials and
a base URL on 127.0.0.1, runs the one activity of a step on a real PostgreSQL, and asserts on the
exact HTTP requests the fake received.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker
from temporalio.exceptions import ApplicationError

from activities.messaging import MessagingActivities, PolicyStore
from config.loader import PolicyBundle, load_policy
from config.settings import Settings
from models.actions import ChannelEventKind, ChannelEventSignal
from models.orm import (
    AuditEvent,
    ChannelPreference,
    Communication,
    CommunicationStatus,
    Deliverability,
    Guarantor,
)
from models.payloads import StepOutcome
from models.policy import Channel
from models.replies import ReplyIntent, classify, reply_text
from services.unsubscribe import secret_for, sign
from starter import record_channel_event
from tests.api_support import synthetic_phone
from tests.fakes.accounts import make_account, step_input
from tests.fakes.providers import (
    SENDGRID_KEY,
    TWILIO_SID,
    TWILIO_TOKEN,
    FakeProviders,
    fake_providers,
    sendgrid_error,
    twilio_error,
)
from tests.support.clock import MORNING
from worker import build_senders

# Tuesday 12 January 2027, 10:00 in New York: inside the allowed hours of every policy.
SERVICE = "MG" + "1" * 32
PUBLIC = "https://billing.example.test"


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    with fake_providers() as f:
        yield f


@pytest.fixture
def provider_settings(settings: Settings, fake: FakeProviders) -> Settings:
    return settings.model_copy(
        update={
            "sendgrid": settings.sendgrid.model_copy(
                update={
                    "api_key": SecretStr(SENDGRID_KEY),
                    "base_url": fake.base_url,
                    "from_email": "billing@clinic.example.test",
                    "sandbox_mode": True,
                }
            ),
            "twilio": settings.twilio.model_copy(
                update={
                    "account_sid": TWILIO_SID,
                    "auth_token": SecretStr(TWILIO_TOKEN),
                    "messaging_service_sid": SERVICE,
                    "base_url": fake.base_url,
                    "status_callback_url": f"{PUBLIC}/webhooks/twilio/status",
                }
            ),
            "api": settings.api.model_copy(update={"public_url": PUBLIC}),
        }
    )


@pytest.fixture
def physician() -> PolicyBundle:
    return load_policy("physician")


class Clock:
    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock(MORNING)


@pytest.fixture
def messaging(
    provider_settings: Settings, session_factory: sessionmaker[Session], clock: Clock
) -> MessagingActivities:
    return MessagingActivities(
        session_factory, build_senders(provider_settings), PolicyStore(session_factory), clock=clock
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


def _prefs(
    session_factory: sessionmaker[Session], account_id: str
) -> dict[Channel, ChannelPreference]:
    from models.orm import Account

    with session_factory() as s:
        account = s.get(Account, uuid.UUID(account_id))
        assert account is not None
        return {
            p.channel: p
            for p in s.scalars(
                select(ChannelPreference).where(
                    ChannelPreference.guarantor_id == account.guarantor_id
                )
            )
        }


def _guarantor(session_factory: sessionmaker[Session], account_id: str) -> Guarantor:
    from models.orm import Account

    with session_factory() as s:
        account = s.get(Account, uuid.UUID(account_id))
        assert account is not None
        g = s.get(Guarantor, account.guarantor_id)
        assert g is not None
        return g


def test_email_step_sends_one_request_with_text_html_unsubscribe_and_no_patient_data(
    fake: FakeProviders,
    provider_settings: Settings,
    messaging: MessagingActivities,
    physician: PolicyBundle,
    session_factory: sessionmaker[Session],
) -> None:
    account_id = make_account(session_factory, physician, first_name="Quinta", last_name="Examplar")
    step = step_input(physician, account_id, "notice-1")
    result = messaging.send_step(step)
    assert result.outcome is StepOutcome.SENT and result.channel is Channel.EMAIL

    # A retried or replayed activity finds the row and sends nothing.
    again = messaging.send_step(step)
    assert again.communication_id == result.communication_id
    sent = fake.of("sendgrid")
    assert len(sent) == 1 and fake.of("twilio") == []

    request = sent[0]
    assert request.method == "POST" and request.path == "/v3/mail/send"
    assert request.headers["Authorization"] == f"Bearer {SENDGRID_KEY}"
    mail = request.json
    guarantor = _guarantor(session_factory, account_id)
    assert mail["personalizations"][0]["to"] == [{"email": guarantor.email}]
    assert mail["from"] == {
        "email": "billing@clinic.example.test",
        "name": "Riverside Family Medicine",
    }
    assert mail["subject"] == "Your statement from Riverside Family Medicine is ready"
    content = {c["type"]: c["value"] for c in mail["content"]}
    assert set(content) == {"text/plain", "text/html"}
    # The link names the message by a signed token (services.unsubscribe), never the address.
    assert result.communication_id is not None
    token = sign(secret_for(provider_settings), result.communication_id)
    unsubscribe = f"{PUBLIC}/unsubscribe/email/{token}"
    for body in content.values():
        assert "Hello Quinta" in body and "$55.00" in body and unsubscribe in body
    assert mail["headers"]["List-Unsubscribe"] == f"<{unsubscribe}>"
    assert mail["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert mail["tracking_settings"]["open_tracking"] == {"enable": False}
    # Only the opaque outbox id identifies the message at SendGrid.
    assert mail["custom_args"] == {"outbox_id": result.communication_id}
    assert mail["categories"] == ["dunning"]
    labels = json.dumps([mail["custom_args"], mail["categories"]])
    for secret in ("Quinta", "Examplar", guarantor.email or "?", "55.00", "5500", "T-"):
        assert secret not in labels

    rows = _rows(session_factory, account_id)
    assert [(r.channel, r.status) for r in rows] == [(Channel.EMAIL, CommunicationStatus.SENT)]
    assert rows[0].idempotency_key == f"{step.idempotency_key}:email"
    assert rows[0].provider == "sendgrid" and rows[0].provider_id


def test_sms_step_by_messaging_service_with_status_callback_and_minimum_text(
    fake: FakeProviders,
    messaging: MessagingActivities,
    physician: PolicyBundle,
    session_factory: sessionmaker[Session],
) -> None:
    account_id = make_account(session_factory, physician, email=None, first_name="Quinta")
    step = step_input(physician, account_id, "notice-1", balance_cents=12345)
    result = messaging.send_step(step)
    messaging.send_step(step)
    assert result.channel is Channel.SMS
    assert fake.of("sendgrid") == []
    texts = fake.of("twilio")
    assert len(texts) == 1
    request = texts[0]
    assert request.path == f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
    form = request.form
    assert set(form) == {"To", "Body", "MessagingServiceSid", "StatusCallback"}
    assert form["To"] == "+12125550123" and form["MessagingServiceSid"] == SERVICE
    assert form["StatusCallback"] == (
        f"{PUBLIC}/webhooks/twilio/status?outbox_id={result.communication_id}"
    )
    body = form["Body"]
    assert body.startswith("Riverside Family Medicine:") and "Reply STOP" in body
    for forbidden in ("Quinta", "Synthetic", "123.45", "Office visit"):
        assert forbidden not in body  # HIPAA minimum necessary
    row = _rows(session_factory, account_id)[0]
    assert row.provider == "twilio" and (row.provider_id or "").startswith("SM")


def test_fallback_bounced_email_then_opted_out_sms_then_nothing_left(
    fake: FakeProviders,
    messaging: MessagingActivities,
    physician: PolicyBundle,
    session_factory: sessionmaker[Session],
) -> None:
    account_id = make_account(session_factory, physician)
    fake.script("sendgrid", sendgrid_error(400, "personalizations.0.to.0.email"))
    fake.script("twilio", twilio_error(400, 21610))
    step = step_input(physician, account_id, "notice-1")
    result = messaging.send_step(step)
    assert result.outcome is StepOutcome.SUPPRESSED and result.channel is None
    assert result.reasons == ["email: bounced (sendgrid 400)", "sms: opted out (twilio 21610)"]
    assert len(fake.of("sendgrid")) == 1 and len(fake.of("twilio")) == 1

    prefs = _prefs(session_factory, account_id)
    assert prefs[Channel.EMAIL].deliverability is Deliverability.BOUNCED
    assert prefs[Channel.SMS].opted_out_at is not None and not prefs[Channel.SMS].consent
    rows = _rows(session_factory, account_id)
    assert [(r.channel, r.status) for r in rows] == [
        (Channel.EMAIL, CommunicationStatus.FAILED),
        (Channel.SMS, CommunicationStatus.FAILED),
        (None, CommunicationStatus.SUPPRESSED),
    ]

    # The next step does not try either channel again: checked at the moment of sending.
    later = messaging.send_step(step_input(physician, account_id, "reminder-1"))
    assert later.outcome is StepOutcome.SUPPRESSED
    assert later.reasons == ["email: bounced", "sms: opted out"]
    assert len(fake.of("sendgrid")) == 1 and len(fake.of("twilio")) == 1


def test_landline_for_sms_marks_it_undeliverable_and_falls_back_to_email(
    fake: FakeProviders,
    messaging: MessagingActivities,
    physician: PolicyBundle,
    session_factory: sessionmaker[Session],
) -> None:
    account_id = make_account(session_factory, physician)
    fake.script("twilio", twilio_error(400, 21614))
    step = step_input(physician, account_id, "notice-1", channels=[Channel.SMS, Channel.EMAIL])
    result = messaging.send_step(step)
    assert result.outcome is StepOutcome.SENT and result.channel is Channel.EMAIL
    assert result.reasons == ["sms: undeliverable (twilio 21614)"]
    assert messaging.send_step(step).communication_id == result.communication_id
    assert len(fake.of("twilio")) == 1 and len(fake.of("sendgrid")) == 1
    assert _prefs(session_factory, account_id)[Channel.SMS].deliverability is (
        Deliverability.UNDELIVERABLE
    )
    # Invalid number (21211) is handled the same way.
    other = make_account(session_factory, physician, phone="+12125550999")
    fake.script("twilio", twilio_error(400, 21211))
    assert (
        messaging.send_step(
            step_input(physician, other, "notice-1", channels=[Channel.SMS, Channel.EMAIL])
        ).channel
        is Channel.EMAIL
    )


def test_consent_and_opt_out_are_checked_at_send_time(
    fake: FakeProviders,
    messaging: MessagingActivities,
    physician: PolicyBundle,
    session_factory: sessionmaker[Session],
) -> None:
    no_consent = make_account(session_factory, physician, sms_consent=False)
    result = messaging.send_step(
        step_input(physician, no_consent, "notice-1", channels=[Channel.SMS])
    )
    assert result.outcome is StepOutcome.SUPPRESSED
    assert result.reasons == ["sms: no recorded consent (TCPA)"]
    opted_out = make_account(
        session_factory, physician, prefs={Channel.EMAIL: {"opted_out_at": MORNING}}
    )
    result = messaging.send_step(step_input(physician, opted_out, "notice-1"))
    assert result.channel is Channel.SMS and result.reasons == ["email: opted out"]
    assert fake.of("sendgrid") == [] and len(fake.of("twilio")) == 1


def test_quiet_hours_at_the_moment_of_sending(
    fake: FakeProviders,
    messaging: MessagingActivities,
    physician: PolicyBundle,
    session_factory: sessionmaker[Session],
    clock: Clock,
) -> None:
    # 22:30 in Los Angeles: the step was scheduled for the day but the worker is late.
    account_id = make_account(session_factory, physician, time_zone="America/Los_Angeles")
    clock.at = dt.datetime(2027, 1, 13, 6, 30, tzinfo=dt.UTC)
    step = step_input(physician, account_id, "notice-1")
    with pytest.raises(ApplicationError) as err:
        messaging.send_step(step)
    assert err.value.type == "QuietHours" and not err.value.non_retryable
    assert err.value.next_retry_delay == dt.timedelta(hours=9, minutes=30)  # 08:00 local
    assert fake.requests == [] and _rows(session_factory, account_id) == []
    clock.at = dt.datetime(2027, 1, 13, 16, 0, tzinfo=dt.UTC)  # 08:00 there
    assert messaging.send_step(step).outcome is StepOutcome.SENT
    assert len(fake.requests) == 1


def test_sms_cap_per_rolling_window(
    fake: FakeProviders,
    messaging: MessagingActivities,
    physician: PolicyBundle,
    session_factory: sessionmaker[Session],
    clock: Clock,
) -> None:
    # The physician policy allows 2 texts in 7 days.
    account_id = make_account(session_factory, physician, email=None)
    for i, days_ago in enumerate((6, 2)):
        clock.at = MORNING - dt.timedelta(days=days_ago)
        assert (
            messaging.send_step(
                step_input(physician, account_id, "notice-1", episode=f"e{i}", due_at=clock.at)
            ).channel
            is Channel.SMS
        )
    clock.at = MORNING
    capped = step_input(physician, account_id, "reminder-1", due_at=clock.at)
    with pytest.raises(ApplicationError) as err:
        messaging.send_step(capped)
    assert err.value.type == "ContactCapReached"
    assert err.value.next_retry_delay == dt.timedelta(days=1)  # the oldest leaves the window
    assert len(fake.of("twilio")) == 2

    # With another channel in the chain, the step falls back instead of waiting.
    with_email = make_account(session_factory, physician)
    for i, days_ago in enumerate((5, 1)):
        clock.at = MORNING - dt.timedelta(days=days_ago)
        messaging.send_step(
            step_input(
                physician,
                with_email,
                "notice-1",
                episode=f"w{i}",
                channels=[Channel.SMS],
                due_at=clock.at,
            )
        )
    clock.at = MORNING
    result = messaging.send_step(
        step_input(physician, with_email, "reminder-1", channels=[Channel.SMS, Channel.EMAIL])
    )
    assert result.channel is Channel.EMAIL
    assert result.reasons == ["sms: cap of 2 in 7 days reached"]
    # A day after the oldest text left the window, texting is allowed again.
    clock.at = MORNING + dt.timedelta(days=1, minutes=1)
    assert messaging.send_step(capped).channel is Channel.SMS
    assert len(fake.of("twilio")) == 5


def test_rate_limit_and_server_errors_are_retried_after_retry_after(
    fake: FakeProviders,
    messaging: MessagingActivities,
    physician: PolicyBundle,
    session_factory: sessionmaker[Session],
) -> None:
    account_id = make_account(session_factory, physician, email=None)
    fake.script("twilio", twilio_error(429, 20429, retry_after="120"))
    step = step_input(physician, account_id, "notice-1")
    with pytest.raises(ApplicationError) as err:
        messaging.send_step(step)
    assert err.value.type == "ProviderRateLimited" and not err.value.non_retryable
    assert err.value.next_retry_delay == dt.timedelta(seconds=120)
    assert "+1212555" not in str(err.value) and err.value.__cause__ is None
    assert _rows(session_factory, account_id) == []  # nothing was taken: the claim is released
    result = messaging.send_step(step)  # Temporal's retry, two minutes later
    assert result.outcome is StepOutcome.SENT
    assert messaging.send_step(step).communication_id == result.communication_id
    assert len(fake.of("twilio")) == 2
    sent = [r for r in _rows(session_factory, account_id)]
    assert [r.status for r in sent] == [CommunicationStatus.SENT]
    with session_factory() as s:
        deferred = s.scalars(
            select(AuditEvent).where(
                AuditEvent.account_id == uuid.UUID(account_id), AuditEvent.action == "send_deferred"
            )
        ).all()
        assert [e.detail["code"] for e in deferred] == ["20429"]

    other = make_account(session_factory, physician)
    fake.script("sendgrid", sendgrid_error(503, retry_after="7"))
    step = step_input(physician, other, "notice-1")
    with pytest.raises(ApplicationError) as err:
        messaging.send_step(step)
    assert err.value.type == "ProviderUnavailable"
    assert err.value.next_retry_delay == dt.timedelta(seconds=7)
    assert messaging.send_step(step).channel is Channel.EMAIL  # not a fallback: same channel
    assert len(fake.of("sendgrid")) == 2


def test_auth_failure_fails_loudly_and_keeps_the_step(
    fake: FakeProviders,
    provider_settings: Settings,
    physician: PolicyBundle,
    session_factory: sessionmaker[Session],
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = provider_settings.model_copy(
        update={
            "sendgrid": provider_settings.sendgrid.model_copy(
                update={"api_key": SecretStr("SG.wrong")}
            )
        }
    )
    broken = MessagingActivities(
        session_factory, build_senders(wrong), PolicyStore(session_factory), clock=clock
    )
    account_id = make_account(session_factory, physician, first_name="Quinta")
    step = step_input(physician, account_id, "notice-1")
    with pytest.raises(ApplicationError) as err:
        broken.send_step(step)
    assert err.value.type == "ProviderAuthFailed" and not err.value.non_retryable
    assert err.value.next_retry_delay == dt.timedelta(minutes=10)
    # Not a recipient problem: no fallback to SMS, nothing marked, nothing logged about the patient.
    assert fake.of("twilio") == [] and _rows(session_factory, account_id) == []
    assert _prefs(session_factory, account_id).get(Channel.EMAIL) is None
    assert any(
        r.levelname == "ERROR" and "ProviderAuthFailed" in r.getMessage() for r in caplog.records
    )
    assert "Quinta" not in caplog.text and "example.test" not in caplog.text
    # Credentials fixed: the same step goes out, once.
    fixed = MessagingActivities(
        session_factory, build_senders(provider_settings), PolicyStore(session_factory), clock=clock
    )
    assert fixed.send_step(step).channel is Channel.EMAIL
    assert len(fake.of("sendgrid")) == 2
    twilio_wrong = provider_settings.model_copy(
        update={
            "twilio": provider_settings.twilio.model_copy(update={"auth_token": SecretStr("nope")})
        }
    )
    wrong_twilio = MessagingActivities(
        session_factory, build_senders(twilio_wrong), PolicyStore(session_factory), clock=clock
    )
    sms_step = step_input(physician, account_id, "reminder-1", channels=[Channel.SMS])
    with pytest.raises(ApplicationError) as err:  # Twilio's 20003 maps the same way
        wrong_twilio.send_step(sms_step)
    assert err.value.type == "ProviderAuthFailed"


def test_without_credentials_the_outbox_is_used(settings: Settings, tmp_path: Path) -> None:
    senders = build_senders(settings)
    # Letters and call tasks need no sender: they are queued in the database with their claim.
    assert {c: s.name for c, s in senders.items()} == {
        Channel.EMAIL: "outbox",
        Channel.SMS: "outbox",
    }


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("STOP", ReplyIntent.REVOKE),
        (" stop. ", ReplyIntent.REVOKE),
        ("Unsubscribe", ReplyIntent.REVOKE),
        ("opt out", ReplyIntent.REVOKE),
        ("Please stop texting me", ReplyIntent.REVOKE),
        ("HELP", ReplyIntent.HELP),
        ("info", ReplyIntent.HELP),
        ("START", ReplyIntent.START),
        ("unstop", ReplyIntent.START),
        ("When is my bill due?", ReplyIntent.UNCLEAR),
    ],
)
def test_inbound_keywords(text: str, keyword: ReplyIntent) -> None:
    # The full corpus is in tests/test_replies_corpus.py.
    assert classify(text) is keyword


def test_stop_and_start_replies_change_consent_at_once(
    fake: FakeProviders,
    messaging: MessagingActivities,
    physician: PolicyBundle,
    session_factory: sessionmaker[Session],
) -> None:
    phone = synthetic_phone()
    account_id = make_account(session_factory, physician, email=None, phone=phone)

    def reply(body: str) -> None:
        # The ledger side of the inbound webhook: the keyword becomes a channel event.
        kind = {
            ReplyIntent.REVOKE: ChannelEventKind.OPTED_OUT,
            ReplyIntent.START: ChannelEventKind.CONSENT_GIVEN,
        }[classify(body)]
        with session_factory.begin() as s:
            guarantor = s.scalars(
                select(Guarantor)
                .where(Guarantor.phone == phone)
                .options(selectinload(Guarantor.channels))
            ).one()
            record_channel_event(
                s,
                guarantor,
                ChannelEventSignal(
                    reference=f"IN-{uuid.uuid4().hex[:8]}", kind=kind, channel=Channel.SMS
                ),
            )

    reply("Stop")
    assert "not receive more texts" in reply_text(
        ReplyIntent.REVOKE, "en", "Riverside", "(555) 010-0100"
    )
    result = messaging.send_step(step_input(physician, account_id, "notice-1"))
    assert result.outcome is StepOutcome.SUPPRESSED and "sms: opted out" in result.reasons
    assert "(555) 010-0100" in reply_text(ReplyIntent.HELP, "en", "Riverside", "(555) 010-0100")
    reply("START")
    assert messaging.send_step(step_input(physician, account_id, "notice-1")).channel is (
        Channel.SMS
    )
    assert len(fake.of("twilio")) == 1
