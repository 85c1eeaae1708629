"""The shipped policies' gates by identity, end to end on the dev server, through the API and the
CLI: a user holding a role the gate names approves it; everyone else is refused; nobody approves
their own request; approvals above a role's limit are refused."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from config.roles import ROLES_FILE
from config.settings import POLICY_DIR, Settings
from models.orm import AuditEvent, StaffTask, TaskKind, TaskStatus
from services.identity import SYSTEM
from services.users import add_user, issue_token
from starter import Intake
from tests.api_support import Api, api_settings, ec_key_pair, running_api
from tests.factories import balance_row, midday_zone, policy_in, write_csv
from tests.support.cli import run_dunning
from tests.support.waits import eventually

pytestmark = pytest.mark.devserver

GATE_POLICY = """
name: gate-{shipped}
practice: {{name: Example Clinic, phone: (555) 010-0199, pay_url: https://pay.example.test}}
thresholds: {{minimum_balance: 5.00}}
contact:
  practice_time_zone: {tz}
  default_patient_time_zone: {tz}
  business_days: [mon, tue, wed, thu, fri, sat, sun]
  min_spacing_hours: 0
steps:
  - {{id: statement-1, day: 0, channels: [letter], template: statement}}
  - id: gated
    day: 0
    channels: [letter]
    template: statement
    approval: {approval}
"""


def gate_policy(directory: Path, shipped: str) -> tuple[Path, list[str]]:
    """An instant policy whose gate is the shipped policy's own (its approvers, as written)."""
    data = yaml.safe_load((POLICY_DIR / f"{shipped}.yaml").read_text(encoding="utf-8"))
    approval = next(step["approval"] for step in data["steps"] if step.get("approval"))
    text = GATE_POLICY.format(
        shipped=shipped,
        tz=midday_zone(),
        approval=yaml.safe_dump(approval, default_flow_style=True),
    )
    path = directory / f"gate-{shipped}.yaml"
    path.write_text(text, encoding="utf-8")
    return path, list(approval["approvers"])


def make_users(session_factory: sessionmaker[Session], **roles: list[str]) -> dict[str, str]:
    """Users holding ``roles`` (by short name), each with a login token; returns the tokens."""
    tag = uuid.uuid4().hex[:6]
    tokens = {}
    with session_factory.begin() as session:
        for who, held in roles.items():
            add_user(session, f"{who}-{tag}", held, SYSTEM)
            tokens[who] = issue_token(session, SYSTEM, user=f"{who}-{tag}")[0]
    return tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment, settings: Settings, session_factory: sessionmaker[Session]
) -> AsyncIterator[Api]:
    _, public = ec_key_pair()
    async with running_api(dev_env.client, api_settings(settings, public), session_factory) as a:
        yield a


async def _open_gate(api: Api, policy: Path, tmp_path: Path) -> tuple[str, str]:
    """Import a balance under ``policy``; its gate's open task id and the account number."""
    intake = Intake(api.session_factory, api.client, api.settings)
    row = balance_row(time_zone=midday_zone(), policy=policy_in(api.settings, policy))
    await intake.import_balances(write_csv(tmp_path / f"{row['account_number']}.csv", [row]))
    account_id = uuid.UUID(intake.account_id(row["account_number"]))

    async def task() -> str | None:
        with api.session_factory() as session:
            found = session.scalars(
                select(StaffTask.id).where(
                    StaffTask.account_id == account_id,
                    StaffTask.kind == TaskKind.APPROVAL,
                    StaffTask.status == TaskStatus.OPEN,
                )
            ).first()
        return str(found) if found else None

    return str(await eventually(task, timeout=60)), row["account_number"]


async def _decided(api: Api, task_id: str) -> TaskStatus:
    async def status() -> TaskStatus | None:
        with api.session_factory() as session:
            task = session.get(StaffTask, uuid.UUID(task_id))
            assert task is not None
            return None if task.status is TaskStatus.OPEN else task.status

    result = await eventually(status, timeout=60)
    assert isinstance(result, TaskStatus)
    return result


@pytest.mark.parametrize(
    ("shipped", "wrong_approver"),
    [("dental", "supervisor"), ("hospital-501r", "office-manager")],
)
async def test_a_shipped_gate_is_approved_by_its_role_only(
    api: Api, tmp_path: Path, database_url: str, shipped: str, wrong_approver: str
) -> None:
    policy, approvers = gate_policy(tmp_path, shipped)
    assert wrong_approver not in approvers
    tokens = make_users(
        api.session_factory,
        clerk=["staff"],
        other=[wrong_approver],
        approver=["staff", approvers[0]],
    )

    # Through the API.
    task_id, _ = await _open_gate(api, policy, tmp_path)
    url = f"/tasks/{task_id}/approve"
    r = await api.http.post(url, json={}, headers=bearer(tokens["clerk"]))
    assert r.status_code == 403, r.text
    r = await api.http.post(url, json={}, headers=bearer(tokens["other"]))
    assert r.status_code == 409 and r.json()["kind"] == "NotAnApprover", r.text
    assert approvers[0] in r.json()["detail"]
    r = await api.http.post(url, json={}, headers=bearer(tokens["approver"]))
    assert r.status_code == 200, r.text
    assert await _decided(api, task_id) is TaskStatus.APPROVED
    with api.session_factory() as session:
        task = session.get(StaffTask, uuid.UUID(task_id))
        assert task is not None and task.decided_by is not None
        approved = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "approve", AuditEvent.detail["task_id"].astext == task_id)
            .order_by(AuditEvent.id)
        ).all()
        assert [e.detail["outcome"] for e in approved] == ["refused", "done"]

    # Through the CLI, logged in by token.
    env = dict(
        os.environ,
        DUNNING_DATABASE__URL=database_url,
        DUNNING_DATA_DIR=str(api.settings.data_dir),
        DUNNING_TEMPORAL__ADDRESS=api.client.service_client.config.target_host,
        DUNNING_TEMPORAL__TASK_QUEUE=api.settings.temporal.task_queue,
        COLUMNS="320",
    )
    task_id, _number = await _open_gate(api, policy, tmp_path)
    code, out = await run_dunning(dict(env, DUNNING_TOKEN=tokens["clerk"]), "approve", task_id)
    assert code == 6 and "decide permission" in out, out
    code, out = await run_dunning(dict(env, DUNNING_TOKEN=tokens["other"]), "approve", task_id)
    assert code == 4 and "NotAnApprover" in out, out
    code, out = await run_dunning(dict(env, DUNNING_TOKEN=tokens["approver"]), "approve", task_id)
    assert code == 0 and "approved" in out and task_id in out, out
    assert await _decided(api, task_id) is TaskStatus.APPROVED


