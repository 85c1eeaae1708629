"""The agency recall through its front doors (issue 17 item 4): the HTTP API on the dev server
with a real worker, and the ``dunning recall`` command as a real process.

Both call ``services.recall``: permission from the roles catalogue (``act``), a refusal from the
catalogue when the account is not with an agency, an audit row, and the day's update file.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.orm import Account, AccountStatus, ApiRole, AuditEvent
from services import agency
from services.identity import SYSTEM
from services.users import add_user, issue_token
from starter import Intake
from tests.api_support import Api, account_body, api_settings, ec_key_pair, running_api
from tests.factories import balance_row, write_csv
from tests.support.cli import run_dunning


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment, settings: Settings, session_factory: sessionmaker[Session]
) -> AsyncIterator[Api]:
    _, public = ec_key_pair()
    async with running_api(dev_env.client, api_settings(settings, public), session_factory) as a:
        yield a


def _place(session_factory: sessionmaker[Session], number: str) -> None:
    """As the workflow's placement activity leaves it: placed, with its placement date."""
    with session_factory.begin() as session:
        session.execute(
            update(Account)
            .where(Account.account_number == number)
            .values(status=AccountStatus.PLACED, placed_at=dt.datetime.now(dt.UTC))
        )


def _update_rows(settings: Settings, number: str) -> list[dict[str, str]]:
    path = agency.update_file(agency.export_dir(settings), dt.datetime.now(dt.UTC).date())
    with path.open(newline="", encoding="utf-8") as handle:
        return [r for r in csv.DictReader(handle) if r["account_number"] == number]


@pytest.mark.devserver
async def test_recall_over_http_is_permissioned_audited_and_refused_when_not_placed(
    api: Api,
) -> None:
    number = f"A-{uuid.uuid4().hex[:8].upper()}"
    r = await api.http.put(
        f"/accounts/{number}", json=account_body(), headers=api.auth(ApiRole.INTEGRATION)
    )
    assert r.status_code == 200, r.text
    url = f"/accounts/{number}/recall"
    r = await api.http.post(url, json={}, headers=api.auth(ApiRole.STAFF))
    assert (r.status_code, r.json()["kind"]) == (409, "NotPlaced")
    _place(api.session_factory, number)
    r = await api.http.post(url, json={}, headers=api.auth(ApiRole.INTEGRATION))
    assert r.status_code == 403  # an integration may post intake only
    r = await api.http.post(url, json={"reason": "because"}, headers=api.auth(ApiRole.STAFF))
    assert r.status_code == 422 and "reason" in r.json()["detail"]
    r = await api.http.post(
        url, json={"reason": "patient_request"}, headers=api.auth(ApiRole.STAFF)
    )
    assert r.status_code == 200, r.text
    assert r.json()["balance_cents"] == 5500
    assert [row["change"] for row in _update_rows(api.settings, number)] == ["recall"]
    r = await api.http.get(f"/accounts/{number}/status", headers=api.auth(ApiRole.STAFF))
    assert r.json()["state"] == "recalled"
    r = await api.http.post("/accounts/NO-SUCH-1/recall", json={}, headers=api.auth(ApiRole.STAFF))
    assert r.status_code == 404
    with api.session_factory() as session:
        audited = session.scalars(
            select(AuditEvent.detail)
            .join(Account, Account.id == AuditEvent.account_id)
            .where(Account.account_number == number, AuditEvent.action == "agency_recall")
        ).all()
    assert [d["outcome"] for d in audited if d.get("reason") == "patient_request"] == ["done"]
    assert [d.get("kind") for d in audited if d["outcome"] == "refused"] == [
        "NotPlaced",
        "InvalidRequest",
    ]


async def test_dunning_recall_as_staff(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path, database_url: str
) -> None:
    row = balance_row()
    number = row["account_number"]
    await Intake(session_factory, None, settings).import_balances(
        write_csv(tmp_path / "a.csv", [row])
    )
    with session_factory.begin() as session:
        name = f"clerk-recall-{uuid.uuid4().hex[:6]}"
        add_user(session, name, ["staff"], SYSTEM)
        token = issue_token(session, SYSTEM, user=name)[0]
    env = dict(
        os.environ,
        DUNNING_DATABASE__URL=database_url,
        DUNNING_DATA_DIR=str(settings.data_dir),
        DUNNING_TOKEN=token,
        COLUMNS="320",
    )
    code, out = await run_dunning(env, "recall", number)
    assert (code, out.strip()) == (
        4,
        f"error: refused (NotPlaced): account: {number} is not with a collection agency",
    )
    _place(session_factory, number)
    code, out = await run_dunning(env, "recall", number, "--reason", "dispute")
    assert code == 0 and f"{number} recalled from the agency" in out, out
    assert [r["change"] for r in _update_rows(settings, number)] == ["recall"]
    with session_factory() as session:
        account = session.scalars(select(Account).where(Account.account_number == number)).one()
    assert account.status is AccountStatus.RECALLED
