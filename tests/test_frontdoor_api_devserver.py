"""The front doors for facts and staff actions over HTTP, end to end on the dev server.

Each fact goes in through its route, the balance's workflow reacts, and an audit row names who
reported it. Staff notes stay in PostgreSQL: a dumped workflow history holds none of them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.actions import AccountState
from models.orm import (
    Account,
    AccountStatus,
    ApiRole,
    AuditEvent,
    Guarantor,
    LegalFact,
    StaffNote,
    StaffTask,
    TaskKind,
)
from models.orm import repositories as repo
from models.payloads import BalanceState, EscalationResult, StatusView
from starter import get_account, get_status, workflow_id
from tests.api_support import Api, account_body, api_settings, ec_key_pair, running_api
from tests.support.waits import eventually

pytestmark = pytest.mark.devserver
T = TypeVar("T")
DEADLINE = 30.0


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment, settings: Settings, session_factory: sessionmaker[Session]
) -> AsyncIterator[Api]:
    _, public = ec_key_pair()
    async with running_api(dev_env.client, api_settings(settings, public), session_factory) as a:
        yield a


async def _account(api: Api, **body: Any) -> tuple[str, str]:
    number = f"F-{uuid.uuid4().hex[:8].upper()}"
    payload = account_body()
    payload.update(body)
    r = await api.http.put(
        f"/accounts/{number}", json=payload, headers=api.auth(ApiRole.INTEGRATION)
    )
    assert r.status_code == 200, r.text
    with api.session_factory() as session:
        account = repo.account_by_number(session, number)
        assert account is not None
        return number, str(account.id)


async def _eventually(probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool]) -> T:
    """Poll until ``ok`` holds, failing after DEADLINE seconds with the last value seen."""
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while True:
        value = await probe()
        if ok(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached in {DEADLINE}s: {value!r}")
        await asyncio.sleep(0.2)


def _audit(api: Api, account_id: str, action: str) -> list[tuple[str, dict[str, Any]]]:
    with api.session_factory() as session:
        rows = session.execute(
            select(AuditEvent.actor, AuditEvent.detail).where(
                AuditEvent.account_id == uuid.UUID(account_id), AuditEvent.action == action
            )
        ).all()
    return [(a, d) for a, d in rows]


async def _events(api: Api, account_id: str) -> AccountState:
    return await get_account(api.client, account_id)


async def _status(api: Api, account_id: str) -> StatusView:
    return await get_status(api.client, account_id)


async def _contact_stopped(api: Api, account_id: str) -> StatusView:
    return await _eventually(
        lambda: _status(api, account_id),
        lambda s: s.state is BalanceState.CONTACT_STOPPED and bool(s.waiting_for),
    )


async def _more_events(api: Api, account_id: str, before: int) -> AccountState:
    return await _eventually(lambda: _events(api, account_id), lambda s: len(s.events) > before)


async def test_every_fact_has_a_front_door(api: Api) -> None:
    staff = api.auth(ApiRole.STAFF)
    staff_name = next(iter(_names(api, ApiRole.STAFF)))

    # Bankruptcy: the automatic stay ends the balance's follow-up; the details stay in SQL.
    number, account_id = await _account(api)
    r = await api.http.post(
        f"/accounts/{number}/facts/bankruptcy",
        json={"filed_on": "2026-11-02", "chapter": 7, "case_number": "26-10001"},
        headers=staff,
    )
    assert r.status_code == 200, r.text
    assert r.json()["workflow_told"] is True
    result = await api.client.get_workflow_handle(
        workflow_id(account_id), result_type=EscalationResult
    ).result()
    assert result.state is BalanceState.STOPPED
    with api.session_factory() as session:
        fact = session.scalars(
            select(LegalFact).where(LegalFact.account_id == uuid.UUID(account_id))
        ).one()
        assert fact.detail["chapter"] == 7 and fact.detail["filed_on"] == "2026-11-02"
        assert fact.reported_by == staff_name
    ((actor, detail),) = _audit(api, account_id, "report_bankruptcy")
    assert actor == staff_name and detail["outcome"] == "done"
    # A bad chapter is refused with the field named, and audited as refused.
    r = await api.http.post(
        f"/accounts/{number}/facts/bankruptcy",
        json={"filed_on": "2026-11-02", "chapter": 8},
        headers=staff,
    )
    assert r.status_code == 422 and "chapter" in r.json()["detail"]
    r = await api.http.post(
        f"/accounts/{number}/facts/bankruptcy",
        json={"filed_on": "2026-11-02", "chapter": "7"},
        headers=staff,
    )
    assert r.status_code == 422  # a string is not a chapter

    # Death: contact ends and the estate queue gets a task.
    number, account_id = await _account(api)
    r = await api.http.post(f"/accounts/{number}/facts/death", json={}, headers=staff)
    assert r.status_code == 200, r.text
    result = await api.client.get_workflow_handle(
        workflow_id(account_id), result_type=EscalationResult
    ).result()
    assert result.state is BalanceState.DECEASED
    with api.session_factory() as session:
        kinds = session.scalars(
            select(StaffTask.kind).where(StaffTask.account_id == uuid.UUID(account_id))
        ).all()
        assert TaskKind.ESTATE in kinds
    assert _audit(api, account_id, "report_deceased")

    # Attorney representation and cease communication: no more contact, the balance stays open.
    represented = ""
    for route, body, kind in (
        ("attorney", {"name": "A. Counsel", "phone": "+1 555 010 0142"}, "attorney"),
        ("cease-communication", {"received_on": "2026-11-20"}, "cease_communication"),
    ):
        number, account_id = await _account(api)
        r = await api.http.post(f"/accounts/{number}/facts/{route}", json=body, headers=staff)
        assert r.status_code == 200, r.text
        status = await _contact_stopped(api, account_id)
        assert status.waiting_for == f"contact stopped: {kind}"
        assert status.balance_cents > 0
        with api.session_factory() as session:
            account = session.get(Account, uuid.UUID(account_id))
            assert account is not None and account.status is AccountStatus.OPEN
        assert _audit(api, account_id, f"report_{kind}")
        represented = represented or account_id
    with api.session_factory() as session:
        # This test's account only: the database is shared with every other test's attorneys.
        lawyer = session.scalars(
            select(LegalFact).where(
                LegalFact.kind == "attorney", LegalFact.account_id == uuid.UUID(represented)
            )
        ).one_or_none()
        assert lawyer is not None and lawyer.detail["attorney"]["name"] == "A. Counsel"

    # Returned mail, then a corrected address; a corrected email and phone; consent by phone.
    number, account_id = await _account(api)
    steps: list[tuple[str, dict[str, Any], str]] = [
        ("letter-returned", {}, "letter_returned"),
        (
            "address",
            {"line1": "2 Other Road", "city": "Albany", "state": "NY", "postal_code": "12207"},
            "address_corrected",
        ),
        ("email", {"email": "corrected@example.test"}, "address_corrected"),
        ("phone", {"phone": "+1 555 010 0177"}, "address_corrected"),
        ("consent", {"channel": "sms", "given": False, "via": "phone"}, "opted_out"),
        ("consent", {"channel": "sms", "given": True, "via": "front_desk"}, "consent_given"),
    ]
    for route, body, event in steps:
        before = len((await _events(api, account_id)).events)
        r = await api.http.post(f"/accounts/{number}/facts/{route}", json=body, headers=staff)
        assert r.status_code == 200, (route, r.text)
        account_state = await _more_events(api, account_id, before)
        assert event in [e.kind for e in account_state.events[before:]], route
    with api.session_factory() as session:
        account = session.get(Account, uuid.UUID(account_id))
        assert account is not None
        guarantor = session.get(Guarantor, account.guarantor_id)
        assert guarantor is not None
        assert (guarantor.address_line1, guarantor.city) == ("2 Other Road", "Albany")
        assert guarantor.email == "corrected@example.test"
        assert guarantor.phone == "+1 555 010 0177"
    consents = _audit(api, account_id, "report_consent_given") + _audit(
        api, account_id, "report_opted_out"
    )
    assert {d["via"] for _, d in consents} == {"phone", "front_desk"}
    r = await api.http.post(
        f"/accounts/{number}/facts/consent",
        json={"channel": "sms", "given": "yes", "via": "phone"},
        headers=staff,
    )
    assert r.status_code == 422  # a flag is a JSON boolean
    r = await api.http.post("/accounts/NO-SUCH-F/facts/letter-returned", headers=staff)
    assert r.status_code == 404 and r.json()["kind"] == "AccountUnknown"
    paths = (await api.http.get("/openapi.json")).json()["paths"]
    for route in ("bankruptcy", "death", "attorney", "cease-communication", "letter-returned"):
        assert f"/accounts/{{account_number}}/facts/{route}" in paths


def _names(api: Api, role: ApiRole) -> set[str]:
    from api.auth import find_principal

    with api.session_factory() as session:
        principal = find_principal(session, api.tokens[role])
        return {principal.id} if principal else set()


async def test_staff_notes_never_reach_workflow_history(api: Api) -> None:
    staff = api.auth(ApiRole.STAFF)
    supervisor = api.auth(ApiRole.SUPERVISOR)
    number, account_id = await _account(api)
    planted = {
        "hold": f"PLANTED-HOLD-{uuid.uuid4().hex[:8]}",
        "write_off": f"PLANTED-WRITEOFF-{uuid.uuid4().hex[:8]}",
        "deny": f"PLANTED-DENY-{uuid.uuid4().hex[:8]}",
        "approve": f"PLANTED-APPROVE-{uuid.uuid4().hex[:8]}",
    }
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).isoformat()
    r = await api.http.post(
        f"/accounts/{number}/hold",
        json={"reason": "dispute", "until": until, "note": planted["hold"]},
        headers=staff,
    )
    assert r.status_code == 200, r.text
    assert r.json()["until"] is not None
    r = await api.http.post(f"/accounts/{number}/resume", headers=staff)
    assert r.status_code == 200 and r.json()["held_days"] == 0
    r = await api.http.post(
        f"/accounts/{number}/write-off", json={"reason": planted["write_off"]}, headers=staff
    )
    assert r.status_code == 200, r.text
    first = r.json()["task_id"]
    worklist = (await api.http.get("/worklist", headers=staff)).json()
    line = next(t for t in worklist if t["task_id"] == first)
    assert [n["body"] for n in line["notes"]] == [planted["write_off"]]
    r = await api.http.post(
        f"/tasks/{first}/deny", json={"reason": planted["deny"]}, headers=supervisor
    )
    assert r.status_code == 200, r.text
    assert r.json()["decision"] == "deny" and r.json()["subject"] == "write_off"

    async def closed() -> bool:
        # The workflow closes a decided task once its step is done (a send in flight first): a
        # new request is refused as "already open" until then, as the worklist shows.
        lines = (await api.http.get("/worklist", headers=staff)).json()
        return all(t["task_id"] != first for t in lines)

    await eventually(closed)
    r = await api.http.post(
        f"/accounts/{number}/write-off", json={"reason": planted["write_off"]}, headers=staff
    )
    assert r.status_code == 200, r.text
    second = r.json()["task_id"]
    r = await api.http.post(
        f"/tasks/{second}/approve", json={"reason": planted["approve"]}, headers=supervisor
    )
    assert r.status_code == 200, r.text
    handle = api.client.get_workflow_handle(workflow_id(account_id), result_type=EscalationResult)
    assert (await handle.result()).state is BalanceState.WRITTEN_OFF
    # Deciding a task of a finished balance: a clear refusal, not a traceback.
    r = await api.http.post(f"/tasks/{second}/approve", json={}, headers=supervisor)
    assert r.status_code == 409 and r.json()["kind"] == "TaskDecided"

    history = (await handle.fetch_history()).to_json()
    assert "PLANTED" not in history
    with api.session_factory() as session:
        bodies = set(
            session.scalars(
                select(StaffNote.body).where(StaffNote.account_id == uuid.UUID(account_id))
            )
        )
        note_ids = [
            d.get("note_id")
            for _, d in _audit(api, account_id, "hold") + _audit(api, account_id, "deny")
        ]
    assert bodies == set(planted.values())
    assert all(note_ids)
    assert {n for n in note_ids if n} <= set(_note_ids(api, account_id))


def _note_ids(api: Api, account_id: str) -> list[str]:
    with api.session_factory() as session:
        return [
            str(i)
            for i in session.scalars(
                select(StaffNote.id).where(StaffNote.account_id == uuid.UUID(account_id))
            )
        ]