async def test_four_eyes_by_identity_and_limits_by_role(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A catalogue where a supervisor may write off at most $10 (the balance is $55).
    catalogue = yaml.safe_load(ROLES_FILE.read_text(encoding="utf-8"))
    catalogue["roles"]["supervisor"]["limits"]["write_off_cents"] = 1000
    roles = tmp_path / "roles.yaml"
    roles.write_text(yaml.safe_dump(catalogue), encoding="utf-8")
    monkeypatch.setenv("DUNNING_ROLES_FILE", str(roles))
    tokens = make_users(
        api.session_factory,
        sup1=["supervisor"],
        sup2=["supervisor"],
        boss=["supervisor", "manager"],
    )
    policy, _ = gate_policy(tmp_path, "dental")
    _, number = await _open_gate(api, policy, tmp_path)
    r = await api.http.post(
        f"/accounts/{number}/write-off",
        json={"reason": "uncollectable"},
        headers=bearer(tokens["sup1"]),
    )
    assert r.status_code == 200, r.text
    task_id = r.json()["task_id"]
    url = f"/tasks/{task_id}/approve"
    # The same person, whatever token or role they use, may not approve their own request.
    with api.session_factory.begin() as session:
        second = issue_token(session, SYSTEM, user=next(iter(_user_names(api, tokens["sup1"]))))[0]
    r = await api.http.post(url, json={}, headers=bearer(second))
    assert r.status_code == 409 and r.json()["kind"] == "FourEyes", r.text
    # Another supervisor may decide, but not this much.
    r = await api.http.post(url, json={}, headers=bearer(tokens["sup2"]))
    assert r.status_code == 409 and r.json()["kind"] == "OverLimit", r.text
    assert "5500 cents" in r.json()["detail"] and "1000 cents" in r.json()["detail"]
    # A supervisor who is also a manager has the higher limit: it covers this.
    r = await api.http.post(url, json={}, headers=bearer(tokens["boss"]))
    assert r.status_code == 200, r.text
    assert await _decided(api, task_id) is TaskStatus.APPROVED


def _user_names(api: Api, token: str) -> set[str]:
    from api.auth import find_principal

    with api.session_factory() as session:
        principal = find_principal(session, token)
        return {principal.name} if principal else set()
