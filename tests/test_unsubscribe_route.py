"""The email unsubscribe link works: signed per-message token, RFC 8058 one-click, a plain page.

Against the app and a real worker on the dev server: the POST opts the address out in the ledger
first and the workflow hears of it; a GET only shows the page; a forged or altered token changes
nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.orm import ApiRole, AuditEvent, ChannelPreference, Communication, CommunicationStatus
from models.orm import repositories as repo
from models.policy import Channel
from services.unsubscribe import secret_for, sign, verify
from starter import get_account
from tests.api_support import Api, account_body, api_settings, ec_key_pair, running_api

pytestmark = pytest.mark.devserver
ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment, settings: Settings, session_factory: sessionmaker[Session]
) -> AsyncIterator[Api]:
    cfg = api_settings(settings, ec_key_pair()[1])
    async with running_api(dev_env.client, cfg, session_factory) as a:
        yield a


async def _emailed_account(api: Api) -> tuple[str, str]:
    """An account and the outbox row of an email sent to it."""
    number = f"U-{uuid.uuid4().hex[:8].upper()}"
    r = await api.http.put(
        f"/accounts/{number}", json=account_body(), headers=api.auth(ApiRole.INTEGRATION)
    )
    assert r.status_code == 200, r.text
    with api.session_factory.begin() as session:
        account = repo.account_by_number(session, number)
        assert account is not None
        row = Communication(
            idempotency_key=f"test:{uuid.uuid4()}",
            account_id=account.id,
            step_id="notice-1",
            policy_hash="0" * 64,
            channel=Channel.EMAIL,
            template="statement-notice",
            status=CommunicationStatus.SENT,
            provider="sendgrid",
            provider_id=uuid.uuid4().hex,
        )
        session.add(row)
        session.flush()
        return number, str(row.id)


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


async def _events(api: Api, number: str) -> list[str]:
    with api.session_factory() as session:
        account = repo.account_by_number(session, number)
        assert account is not None
        account_id = str(account.id)
    return [f"{e.kind}:{e.detail}" for e in (await get_account(api.client, account_id)).events]


def _opt_outs(api: Api, number: str) -> int:
    """Audit rows of opt-outs on the account."""
    with api.session_factory() as session:
        account = repo.account_by_number(session, number)
        assert account is not None
        return (
            session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.account_id == account.id, AuditEvent.action == "opted_out")
            )
            or 0
        )


def test_tokens_are_per_message_and_tamper_evident(tmp_path: object) -> None:
    secret = b"k" * 32
    one, two = str(uuid.uuid4()), str(uuid.uuid4())
    assert verify(secret, sign(secret, one)) == uuid.UUID(one)
    assert sign(secret, one) != sign(secret, two)
    mac = sign(secret, one).split(".")[1]
    assert verify(secret, f"{two}.{mac}") is None  # another message's id under this mac
    assert verify(b"other" * 8, sign(secret, one)) is None  # another deployment's key
    altered = sign(secret, one)[:-1] + ("A" if sign(secret, one)[-1] != "A" else "B")
    assert verify(secret, altered) is None
    for junk in ("", one, f"{one}.", "not-a-uuid.abc", "x" * 300):
        assert verify(secret, junk) is None


async def test_one_click_post_opts_out_at_once_and_tells_the_workflow(api: Api) -> None:
    number, communication_id = await _emailed_account(api)
    path = f"/unsubscribe/email/{sign(secret_for(api.settings), communication_id)}"

    page = await api.http.get(path)
    assert page.status_code == 200 and "<form" in page.text and 'method="post"' in page.text
    pref = _email_pref(api, number)
    assert pref is None or pref.opted_out_at is None  # a GET (a link scanner) changes nothing

    r = await api.http.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert r.status_code == 200 and "unsubscribed" in r.text
    pref = _email_pref(api, number)
    assert pref is not None and pref.opted_out_at is not None and not pref.consent
    assert "opted_out:email" in await _events(api, number)

    assert _opt_outs(api, number) == 1
    again = await api.http.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert again.status_code == 200
    assert _opt_outs(api, number) == 1  # a second click changes nothing


async def test_a_forged_or_altered_token_changes_nothing(api: Api) -> None:
    number, communication_id = await _emailed_account(api)
    good = sign(secret_for(api.settings), communication_id)
    forged = [
        f"/unsubscribe/email/{communication_id}",  # the bare id the old link carried
        f"/unsubscribe/email/{sign(b'guessed-key-0123456789abcdef', communication_id)}",
        f"/unsubscribe/email/{good[:-2]}xy",
        f"/unsubscribe/email/{uuid.uuid4()}.{good.split('.')[1]}",
    ]
    for path in forged:
        assert (await api.http.get(path)).status_code == 404, path
        r = await api.http.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
        assert r.status_code == 404, path
    pref = _email_pref(api, number)
    assert pref is None or pref.opted_out_at is None
    assert _opt_outs(api, number) == 0
