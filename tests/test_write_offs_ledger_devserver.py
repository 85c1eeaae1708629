"""What a workflow writes off reaches the ledger: financial assistance (a hardship discount) and an
approved partial write-off lower the ledger's balance at once, as adjustments the account's
ledger lists, and the daily reconciliation finds nothing to repair. Before, the ledger kept the
gross balance until the balance closed, and the reconciliation (which trusts the ledger) told the
workflow to bill the discount again."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.actions import AdjustmentKind, AdjustmentSignal
from models.orm import Account
from models.orm.account import Adjustment
from models.payloads import Decision
from services import queries, staff
from services.context import Services
from services.identity import Actor
from services.reconcile import Reconciler
from starter import Intake, get_status
from tests.factories import balance_row, instant_policy, midday_zone, policy_in, write_csv
from tests.support.waits import eventually
from worker import build_worker

pytestmark = pytest.mark.devserver

CLERK = Actor(id="u-clerk-wo", name="clerk", roles=frozenset({"staff"}))
SUPERVISOR = Actor(id="u-sup-wo", name="sup", roles=frozenset({"supervisor"}))


def _ledger(
    session_factory: sessionmaker[Session], number: str
) -> tuple[int, list[tuple[str, int]]]:
    with session_factory() as session:
        account = session.scalars(select(Account).where(Account.account_number == number)).one()
        rows = session.execute(
            select(Adjustment.kind, Adjustment.amount_cents)
            .where(Adjustment.account_id == account.id)
            .order_by(Adjustment.created_at)
        ).all()
    return account.balance_cents, [(kind.value, cents) for kind, cents in rows]


async def test_hardship_and_an_approved_write_off_are_in_the_ledger_and_stay_granted(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    client = dev_env.client
    zone = midday_zone()
    policy = policy_in(settings, instant_policy(tmp_path, zone))
    row = balance_row(time_zone=zone, policy=policy)  # 55.00 owed
    number = row["account_number"]
    intake = Intake(session_factory, client, settings)
    svc = Services(settings, session_factory, client)
    async with build_worker(client, settings, session_factory):
        await intake.import_balances(write_csv(tmp_path / "a.csv", [row]))
        account_id = intake.account_id(number)

        result = await staff.hardship(svc, CLERK, number, 40)
        assert (result.balance_cents, result.written_off_cents) == (3300, 2200)
        assert _ledger(session_factory, number) == (3300, [("financial_assistance", -2200)])

        task = await staff.write_off(svc, CLERK, number, "small balance", amount_cents=1000)
        await staff.decide(svc, SUPERVISOR, task.task_id, Decision.APPROVE)

        async def written_off() -> bool:
            return _ledger(session_factory, number)[0] == 2300

        assert await eventually(written_off)
        assert _ledger(session_factory, number)[1] == [
            ("financial_assistance", -2200),
            ("write_off", -1000),
        ]
        assert (await get_status(client, account_id)).balance_cents == 2300

        # The daily reconciliation: the ledger and the workflow agree; nothing is billed again.
        report = await Reconciler(session_factory, client, settings).run(
            fix=True, accounts=[uuid.UUID(account_id)]
        )
        assert [d for d in report.drifts or [] if d.account_id == account_id] == []
        assert (await get_status(client, account_id)).balance_cents == 2300

        # The account's ledger lists each once (not again from the workflow's own record).
        view = await queries.account_status(svc, CLERK, number)
        kinds = [e.kind for e in view.status.ledger]
        assert kinds.count("financial_assistance") == 1 and kinds.count("write_off") == 1
        assert "written_off" not in kinds


def test_the_ledger_s_own_write_off_kinds_are_not_posted_as_adjustments() -> None:
    for kind in (AdjustmentKind.FINANCIAL_ASSISTANCE, AdjustmentKind.WRITE_OFF):
        with pytest.raises(ValueError, match="recorded by the action itself"):
            AdjustmentSignal(reference="r-1", kind=kind, amount_cents=-100)
