"""``dunning report`` and clear CLI errors, as staff use them, on the dev server.

Facts go in through the command line, the workflow reacts, the audit row names the user; every
expected failure is one line and a documented exit code, never a traceback.
"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.orm import AuditEvent, LegalFact
from models.payloads import BalanceState, EscalationResult
from services.identity import SYSTEM
from services.users import add_user, issue_token
from starter import Intake, get_account, get_status, workflow_id
from tests.factories import balance_row, instant_policy, midday_zone, policy_in, write_csv
from tests.support.cli import cli_env, run_dunning
from tests.support.waits import eventually
from worker import build_worker

pytestmark = pytest.mark.devserver


_TOKENS: dict[str, str] = {}
"""Login tokens of this module's users, by name (as `dunning user add` prints them, once)."""
_IDS: dict[str, str] = {}


def _users(session_factory: sessionmaker[Session]) -> None:
    tag = uuid.uuid4().hex[:6]
    with session_factory.begin() as session:
        for name, role in (("clerk-7", "staff"), ("sup-7", "supervisor")):
            user = add_user(session, f"{name}-{tag}", [role], SYSTEM)
            _IDS[name] = str(user.id)
            _TOKENS[name] = issue_token(session, SYSTEM, user=f"{name}-{tag}")[0]


async def _cli(env: dict[str, str], *args: str, user: str = "clerk-7") -> tuple[int, str]:
    return await run_dunning(dict(env, DUNNING_TOKEN=_TOKENS[user]), *args)


async def _state(client: Client, account_id: str) -> BalanceState:
    return (await get_status(client, account_id)).state


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_report_facts_and_clear_errors(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    database_url: str,
) -> None:
    client = dev_env.client
    intake = Intake(session_factory, client, settings)
    env = cli_env(settings, database_url, client)
    _users(session_factory)
    zone = midday_zone()
    policy = policy_in(settings, instant_policy(tmp_path, zone))
    owing = [balance_row(time_zone=zone, policy=policy) for _ in range(6)]
    # Insurance paid it all: the ledger knows the account, no workflow follows it.
    settled = balance_row(time_zone=zone, policy=policy, insurance_paid="145.00")
    async with build_worker(client, settings, session_factory):
        await intake.import_balances(write_csv(tmp_path / "rows.csv", [*owing, settled]))
        first, second, third, fourth, fifth, sixth = (r["account_number"] for r in owing)

        code, out = await _cli(
            env, "report", "bankruptcy", first, "--filed", "2026-11-02", "--chapter", "13"
        )
        assert code == 0, out
        result = await client.get_workflow_handle(
            workflow_id(intake.account_id(first)), result_type=EscalationResult
        ).result()
        assert result.state is BalanceState.STOPPED
        with session_factory() as session:
            actors = session.scalars(
                select(AuditEvent.actor).where(AuditEvent.action == "report_bankruptcy")
            ).all()
            assert _IDS["clerk-7"] in actors
            chapters = session.scalars(select(LegalFact.detail)).all()
            assert {"filed_on": "2026-11-02", "chapter": 13} in chapters

        code, out = await _cli(
            env, "report", "consent", second, "--channel", "sms", "--via", "front_desk",
            "--withdrawn",
        )  # fmt: skip
        assert code == 0, out
        account = await get_account(client, intake.account_id(second))
        assert "opted_out" in [e.kind for e in account.events]

        code, out = await _cli(env, "report", "death", third, "--on", "2026-11-20")
        assert code == 0, out
        result = await client.get_workflow_handle(
            workflow_id(intake.account_id(third)), result_type=EscalationResult
        ).result()
        assert result.state is BalanceState.DECEASED

        for number, args in (
            (fourth, ["attorney", fourth, "--name", "A. Counsel", "--phone", "+1 555 010 0142"]),
            (fifth, ["cease-communication", fifth, "--received", "2026-11-20"]),
        ):
            code, out = await _cli(env, "report", *args)
            assert code == 0, out
            account_id = intake.account_id(number)

            async def stopped(a: str = account_id) -> bool:
                return await _state(client, a) is BalanceState.CONTACT_STOPPED

            await eventually(stopped, timeout=60)

        for args in (
            ["letter-returned", sixth],
            ["address", sixth, "--line1", "2 Other Road", "--city", "Albany", "--state", "NY",
             "--postal-code", "12207"],
            ["email", sixth, "corrected@example.test"],
            ["phone", sixth, "+1 555 010 0177"],
        ):  # fmt: skip
            code, out = await _cli(env, "report", *args)
            assert code == 0, out
        kinds = [e.kind for e in (await get_account(client, intake.account_id(sixth))).events]
        assert "letter_returned" in kinds and kinds.count("address_corrected") >= 3
        with session_factory() as session:
            reported = set(
                session.scalars(
                    select(AuditEvent.action).where(AuditEvent.actor == _IDS["clerk-7"])
                ).all()
            )
        assert {
            "report_deceased",
            "report_attorney",
            "report_cease_communication",
            "report_letter_returned",
            "report_address_corrected",
            "report_opted_out",
        } <= reported

        # Bad input names the field; exit 2.
        code, out = await _cli(env, "report", "attorney", second, "--name", "X", "--phone", "no")
        assert code == 2 and "phone" in out and "Traceback" not in out
        code, out = await _cli(
            env, "report", "bankruptcy", second, "--filed", "2026-11-02", "--chapter", "8"
        )
        assert code == 2 and "chapter" in out
        # Unknown account, and an account no workflow follows: exit 3, one line.
        code, out = await _cli(env, "status", f"NOPE-{uuid.uuid4().hex[:6]}")
        assert code == 3 and "no account" in out and "Traceback" not in out
        # An account no workflow follows is answered by the ledger: paid, no next step.
        code, out = await _cli(env, "status", settled["account_number"])
        assert code == 0 and "paid" in out and "next:" not in out and "Traceback" not in out
        code, out = await _cli(env, "hold", first, "--reason", "dispute")
        assert code == 3 and "no longer followed up" in out and "Traceback" not in out

        # Approving a request after the balance was paid: the task is closed, exit 4.
        code, out = await _cli(env, "write-off", second, "--reason", "moved abroad")
        assert code == 0, out
        task_id = out.strip().rsplit(" ", 1)[-1]
        code, out = await _cli(env, "pay", second, "145.00", "--ref", f"PAY-{second}")
        assert code == 0, out
        await client.get_workflow_handle(
            workflow_id(intake.account_id(second)), result_type=EscalationResult
        ).result()
        code, out = await _cli(env, "approve", task_id, user="sup-7")
        assert code == 4 and "TaskDecided" in out and "Traceback" not in out

    # Temporal unreachable: exit 5, one line (the worklist needs only the database).
    down = dict(env, DUNNING_TEMPORAL__ADDRESS=f"127.0.0.1:{_free_port()}")
    # Temporal unreachable: the ledger's view, said as such (exit 0); actions need Temporal (5).
    code, out = await _cli(down, "status", second)
    assert code == 0 and "ledger's view only" in out and "Traceback" not in out, out
    code, out = await _cli(down, "hold", fourth, "--reason", "dispute")
    assert code == 5 and "Traceback" not in out, out
    code, out = await _cli(down, "worklist", "--all")
    assert code == 0 and task_id[:8] in out
