"""Cease communication allows at most one closing notice (Reg F 1006.6(c)), through the CLI
and the HTTP API.

The cease fact stops the ladder at once and opens a "closing notice" task; a supervisor approves
it naming its purpose and exactly one letter is queued, by letter only, then nothing more, ever;
a second approval or a second request is refused. Denying the task sends nothing.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.actions import AccountState, ClosingNoticeStatus, ClosingPurpose
from models.orm import (
    ApiRole,
    AuditEvent,
    Communication,
    CommunicationStatus,
    StaffTask,
    TaskStatus,
)
from models.payloads import BalanceState
from models.policy import Channel
from services.identity import SYSTEM
from services.users import add_user, issue_token
from starter import Intake, get_account, get_status
from tests.api_support import api_settings, ec_key_pair, running_api
from tests.factories import balance_row, instant_policy, midday_zone, policy_in, write_csv
from tests.support.cli import cli_env, run_dunning
from tests.support.waits import eventually

pytestmark = pytest.mark.devserver


def _users(session_factory: sessionmaker[Session]) -> dict[str, tuple[str, str]]:
    """Login tokens and ids: a clerk (staff) and a supervisor (who may decide)."""
    tag = uuid.uuid4().hex[:6]
    made = {}
    with session_factory.begin() as session:
        for name, role in (("clerk", "staff"), ("sup", "supervisor")):
            user = add_user(session, f"{name}-cn-{tag}", [role], SYSTEM)
            token = issue_token(session, SYSTEM, user=f"{name}-cn-{tag}")[0]
            made[name] = (token, str(user.id))
    return made


def _communications(session_factory: sessionmaker[Session], account_id: str) -> list[Communication]:
    with session_factory() as session:
        return list(
            session.scalars(
                select(Communication)
                .where(Communication.account_id == uuid.UUID(account_id))
                .order_by(Communication.created_at)
            )
        )


async def _notice(client: Client, account_id: str, status: ClosingNoticeStatus) -> AccountState:
    async def reached() -> AccountState | None:
        account = await get_account(client, account_id)
        notice = account.closing_notice
        ready = notice is not None and notice.status is status and bool(notice.task_id)
        return account if ready else None

    found = await eventually(reached, timeout=60)
    assert isinstance(found, AccountState)
    return found


async def test_cease_then_one_approved_closing_letter_and_nothing_after(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    database_url: str,
) -> None:
    client = dev_env.client
    intake = Intake(session_factory, client, settings)
    base = cli_env(settings, database_url, client)
    users = _users(session_factory)

    async def cli(user: str, *args: str) -> tuple[int, str]:
        return await run_dunning(dict(base, DUNNING_TOKEN=users[user][0]), *args)

    zone = midday_zone()
    policy = policy_in(settings, instant_policy(tmp_path, zone))
    rows = [balance_row(time_zone=zone, policy=policy) for _ in range(2)]
    _, public = ec_key_pair()
    async with running_api(client, api_settings(settings, public), session_factory) as api:
        await intake.import_balances(write_csv(tmp_path / "rows.csv", rows))
        number, denied_number = (r["account_number"] for r in rows)
        account_id, denied_id = intake.account_id(number), intake.account_id(denied_number)

        async def statements_sent() -> bool:
            for a in (account_id, denied_id):
                history = (await get_status(client, a)).history
                if not any(r.step_id == "statement-1" for r in history):
                    return False
            return True

        await eventually(statements_sent, timeout=60)
        before = len(_communications(session_factory, account_id))

        # The cease fact: the ladder stops and the closing-notice task opens in the worklist.
        code, out = await cli("clerk", "report", "cease-communication", number)
        assert code == 0, out
        notice = await _notice(client, account_id, ClosingNoticeStatus.AWAITING_APPROVAL)
        task_id = notice.closing_notice.task_id if notice.closing_notice else ""
        assert (await get_status(client, account_id)).state is BalanceState.CONTACT_STOPPED
        code, out = await cli("clerk", "worklist")
        assert code == 0 and task_id[:8] in out and "Closing notice" in out, out
        code, out = await cli("clerk", "status", number)
        assert code == 0 and "closing notice: awaiting approval" in out, out

        # Who may approve, and what an approval must say.
        code, out = await cli("clerk", "approve", task_id[:8], "--purpose", "terminate")
        assert code == 6 and "decide permission" in out
        code, out = await cli("sup", "approve", task_id[:8])
        assert code == 2 and "purpose:" in out and "Traceback" not in out
        code, out = await cli("sup", "approve", task_id[:8], "--purpose", "goodbye")
        assert code == 2 and "Traceback" not in out

        # Approved (by a unique prefix of the task id): exactly one closing letter.
        code, out = await cli("sup", "approve", task_id[:8], "--purpose", "may_invoke_remedies")
        assert code == 0 and f"approved closing_notice (task {task_id})" in out, out
        sent = await _notice(client, account_id, ClosingNoticeStatus.SENT)
        assert sent.closing_notice is not None
        assert sent.closing_notice.purpose is ClosingPurpose.MAY_INVOKE_REMEDIES
        assert sent.closing_notice.decided_by == users["sup"][1]
        after = _communications(session_factory, account_id)
        assert len(after) == before + 1
        letter = after[-1]
        assert letter.step_id == "closing-notice" and letter.template == "closing-notice"
        assert letter.channel is Channel.LETTER and letter.status is CommunicationStatus.SENT
        assert str(letter.id) == sent.closing_notice.communication_id
        assert "ordinarily use" in " ".join((letter.body or "").split())

        # The letter is printed as any other (by a prefix of its id).
        pdf = tmp_path / "closing.pdf"
        code, out = await cli("clerk", "letters", "show", str(letter.id)[:10], "--out", str(pdf))
        assert code == 0, out
        assert "Closing notice" in " ".join(p.extract_text() or "" for p in PdfReader(pdf).pages)

        # Nothing more, ever: a second approval, a second request, any other message to the
        # patient are refused, each with its rejection and exit code.
        code, out = await cli("sup", "approve", task_id, "--purpose", "terminate")
        assert code == 4 and "TaskDecided" in out and "Traceback" not in out
        code, out = await cli("clerk", "closing-notice", number)
        assert code == 4 and "ClosingNoticeUsed" in out and "at most one" in out
        code, out = await cli("clerk", "settle", number, "50.00")
        assert code == 4 and "ContactStopped" in out
        code, out = await cli("clerk", "status", number)
        assert code == 0 and "closing notice: sent (may_invoke_remedies)" in out, out
        assert "closing-notice" in out and "contact_stopped" in out
        with session_factory() as session:
            decided = session.scalars(
                select(AuditEvent.detail).where(
                    AuditEvent.action == "approve", AuditEvent.actor == users["sup"][1]
                )
            ).all()
            assert any(d.get("purpose") == "may_invoke_remedies" for d in decided)
            task = session.get(StaffTask, uuid.UUID(task_id))
            assert task is not None and task.status is TaskStatus.APPROVED
        assert len(_communications(session_factory, account_id)) == before + 1

        # The denial path, through the HTTP API: the task closes and nothing is sent, ever.
        denied_before = len(_communications(session_factory, denied_id))
        r = await api.http.post(
            f"/accounts/{denied_number}/facts/cease-communication",
            json={},
            headers=api.auth(ApiRole.STAFF),
        )
        assert r.status_code == 200, r.text
        opened = await _notice(client, denied_id, ClosingNoticeStatus.AWAITING_APPROVAL)
        assert opened.closing_notice is not None
        denied_task = opened.closing_notice.task_id
        r = await api.http.get("/worklist", headers=api.auth(ApiRole.STAFF))
        assert denied_task in [t["task_id"] for t in r.json()]
        sup = api.auth(ApiRole.SUPERVISOR)
        r = await api.http.post(f"/tasks/{denied_task[:8]}/approve", json={}, headers=sup)
        assert r.status_code == 422 and "purpose" in r.json()["detail"], r.text
        r = await api.http.post(
            f"/tasks/{denied_task[:8]}/deny", json={"reason": "patient asked"}, headers=sup
        )
        assert r.status_code == 200 and r.json()["subject"] == "closing_notice", r.text
        await _notice(client, denied_id, ClosingNoticeStatus.DENIED)
        r = await api.http.post(
            f"/tasks/{denied_task}/approve", json={"purpose": "terminate"}, headers=sup
        )
        assert r.status_code == 409 and r.json()["kind"] == "TaskDecided", r.text
        r = await api.http.post(
            f"/accounts/{denied_number}/closing-notice", headers=api.auth(ApiRole.STAFF)
        )
        assert r.status_code == 409 and r.json()["kind"] == "ClosingNoticeUsed", r.text
        code, out = await cli("clerk", "status", denied_number)
        assert code == 0 and "closing notice: denied" in out, out
        assert len(_communications(session_factory, denied_id)) == denied_before
        assert (await get_status(client, denied_id)).state is BalanceState.CONTACT_STOPPED
