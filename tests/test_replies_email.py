"""Email replies (SendGrid Inbound Parse) are understood like texts.

Against the app and a real worker on the dev server. The patient's own words decide, not the
quoted message below them (which carries our own "Reply STOP" line).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.orm import ApiRole, ChannelPreference, StaffTask, TaskKind
from models.orm import repositories as repo
from models.policy import Channel
from models.replies import ReplyIntent, classify_email, reply_body
from starter import get_account
from tests.api_support import Api, account_body, api_settings, ec_key_pair, running_api

KEY = "inbound-key-0123456789"
PATH = f"/webhooks/sendgrid/inbound?key={KEY}"
QUOTED = (
    "\n\nOn Tue, Dec 1, 2026 at 10:00 AM Riverside Family Medicine <billing@example.test> wrote:\n"
    "> Your statement is ready. Reply STOP to opt out.\n"
)


def test_reply_body_is_the_patients_own_words() -> None:
    assert reply_body("Please unsubscribe me" + QUOTED) == "Please unsubscribe me"
    assert reply_body("No más correos\n\nEl mar, 1 dic 2026 escribió:\n> hola") == "No más correos"
    assert classify_email("Re: Your statement", "I will pay Friday" + QUOTED) is ReplyIntent.UNCLEAR
    assert classify_email("Re: STOP", "") is ReplyIntent.REVOKE
    assert classify_email("Unsubscribe", "Thanks" + QUOTED) is ReplyIntent.REVOKE
    assert classify_email("Re: bill", "Wrong person, I don't know her") is (
        ReplyIntent.WRONG_NUMBER
    )


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment, settings: Settings, session_factory: sessionmaker[Session]
) -> AsyncIterator[Api]:
    cfg = api_settings(settings, ec_key_pair()[1])
    cfg = cfg.model_copy(
        update={"sendgrid": cfg.sendgrid.model_copy(update={"inbound_parse_key": SecretStr(KEY)})}
    )
    async with running_api(dev_env.client, cfg, session_factory) as a:
        yield a


async def _account(api: Api) -> tuple[str, str]:
    number = f"E-{uuid.uuid4().hex[:8].upper()}"
    body = account_body()
    r = await api.http.put(f"/accounts/{number}", json=body, headers=api.auth(ApiRole.INTEGRATION))
    assert r.status_code == 200, r.text
    return number, body["guarantor"]["email"]


async def _email(
    api: Api, sender: str, subject: str, text: str, path: str = PATH
) -> dict[str, object]:
    files = {
        "from": (None, f"Testy Synthetic <{sender.upper()}>"),
        "to": (None, "billing@example.test"),
        "subject": (None, subject),
        "text": (None, text),
        "headers": (None, f"Message-ID: <{uuid.uuid4().hex}@mail.example.test>\nSubject: x"),
    }
    r = await api.http.post(path, files=files)
    return {"status": r.status_code, **(r.json() if r.status_code == 200 else {})}


def _email_pref(api: Api, number: str) -> ChannelPreference | None:
    with api.session_factory() as session:
        account = repo.account_by_number(session, number)
        assert account is not None
        return session.scalars(
            select(ChannelPreference).where(
                ChannelPreference.guarantor_id == account.guarantor_id,
                ChannelPreference.channel == Channel.EMAIL,
            )
        ).one_or_none()


@pytest.mark.devserver
async def test_an_email_revocation_opts_the_address_out_and_is_an_event(api: Api) -> None:
    number, email = await _account(api)
    result = await _email(api, email, "Re: Your statement", "Please stop emailing me" + QUOTED)
    assert result["status"] == 200 and result["outcome"] == "revoke", result
    pref = _email_pref(api, number)
    assert pref is not None and pref.opted_out_at is not None
    with api.session_factory() as session:
        account = repo.account_by_number(session, number)
        assert account is not None
        account_id = str(account.id)
    events = [f"{e.kind}:{e.detail}" for e in (await get_account(api.client, account_id)).events]
    assert "opted_out:email" in events


@pytest.mark.devserver
async def test_an_unclear_email_opens_a_task_and_a_wrong_key_changes_nothing(api: Api) -> None:
    number, email = await _account(api)
    refused = await _email(
        api, email, "STOP", "STOP", path="/webhooks/sendgrid/inbound?key=guessed"
    )
    assert refused["status"] == 403
    assert (await _email(api, email, "STOP", "STOP", path="/webhooks/sendgrid/inbound"))[
        "status"
    ] == 403
    pref = _email_pref(api, number)
    assert pref is None or pref.opted_out_at is None

    result = await _email(api, email, "Re: Your statement", "I will pay on Friday" + QUOTED)
    assert result["outcome"] == "unclear" and result["tasks"] == 1, result
    pref = _email_pref(api, number)
    assert pref is None or pref.opted_out_at is None  # the quoted "Reply STOP" is not theirs
    with api.session_factory() as session:
        account = repo.account_by_number(session, number)
        assert account is not None
        task = session.scalars(
            select(StaffTask).where(
                StaffTask.account_id == account.id, StaffTask.kind == TaskKind.REPLY
            )
        ).one()
    assert task.detail["channel"] == "email" and "pay on Friday" in task.detail["text"]
