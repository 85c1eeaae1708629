"""Bankruptcy through the front door on the dev server (issue 11, issue 17 item 3).

A filing stays the pre-petition balance at once; post-petition visits, already on the account or
imported later, are collected as a balance of their own whose statements list only their own
visits; the stayed balance never turns ``open`` again.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.orm import Account, AccountStatus, ChargeLine, Communication
from models.payloads import BalanceState, EscalationResult
from services.identity import SYSTEM
from services.users import add_user, issue_token
from starter import Intake, get_status, workflow_id
from tests.factories import balance_row, instant_policy, midday_zone, policy_in, write_csv
from tests.support.cli import cli_env, run_dunning
from tests.support.waits import eventually
from worker import build_worker

pytestmark = pytest.mark.devserver

FILED = "2026-11-02"


def _token(session_factory: sessionmaker[Session]) -> str:
    with session_factory.begin() as session:
        name = f"clerk-bk-{uuid.uuid4().hex[:6]}"
        add_user(session, name, ["billing_lead"], SYSTEM)  # reports and imports
        return issue_token(session, SYSTEM, user=name)[0]


def _account(session_factory: sessionmaker[Session], number: str) -> Account:
    with session_factory() as session:
        return session.scalars(select(Account).where(Account.account_number == number)).one()


def _statement_visits(session_factory: sessionmaker[Session], number: str) -> list[str]:
    """The visits the account's first statement lists (the letter as printed)."""
    with session_factory() as session:
        letter = session.scalars(
            select(Communication.letter)
            .join(Account, Account.id == Communication.account_id)
            .where(Account.account_number == number, Communication.step_id == "statement-1")
        ).one_or_none()
    return [line["description"] for line in (letter or {}).get("lines", [])]


async def test_bankruptcy_stays_pre_petition_visits_and_collects_post_petition_on_their_own(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    database_url: str,
) -> None:
    client = dev_env.client
    intake = Intake(session_factory, client, settings)
    env = cli_env(settings, database_url, client, DUNNING_TOKEN=_token(session_factory))
    policy = policy_in(settings, instant_policy(tmp_path, midday_zone()))
    # The CLI's own import looks the policy up by name in the same folders.
    env["DUNNING_PRACTICE__POLICY_DIRS"] = json.dumps(
        [str(d) for d in settings.practice.policy_dirs]
    )
    money = {"insurance_paid": "0", "insurance_adjustment": "0", "policy": policy}
    # The issue's case: a $300 pre-petition visit; an $80 visit comes after the filing.
    pre = balance_row(charges="300.00", description="Pre-petition visit", **money)
    pre.update(time_zone=midday_zone(), service_date="2026-10-01")
    number = pre["account_number"]
    # A second account already carries a post-petition visit when the filing is reported.
    other = balance_row(charges="200.00", description="Old visit", **money)
    other.update(time_zone=midday_zone(), service_date="2026-10-05")
    recent = dict(other, charge_ref=f"{other['charge_ref']}-P", charges="50.00")
    recent.update(service_date="2026-11-10", description="Recent visit")
    async with build_worker(client, settings, session_factory):
        await intake.import_balances(write_csv(tmp_path / "a.csv", [pre, other, recent]))

        async def statements_sent() -> bool:
            return bool(
                _statement_visits(session_factory, number)
                and _statement_visits(session_factory, other["account_number"])
            )

        await eventually(statements_sent)

        for account_number in (number, other["account_number"]):
            code, out = await run_dunning(
                env, "report", "bankruptcy", account_number, "--filed", FILED, "--chapter", "7"
            )
            assert code == 0, out
            result = await client.get_workflow_handle(
                workflow_id(intake.account_id(account_number)), result_type=EscalationResult
            ).result()
            assert result.state is BalanceState.STOPPED
        assert f"moved to {other['account_number']}.2" in out

        # The post-petition $80 visit arrives with the nightly export (the $300 row again).
        visit = dict(pre, charge_ref=f"{pre['charge_ref']}-N", charges="80.00")
        visit.update(service_date="2026-11-20", description="Post-petition visit")
        code, out = await run_dunning(
            env, "import", "balances", str(write_csv(tmp_path / "b.csv", [pre, visit]))
        )
        assert code == 0, out
        assert f"warning: row 3: account_number: {number} is stopped" in out
        own = f"{number}.2"
        for account_number, visit_name in (
            (own, "Post-petition visit"),
            (
                f"{other['account_number']}.2",
                "Recent visit",
            ),
        ):
            # Its own ledger lines only; its first statement lists them, or waits a day for the
            # guarantor's other account's letter of today (one letter a day to one person).
            assert _ledger_visits(session_factory, account_number) == [visit_name]

            async def statement_or_waiting(n: str = account_number) -> list[str] | None:
                visits = _statement_visits(session_factory, n)
                view = await get_status(client, intake.account_id(n))
                if visits:
                    return visits
                return ["waiting"] if "other accounts" in view.waiting_for else None

            assert await eventually(statement_or_waiting) in ([visit_name], ["waiting"])

        # The stayed balance stays stopped at $300; the new ones are collected on their own.
        stayed = _account(session_factory, number)
        assert (stayed.status, stayed.balance_cents) == (AccountStatus.STOPPED, 30000)
        split = _account(session_factory, other["account_number"])
        assert (split.status, split.balance_cents) == (AccountStatus.STOPPED, 20000)
        for account_number, cents in ((own, 8000), (f"{other['account_number']}.2", 5000)):
            view = await get_status(client, intake.account_id(account_number))
            assert view.balance_cents == cents and view.state is not BalanceState.STOPPED
        code, out = await run_dunning(env, "status", number)
        assert code == 0 and "stopped" in out and "300.00" in out, out

        # The guarantor dies: reported on the first account, the balance that continues it
        # (the same person's) goes to the estate queue too.
        code, out = await run_dunning(env, "report", "death", number, "--on", "2026-11-25")
        assert code == 0, out
        result = await client.get_workflow_handle(
            workflow_id(intake.account_id(own)), result_type=EscalationResult
        ).result()
        assert result.state is BalanceState.DECEASED

        async def in_estate() -> bool:
            return _account(session_factory, own).status is AccountStatus.ESTATE

        await eventually(in_estate)


def _ledger_visits(session_factory: sessionmaker[Session], number: str) -> list[str]:
    with session_factory() as session:
        return list(
            session.scalars(
                select(ChargeLine.description)
                .join(Account, Account.id == ChargeLine.account_id)
                .where(Account.account_number == number)
            )
        )
