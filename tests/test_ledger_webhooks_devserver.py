"""Exactly-once edges: concurrent copies of one provider event are applied once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.webhooks.common import claim, mark_seen, release
from config.settings import Settings
from models.orm import AuditEvent, WebhookEvent
from models.orm import repositories as repo
from services import readiness
from tests.api_support import Api, api_settings, running_api
from tests.support.waits import eventually
from tests.test_webhooks_providers import PUBLIC_KEY, _account, _events, _sendgrid

pytestmark = pytest.mark.devserver


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment, settings: Settings, session_factory: sessionmaker[Session]
) -> AsyncIterator[Api]:
    async with running_api(
        dev_env.client, api_settings(settings, PUBLIC_KEY), session_factory
    ) as a:
        yield a


async def test_twenty_concurrent_copies_of_one_sendgrid_event_apply_once(api: Api) -> None:
    number, body = await _account(api)
    event = {
        "event": "unsubscribe",
        "sg_event_id": uuid.uuid4().hex,
        "email": body["guarantor"]["email"],
        "timestamp": int(time.time()),
    }
    copies = [_sendgrid([event], at=time.time() + i) for i in range(20)]
    answers = await asyncio.gather(
        *(
            api.http.post("/webhooks/sendgrid/events", content=payload, headers=headers)
            for payload, headers in copies
        )
    )
    assert [a.status_code for a in answers] == [200] * 20
    assert sum(a.json()["accepted"] for a in answers) == 1
    assert sum(a.json()["duplicates"] for a in answers) == 19
    with api.session_factory() as session:
        account = repo.account_by_number(session, number)
        assert account is not None
        opted_out = session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.account_id == account.id, AuditEvent.action == "opted_out")
        )
        seen = session.get(WebhookEvent, ("sendgrid", event["sg_event_id"]))
    assert opted_out == 1
    assert seen is not None and seen.applied_at is not None
    assert (await _events(api, number)).count("opted_out:email") == 1


def test_claim_is_atomic_across_threads_and_released_on_failure(
    session_factory: sessionmaker[Session],
) -> None:
    event_id = uuid.uuid4().hex
    with ThreadPoolExecutor(max_workers=20) as pool:
        won = list(pool.map(lambda _: claim(session_factory, "test", event_id, "x"), range(20)))
    assert won.count(True) == 1
    # The winner failed while applying: it gives the claim back, and a retry takes it.
    release(session_factory, "test", event_id)
    assert claim(session_factory, "test", event_id, "x") is True
    mark_seen(session_factory, "test", event_id, "x")
    # Applied: released claims no longer drop it, and no copy takes it again.
    release(session_factory, "test", event_id)
    assert claim(session_factory, "test", event_id, "x") is False


async def test_ready_needs_a_polling_worker(
    api: Api, dev_env: WorkflowEnvironment, settings: Settings
) -> None:
    async def ready() -> bool:
        # The worker has just started: its first poll reaches the server within moments.
        return (await api.http.get("/health/ready")).status_code == 200

    await eventually(ready, timeout=30)
    answer = await api.http.get("/health/ready")
    assert answer.status_code == 200, answer.text
    assert answer.json()["checks"] == {"postgresql": "ok", "temporal": "ok", "worker": "ok"}
    # Another task queue, which no worker polls: alive but not ready.
    result = await readiness.check(api.session_factory, dev_env.client, f"idle-{uuid.uuid4().hex}")
    assert not result.ready and result.checks["worker"] == "no worker polling the task queue"
