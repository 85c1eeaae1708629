"""The API takes each visit's remittance facts, which the statement explains (issue 15)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.orm import ApiRole, ChargeLine
from tests.api_support import Api, account_body, api_settings, ec_key_pair, running_api

pytestmark = pytest.mark.devserver


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment, settings: Settings, session_factory: sessionmaker[Session]
) -> AsyncIterator[Api]:
    _, public = ec_key_pair()
    async with running_api(dev_env.client, api_settings(settings, public), session_factory) as a:
        yield a


async def test_a_visits_remittance_facts_come_in_through_the_api(
    api: Api, session_factory: sessionmaker[Session]
) -> None:
    number = f"A-{uuid.uuid4().hex[:8].upper()}"
    body = account_body()
    charge = body["charges"][0]  # 185.00 - 90.00 paid - 40.00 adjusted = 55.00 left
    charge |= {
        "payer": "Buckeye Health Plan",
        "claim_status": "partly_paid",
        "deductible_cents": 3000,
        "coinsurance_cents": 2000,
        "copay_cents": 500,
    }
    auth = api.auth(ApiRole.INTEGRATION)
    r = await api.http.put(f"/accounts/{number}", json=body, headers=auth)
    assert r.status_code == 200, r.text
    with session_factory() as s:
        line = s.scalars(select(ChargeLine).where(ChargeLine.external_ref == charge["reference"]))
        stored = line.one()
        assert (stored.payer, stored.claim_status) == ("Buckeye Health Plan", "partly_paid")
        assert (stored.deductible_cents, stored.coinsurance_cents, stored.copay_cents) == (
            3000,
            2000,
            500,
        )
        assert stored.not_covered_cents == 0

    bad = account_body()
    bad["charges"][0] |= {"claim_status": "lost"}
    r = await api.http.put(f"/accounts/A-{uuid.uuid4().hex[:8].upper()}", json=bad, headers=auth)
    assert r.status_code == 422 and "claim_status" in r.text
    too_much = account_body()
    too_much["charges"][0] |= {"not_covered_cents": 6000}
    r = await api.http.put(
        f"/accounts/A-{uuid.uuid4().hex[:8].upper()}", json=too_much, headers=auth
    )
    assert r.status_code == 422 and "charges[0] or guarantor: invalid deductible" in r.text
