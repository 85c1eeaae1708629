"""The HTTP API against a real worker on the dev server: idempotent intake, roles, staff actions."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.orm import (
    Account,
    ApiRole,
    AuditEvent,
    ChargeLine,
    IdempotencyKey,
    Payment,
    StaffTask,
    TaskStatus,
)
from models.orm import repositories as repo
from models.payloads import BalanceState, EscalationResult
from starter import workflow_id
from tests.api_support import Api, account_body, api_settings, ec_key_pair, running_api

pytestmark = pytest.mark.devserver


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment, settings: Settings, session_factory: sessionmaker[Session]
) -> AsyncIterator[Api]:
    _, public = ec_key_pair()
    async with running_api(dev_env.client, api_settings(settings, public), session_factory) as a:
        yield a


async def _account(api: Api) -> str:
    number = f"A-{uuid.uuid4().hex[:8].upper()}"
    r = await api.http.put(
        f"/accounts/{number}", json=account_body(), headers=api.auth(ApiRole.INTEGRATION)
    )
    assert r.status_code == 200, r.text
    return number


async def test_account_intake_is_idempotent_by_reference(api: Api) -> None:
    number = f"A-{uuid.uuid4().hex[:8].upper()}"
    body = account_body()
    auth = api.auth(ApiRole.INTEGRATION)
    first = await api.http.put(f"/accounts/{number}", json=body, headers=auth)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "account_number": number,
        "new_charges": 1,
        "balance_cents": 5500,
        "queued": False,
        "warnings": [],
    }
    again = await api.http.put(f"/accounts/{number}", json=body, headers=auth)
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    with api.session_factory() as session:
        account = repo.account_by_number(session, number)
        assert account is not None and account.balance_cents == 5500
        lines = session.scalar(
            select(func.count()).select_from(ChargeLine).where(ChargeLine.account_id == account.id)
        )
        assert lines == 1
    status = await api.http.get(f"/accounts/{number}/status", headers=api.auth(ApiRole.STAFF))
    assert status.status_code == 200 and status.json()["balance_cents"] == 5500

    # The same reference for another request is refused; a new reference adds a charge.
    changed = dict(body, charges=[dict(body["charges"][0], charges_cents=20000)])
    r = await api.http.put(f"/accounts/{number}", json=changed, headers=auth)
    assert r.status_code == 409 and "reference" in r.json()["detail"]
    second = account_body(reference=f"IMP-{uuid.uuid4().hex[:8]}", id=body["guarantor"]["id"])
    r = await api.http.put(f"/accounts/{number}", json=second, headers=auth)
    assert r.status_code == 200 and r.json()["new_charges"] == 1
    assert r.json()["balance_cents"] == 11000


async def test_payment_and_adjustment_are_idempotent_and_reach_the_workflow(api: Api) -> None:
    number = await _account(api)
    auth = api.auth(ApiRole.INTEGRATION)
    ref = f"PAY-{uuid.uuid4().hex[:8]}"
    first = await api.http.post(
        f"/accounts/{number}/payments", json={"reference": ref, "amount_cents": 2000}, headers=auth
    )
    assert first.status_code == 200, first.text
    assert first.json() == {
        "reference": ref,
        "new": True,
        "balance_cents": 3500,
        "credit_cents": 0,
        "queued": False,
    }
    again = await api.http.post(
        f"/accounts/{number}/payments", json={"reference": ref, "amount_cents": 2000}, headers=auth
    )
    assert again.json() == first.json()  # the first result, not "new: false"
    other = await api.http.post(
        f"/accounts/{number}/payments", json={"reference": ref, "amount_cents": 2500}, headers=auth
    )
    assert other.status_code == 409
    adj = {
        "reference": f"ADJ-{uuid.uuid4().hex[:8]}",
        "kind": "insurance_payment",
        "amount_cents": -500,
    }
    r = await api.http.post(f"/accounts/{number}/adjustments", json=adj, headers=auth)
    assert r.status_code == 200 and r.json()["balance_cents"] == 3000
    r = await api.http.post(f"/accounts/{number}/adjustments", json=adj, headers=auth)
    assert r.status_code == 200 and r.json()["balance_cents"] == 3000
    bad = dict(adj, reference="ADJ-X1", amount_cents=500)
    r = await api.http.post(f"/accounts/{number}/adjustments", json=bad, headers=auth)
    assert r.status_code == 422 and "lowers" in r.text
    with api.session_factory() as session:
        payments = session.scalar(
            select(func.count()).select_from(Payment).where(Payment.reference == ref)
        )
        assert payments == 1
        key = session.get(IdempotencyKey, f"payment:{ref}")
        assert key is not None and key.actor.startswith("integration-")
    status = await api.http.get(f"/accounts/{number}/status", headers=api.auth(ApiRole.STAFF))
    assert status.json()["balance_cents"] == 3000
    assert status.json()["paid_cents"] == 2000
    r = await api.http.post(
        "/accounts/NO-SUCH-1/payments",
        json={"reference": "PAY-NONE", "amount_cents": 1},
        headers=auth,
    )
    assert r.status_code == 404


async def test_roles_are_enforced_and_refusals_audited(api: Api) -> None:
    number = await _account(api)
    r = await api.http.get(f"/accounts/{number}/status")
    assert r.status_code == 401
    r = await api.http.get(
        f"/accounts/{number}/status", headers={"Authorization": "Bearer dun_forged"}
    )
    assert r.status_code == 401
    r = await api.http.get(f"/accounts/{number}/status", headers=api.auth(ApiRole.INTEGRATION))
    assert r.status_code == 403
    r = await api.http.post(
        f"/accounts/{number}/payments",
        json={"reference": "PAY-STAFF", "amount_cents": 100},
        headers=api.auth(ApiRole.STAFF),
    )
    assert r.status_code == 403
    r = await api.http.post(
        f"/accounts/{number}/hold",
        json={"reason": "dispute"},
        headers=api.auth(ApiRole.INTEGRATION),
    )
    assert r.status_code == 403
    with api.session_factory() as session:
        refused = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "forbidden",
                AuditEvent.actor == next(iter(_names(api, ApiRole.STAFF))),
            )
        ).all()
        assert [e.detail["permission"] for e in refused] == ["intake"]

    # Revoking a token takes effect at once.
    from api.auth import revoke_token

    with api.session_factory.begin() as session:
        assert revoke_token(session, next(iter(_names(api, ApiRole.STAFF))))
    r = await api.http.get(f"/accounts/{number}/status", headers=api.auth(ApiRole.STAFF))
    assert r.status_code == 401


def _names(api: Api, role: ApiRole) -> set[str]:
    from api.auth import find_principal

    with api.session_factory() as session:
        principal = find_principal(session, api.tokens[role])
        return {principal.name} if principal else set()


async def test_staff_actions_like_the_cli(api: Api) -> None:
    number = await _account(api)
    staff = api.auth(ApiRole.STAFF)
    r = await api.http.post(f"/accounts/{number}/hold", json={"reason": "dispute"}, headers=staff)
    assert r.status_code == 200, r.text
    r = await api.http.post(f"/accounts/{number}/hold", json={"reason": "dispute"}, headers=staff)
    assert r.status_code == 409 and r.json()["kind"] == "AlreadyOnHold"
    r = await api.http.post(f"/accounts/{number}/resume", headers=staff)
    assert r.status_code == 200
    r = await api.http.post(
        f"/accounts/{number}/plan",
        json={"installments": [{"due_on": "2099-01-15", "amount_cents": 100}]},
        headers=staff,
    )
    assert r.status_code == 422 and r.json()["kind"] == "InvalidRequest"
    assert "add up to the balance" in r.json()["detail"]
    r = await api.http.post("/accounts/NO-SUCH-2/hold", json={"reason": "dispute"}, headers=staff)
    assert r.status_code == 404

    r = await api.http.post(
        f"/accounts/{number}/write-off", json={"reason": "uncollectable"}, headers=staff
    )
    assert r.status_code == 200, r.text
    task_id = r.json()["task_id"]
    r = await api.http.get("/worklist", headers=staff)
    assert task_id in [t["task_id"] for t in r.json()]
    # A staff token may not decide; a supervisor may, and the workflow checks the policy.
    r = await api.http.post(f"/tasks/{task_id}/approve", json={}, headers=staff)
    assert r.status_code == 403
    r = await api.http.post(
        f"/tasks/{uuid.uuid4()}/approve", json={}, headers=api.auth(ApiRole.SUPERVISOR)
    )
    assert r.status_code == 404
    r = await api.http.post(
        f"/tasks/{task_id}/approve", json={}, headers=api.auth(ApiRole.SUPERVISOR)
    )
    assert r.status_code == 200, r.text
    with api.session_factory() as session:
        account = repo.account_by_number(session, number)
        assert account is not None
        result = await api.client.get_workflow_handle(
            workflow_id(str(account.id)), result_type=EscalationResult
        ).result()
        assert result.state is BalanceState.WRITTEN_OFF
        actions = session.execute(
            select(AuditEvent.actor, AuditEvent.action, AuditEvent.detail)
            .where(AuditEvent.account_id == account.id, AuditEvent.actor != "system")
            .order_by(AuditEvent.id)
        ).all()
        by_action = {
            (d.get("actor_name", a).split("-")[0], act, d.get("outcome")) for a, act, d in actions
        }
        assert ("staff", "hold", "done") in by_action
        assert ("staff", "hold", "refused") in by_action
        assert ("staff", "write_off_requested", "done") in by_action
        assert ("supervisor", "approve", "done") in by_action
        task = session.get(StaffTask, uuid.UUID(task_id))
        assert task is not None and task.status is TaskStatus.APPROVED
        assert session.get(Account, account.id) is not None
