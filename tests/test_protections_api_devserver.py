"""The protections' HTTP front door (issue 18): the same use cases as the CLI, audited under the
token's name. Before, none of these routes existed and the intake had no NSA or date-of-birth field.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.orm import AuditEvent, ChannelRestriction
from models.orm import repositories as repo
from models.orm.api_token import ApiRole
from tests.api_support import Api, account_body, api_settings, ec_key_pair, running_api

pytestmark = pytest.mark.devserver


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment, settings: Settings, session_factory: sessionmaker[Session]
) -> AsyncIterator[Api]:
    _, public = ec_key_pair()
    async with running_api(dev_env.client, api_settings(settings, public), session_factory) as a:
        yield a


async def test_intake_takes_the_estimate_and_protected_amount_and_refuses_a_minor(api: Api) -> None:
    number = f"A-{uuid.uuid4().hex[:8].upper()}"
    body = account_body()
    body["charges"][0] |= {
        "charges_cents": 60000,
        "insurance_paid_cents": 0,
        "insurance_adjustment_cents": 0,
        "good_faith_estimate_cents": 20000,
        "nsa_protected_cents": 5000,
    }
    r = await api.http.put(f"/accounts/{number}", json=body, headers=api.auth(ApiRole.INTEGRATION))
    assert r.status_code == 200, r.text
    assert r.json()["balance_cents"] == 55000
    flags = await api.http.get(f"/accounts/{number}/flags", headers=api.auth(ApiRole.STAFF))
    assert flags.status_code == 200
    assert [(f["kind"], f["amount_cents"]) for f in flags.json()] == [
        ("nsa_dispute_eligible", 40000)
    ]
    minor = account_body(date_of_birth="2015-06-01")
    r = await api.http.put(
        f"/accounts/A-{uuid.uuid4().hex[:8].upper()}",
        json=minor,
        headers=api.auth(ApiRole.INTEGRATION),
    )
    assert r.status_code == 422 and "guarantor_dob" in r.json()["detail"]


async def test_mail_only_over_http_is_recorded_and_audited(api: Api) -> None:
    number = f"A-{uuid.uuid4().hex[:8].upper()}"
    r = await api.http.put(
        f"/accounts/{number}", json=account_body(), headers=api.auth(ApiRole.INTEGRATION)
    )
    assert r.status_code == 200, r.text
    r = await api.http.post(
        f"/accounts/{number}/restrictions",
        json={"kind": "mail_only"},
        headers=api.auth(ApiRole.STAFF),
    )
    assert r.status_code == 200, r.text
    assert r.json()["channels_changed"] == 3
    r = await api.http.post(
        f"/accounts/{number}/restrictions",
        json={"kind": "carrier_pigeon"},
        headers=api.auth(ApiRole.STAFF),
    )
    assert r.status_code == 422
    r = await api.http.post(
        "/accounts/NOPE-404/restrictions",
        json={"kind": "no_calls"},
        headers=api.auth(ApiRole.STAFF),
    )
    assert r.status_code == 404
    r = await api.http.post(
        f"/accounts/{number}/restrictions",
        json={"kind": "mail_only"},
        headers=api.auth(ApiRole.INTEGRATION),
    )
    assert r.status_code == 403
    with api.session_factory() as session:
        account = repo.account_by_number(session, number)
        assert account is not None
        kinds = session.scalars(
            select(ChannelRestriction.kind).where(
                ChannelRestriction.guarantor_id == account.guarantor_id
            )
        ).all()
        assert kinds == ["mail_only"]
        actors = session.scalars(
            select(AuditEvent.detail["actor_name"].astext).where(
                AuditEvent.account_id == account.id, AuditEvent.action == "channel_restricted"
            )
        ).all()
    assert len(actors) == 1 and actors[0].startswith("staff-")  # the token's user
