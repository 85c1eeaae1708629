"""Twilio and SendGrid webhooks against the app and a real worker on the dev server.

Signatures are computed with the providers' own algorithms: Twilio's ``RequestValidator``
(HMAC-SHA1 over URL and sorted fields) and SendGrid's ECDSA P-256 over timestamp + body, with a
key pair made here.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment
from twilio.request_validator import RequestValidator

from config.settings import Settings
from models.orm import (
    ApiRole,
    AuditEvent,
    ChannelPreference,
    Communication,
    CommunicationStatus,
    Deliverability,
    WebhookEvent,
)
from models.orm import repositories as repo
from models.policy import Channel
from starter import get_account
from tests.api_support import (
    PUBLIC_URL,
    TWILIO_TOKEN,
    Api,
    account_body,
    api_settings,
    ec_key_pair,
    running_api,
    synthetic_phone,
)

pytestmark = pytest.mark.devserver
SIGNING_KEY, PUBLIC_KEY = ec_key_pair()


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment, settings: Settings, session_factory: sessionmaker[Session]
) -> AsyncIterator[Api]:
    cfg = api_settings(settings, PUBLIC_KEY)
    async with running_api(dev_env.client, cfg, session_factory) as a:
        yield a


async def _account(api: Api, **guarantor: Any) -> tuple[str, dict[str, Any]]:
    number = f"W-{uuid.uuid4().hex[:8].upper()}"
    body = account_body(**guarantor)
    r = await api.http.put(f"/accounts/{number}", json=body, headers=api.auth(ApiRole.INTEGRATION))
    assert r.status_code == 200, r.text
    return number, body


def _outbox_row(api: Api, number: str, channel: Channel, provider: str, provider_id: str) -> str:
    """The outbox row a send would have written (the send itself is tested in test_channels_*)."""
    with api.session_factory.begin() as session:
        account = repo.account_by_number(session, number)
        assert account is not None
        row = Communication(
            idempotency_key=f"test:{uuid.uuid4()}",
            account_id=account.id,
            step_id="notice-1",
            policy_hash="0" * 64,
            channel=channel,
            template="statement-notice",
            status=CommunicationStatus.SENT,
            provider=provider,
            provider_id=provider_id,
        )
        session.add(row)
        session.flush()
        return str(row.id)


def _pref(api: Api, number: str, channel: Channel) -> ChannelPreference | None:
    with api.session_factory() as session:
        account = repo.account_by_number(session, number)
        assert account is not None
        return session.scalars(
            select(ChannelPreference).where(
                ChannelPreference.guarantor_id == account.guarantor_id,
                ChannelPreference.channel == channel,
            )
        ).one_or_none()


async def _events(api: Api, number: str) -> list[str]:
    with api.session_factory() as session:
        account = repo.account_by_number(session, number)
        assert account is not None
        account_id = str(account.id)
    state = await get_account(api.client, account_id)
    return [f"{e.kind}:{e.detail}" for e in state.events]


def _state_counts(api: Api, numbers: list[str], event_ids: list[str]) -> tuple[int, int, int]:
    """What a webhook changes, counted for this test's own accounts and provider event ids only:
    staff-visible audit rows (not the worker's own "system" rows: it may send a first letter
    meanwhile), provider events seen, channel preferences updated."""
    with api.session_factory() as session:
        accounts = [repo.account_by_number(session, n) for n in numbers]
        ids = [a.id for a in accounts if a is not None]
        guarantors = [a.guarantor_id for a in accounts if a is not None]
        assert len(ids) == len(numbers), numbers
        return (
            session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.account_id.in_(ids), AuditEvent.actor != "system")
            )
            or 0,
            session.scalar(
                select(func.count())
                .select_from(WebhookEvent)
                .where(or_(*(WebhookEvent.event_id.startswith(e) for e in event_ids)))
            )
            or 0,
            session.scalar(
                select(func.count())
                .select_from(ChannelPreference)
                .where(
                    ChannelPreference.guarantor_id.in_(guarantors),
                    ChannelPreference.updated_at.is_not(None),
                )
            )
            or 0,
        )


# -- Twilio -----------------------------------------------------------------------------------


def _twilio(path: str, params: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC_URL + path, params)
    return urlencode(params).encode(), {
        "X-Twilio-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


async def test_twilio_status_callback_signed_accepted_tampered_refused(api: Api) -> None:
    number, _ = await _account(api)
    sid = "SM" + uuid.uuid4().hex
    outbox_id = _outbox_row(api, number, Channel.SMS, "twilio", sid)
    path = f"/webhooks/twilio/status?outbox_id={outbox_id}"
    params = {
        "MessageSid": sid,
        "MessageStatus": "undelivered",
        "ErrorCode": "30003",
        "AccountSid": "AC" + "0" * 32,
    }
    body, headers = _twilio(path, params)

    # Tampered: the signature was made for another error code. Nothing changes.
    before = _state_counts(api, [number], [sid])
    forged = urlencode(dict(params, ErrorCode="30001")).encode()
    r = await api.http.post(path, content=forged, headers=headers)
    assert r.status_code == 403
    r = await api.http.post(
        path,
        content=body,
        headers=dict(headers, **{"X-Twilio-Signature": base64.b64encode(b"x" * 20).decode()}),
    )
    assert r.status_code == 403
    r = await api.http.post(
        path.replace(outbox_id, str(uuid.uuid4())), content=body, headers=headers
    )
    assert r.status_code == 403  # the query string is part of what Twilio signs
    assert _state_counts(api, [number], [sid]) == before
    assert _pref(api, number, Channel.SMS) is not None
    assert _pref(api, number, Channel.SMS).deliverability is Deliverability.OK  # type: ignore[union-attr]

    r = await api.http.post(path, content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "duplicate": False,
        "communication_id": outbox_id,
        "event": "sms_undeliverable",
    }
    pref = _pref(api, number, Channel.SMS)
    assert pref is not None and pref.deliverability is Deliverability.UNDELIVERABLE
    with api.session_factory() as session:
        row = session.get(Communication, uuid.UUID(outbox_id))
        assert row is not None and row.status is CommunicationStatus.FAILED
    assert "sms_undeliverable:sms" in await _events(api, number)

    # Replayed: acknowledged, nothing applied twice.
    counts = _state_counts(api, [number], [sid])
    assert counts[1] == 1  # the event applied above is counted: the scope is not empty
    r = await api.http.post(path, content=body, headers=headers)
    assert r.status_code == 200 and r.json()["duplicate"] is True
    assert _state_counts(api, [number], [sid]) == counts

    # Signed but malformed: refused before any lookup.
    body, headers = _twilio("/webhooks/twilio/status", {"MessageStatus": "delivered"})
    r = await api.http.post("/webhooks/twilio/status", content=body, headers=headers)
    assert r.status_code == 400


async def test_twilio_inbound_stop_start_help(api: Api) -> None:
    phone = synthetic_phone()
    number, _ = await _account(api, phone=phone)
    # The same household number, written as staff type it, on a second account.
    national = f"({phone[2:5]}) {phone[5:8]}-{phone[8:]}"
    other, _ = await _account(api, phone=national)
    path = "/webhooks/twilio/inbound"
    sids: list[str] = []

    def inbound(text: str) -> tuple[bytes, dict[str, str]]:
        sids.append("SM" + uuid.uuid4().hex)
        return _twilio(
            path,
            {
                "MessageSid": sids[-1],
                "From": phone,
                "To": "+15550100000",
                "Body": text,
            },
        )

    body, headers = inbound("Please stop texting me!")
    r = await api.http.post(path, content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/xml")
    assert "<Message>" in r.text and "not receive more texts" in r.text
    for acct in (number, other):
        pref = _pref(api, acct, Channel.SMS)
        assert pref is not None and pref.opted_out_at is not None and not pref.consent
        assert "opted_out:sms" in await _events(api, acct)

    body, headers = inbound("START")
    r = await api.http.post(path, content=body, headers=headers)
    assert r.status_code == 200
    pref = _pref(api, number, Channel.SMS)
    assert pref is not None and pref.opted_out_at is None and pref.consent
    assert "consent_given:sms" in await _events(api, number)

    body, headers = inbound("help")
    r = await api.http.post(path, content=body, headers=headers)
    practice = api.settings.practice
    assert r.status_code == 200 and practice.phone in r.text and practice.name in r.text
    assert "$" not in r.text  # minimum necessary: no amount

    before = _state_counts(api, [number, other], sids)
    tampered = body.replace(b"help", b"STOP")
    r = await api.http.post(path, content=tampered, headers=headers)
    assert r.status_code == 403
    r = await api.http.post(
        path, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 403
    assert _state_counts(api, [number, other], sids) == before


# -- SendGrid ---------------------------------------------------------------------------------


def _sendgrid(
    events: list[dict[str, Any]],
    *,
    key: ec.EllipticCurvePrivateKey = SIGNING_KEY,
    at: float | None = None,
    payload: bytes | None = None,
) -> tuple[bytes, dict[str, str]]:
    body = payload if payload is not None else json.dumps(events).encode()
    timestamp = str(int(at if at is not None else time.time()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return body, {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        "Content-Type": "application/json",
    }


async def test_sendgrid_batch_accepted_duplicate_ignored(api: Api) -> None:
    bounced, _ = await _account(api)
    outbox_id = _outbox_row(api, bounced, Channel.EMAIL, "sendgrid", uuid.uuid4().hex)
    unsubscribed, body = await _account(api)
    email = body["guarantor"]["email"]
    now = int(time.time())
    events = [
        {
            "event": "bounce",
            "sg_event_id": base64.b64encode(uuid.uuid4().bytes).decode(),
            "email": "someone@example.test",
            "timestamp": now,
            "outbox_id": outbox_id,
            "type": "bounce",
        },
        {
            "event": "unsubscribe",
            "sg_event_id": uuid.uuid4().hex,
            "email": email.upper(),
            "timestamp": now,
        },
        {"event": "processed", "sg_event_id": uuid.uuid4().hex, "email": email, "timestamp": now},
    ]
    path = "/webhooks/sendgrid/events"
    payload, headers = _sendgrid(events)
    r = await api.http.post(path, content=payload, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 2, "duplicates": 0, "ignored": 1}
    pref = _pref(api, bounced, Channel.EMAIL)
    assert pref is not None and pref.deliverability is Deliverability.BOUNCED
    pref = _pref(api, unsubscribed, Channel.EMAIL)
    assert pref is not None and pref.opted_out_at is not None
    assert "email_bounced:email" in await _events(api, bounced)
    assert "opted_out:email" in await _events(api, unsubscribed)
    with api.session_factory() as session:
        row = session.get(Communication, uuid.UUID(outbox_id))
        assert row is not None and row.status is CommunicationStatus.FAILED

    # SendGrid retries the same batch later, freshly signed: every event is a duplicate.
    scope = ([bounced, unsubscribed], [e["sg_event_id"] for e in events])
    counts = _state_counts(api, *scope)
    payload, headers = _sendgrid(events, at=time.time() + 60)
    r = await api.http.post(path, content=payload, headers=headers)
    assert r.status_code == 200
    assert r.json() == {"accepted": 0, "duplicates": 3, "ignored": 0}
    assert _state_counts(api, *scope) == counts


async def test_sendgrid_forged_replayed_malformed_refused(api: Api) -> None:
    number, body = await _account(api)
    email = body["guarantor"]["email"]
    events = [
        {
            "event": "spamreport",
            "sg_event_id": uuid.uuid4().hex,
            "email": email,
            "timestamp": int(time.time()),
        }
    ]
    path = "/webhooks/sendgrid/events"
    scope = ([number], [e["sg_event_id"] for e in events])
    before = _state_counts(api, *scope)

    other_key, _ = ec_key_pair()
    payload, headers = _sendgrid(events, key=other_key)
    assert (await api.http.post(path, content=payload, headers=headers)).status_code == 403

    payload, headers = _sendgrid(events)
    tampered = payload.replace(b"spamreport", b"unsubscribe")
    assert (await api.http.post(path, content=tampered, headers=headers)).status_code == 403

    stale_payload, stale = _sendgrid(events, at=time.time() - 11 * 60)
    r = await api.http.post(path, content=stale_payload, headers=stale)
    assert r.status_code == 403 and "window" in r.json()["detail"]

    r = await api.http.post(path, content=payload, headers={"Content-Type": "application/json"})
    assert r.status_code == 403

    bad, headers = _sendgrid([], payload=b'{"event": "bounce"')
    assert (await api.http.post(path, content=bad, headers=headers)).status_code == 400
    bad, headers = _sendgrid([], payload=b'[{"event": "bounce"}]')  # no sg_event_id
    assert (await api.http.post(path, content=bad, headers=headers)).status_code == 400

    assert _state_counts(api, *scope) == before
    pref = _pref(api, number, Channel.EMAIL)
    assert pref is None or pref.opted_out_at is None
