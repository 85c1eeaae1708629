"""The escalation ladder on the time-skipping server, one workflow per test."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from activities.letters import letter_pdf
from config.settings import Settings
from models.orm import Account, AccountStatus, Communication, CommunicationStatus, StaffTask
from models.payloads import (
    BalanceState,
    Decision,
    EscalationResult,
    StepDecision,
    StepOutcome,
)
from services.ledger_status import account_status
from starter import ActionRejected, Intake, decide_step, get_status, workflow_id
from tests.factories import balance_row, patient_day, write_csv
from tests.support.clock import (
    BEFORE_JULY_FOURTH,
    NEW_YORK,
    TUESDAY_MORNING,
    advance_to,
    in_waking_hours,
)
from tests.support.scenario import RecordHistory
from worker import build_worker

pytestmark = pytest.mark.timeskipping

LADDER_BEFORE_REFERRAL = [
    "statement-1",
    "notice-1",
    "reminder-1",
    "statement-2",
    "call-1",
    "statement-3",
    "final-notice",
]


async def _import_one(intake: Intake, tmp_path: Path, **overrides: str) -> tuple[str, str]:
    row = balance_row(**overrides)
    await intake.import_balances(write_csv(tmp_path / "balances.csv", [row]))
    _rows[row["account_number"]] = row
    return row["account_number"], intake.account_id(row["account_number"])


_rows: dict[str, dict[str, str]] = {}

EXPECTED_DAYS = {
    "statement-1": 0,
    "notice-1": 6,  # day 4 is Saturday 16 January: Monday 18
    "reminder-1": 21,
    "statement-2": 30,
    "call-1": 41,  # day 40 is Sunday 21 February: Monday 22
    "statement-3": 62,  # day 60 is Saturday 13 March: Monday 15, after the DST change
    "final-notice": 90,
}


async def test_120_day_ladder_walked_by_skipping_time(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    record_history: RecordHistory,
) -> None:
    client = ts_env.client
    intake = Intake(session_factory, client, settings)
    async with build_worker(client, settings, session_factory):
        # Tuesday 12 January 2027, 10:00 in New York; day 0 is sent at once. The ladder then meets
        # a Saturday (notice-1's day 4), a Sunday (call-1's day 40), the spring DST change and
        # a Saturday right before it (statement-3's day 60).
        start = await advance_to(ts_env, TUESDAY_MORNING)
        number, account_id = await _import_one(intake, tmp_path)

        await ts_env.sleep(dt.timedelta(days=125))
        status = await get_status(client, account_id)
        sent = [r for r in status.history if r.outcome is StepOutcome.SENT]
        assert [r.step_id for r in sent] == LADDER_BEFORE_REFERRAL
        # Each step on or after its day offset, in order, inside 08:00-21:00 New York time.
        days = {
            "statement-1": 0,
            "notice-1": 4,
            "reminder-1": 21,
            "statement-2": 30,
            "call-1": 40,
            "statement-3": 60,
            "final-notice": 90,
        }
        for record in sent:
            offset = patient_day(record.at, start)
            assert days[record.step_id] <= offset <= days[record.step_id] + 5, record
            assert in_waking_hours(record.at, NEW_YORK), record  # 08:00-21:00, DST-aware
            assert record.at.astimezone(NEW_YORK).weekday() < 5, record  # business days only
        # On this calendar: weekend steps move to the Monday, nothing else moves.
        assert {r.step_id: patient_day(r.at, start) for r in sent} == EXPECTED_DAYS
        assert [r.at for r in sent] == sorted(r.at for r in sent)
        assert {r.step_id: r.channel.value for r in sent if r.channel} == {
            "statement-1": "letter",
            "notice-1": "email",
            "reminder-1": "email",
            "statement-2": "letter",
            "call-1": "call",
            "statement-3": "letter",
            "final-notice": "letter",
        }
        # The referral waits for a supervisor.
        assert status.state is BalanceState.AWAITING_APPROVAL
        with session_factory() as session:
            task = session.scalars(
                select(StaffTask).where(
                    StaffTask.account_id == uuid.UUID(account_id),
                    StaffTask.step_id == "agency-referral",
                )
            ).one()
            rows = session.scalars(
                select(Communication).where(Communication.account_id == task.account_id)
            ).all()
            assert len(rows) == 7 and all(r.status is CommunicationStatus.SENT for r in rows)
            letter = next(r for r in rows if r.step_id == "statement-1")
            assert "Amount due: $55.00" in (letter.body or "")
            pdf = PdfReader(io.BytesIO(letter_pdf(letter)))  # the letter, as printed
            assert "$55.00" in "".join(page.extract_text() for page in pdf.pages)

        with pytest.raises(ActionRejected, match="may not decide"):
            await decide_step(
                client,
                account_id,
                StepDecision(
                    task_id=str(task.id),
                    decision=Decision.APPROVE,
                    decided_by="clerk-1",
                    role="clerk",
                ),
            )
        answer = await decide_step(
            client,
            account_id,
            StepDecision(
                task_id=str(task.id),
                decision=Decision.APPROVE,
                decided_by="sup-1",
                role="supervisor",
            ),
        )
        assert answer.decision is Decision.APPROVE and answer.subject == "agency-referral"
        await ts_env.sleep(dt.timedelta(days=1))
        status = await get_status(client, account_id)
        assert status.history[-1].step_id == "agency-referral"
        assert status.history[-1].outcome is StepOutcome.SENT
        # Approved: the placement letter went out, the account is exported and placed; the
        # practice stops contact (the agency inherits the balance) and the workflow ends.
        handle = client.get_workflow_handle(workflow_id(account_id), result_type=EscalationResult)
        result = await handle.result()
        assert result.state is BalanceState.PLACED and result.balance_cents == 5500
        assert result.contacts == 8
        placements = list((Path(settings.data_dir) / "agency").glob("placements-*.csv"))
        assert len(placements) == 1
        lines = placements[0].read_text().splitlines()
        assert len(lines) == 2 and lines[1].startswith(number + ",") and ",55.00," in lines[1]
        await record_history("ladder_approved_and_placed", handle)
    with session_factory() as session:
        account = session.get(Account, task.account_id)
        assert account is not None and account.status is AccountStatus.PLACED
        first_letter = session.scalars(
            select(Communication.sent_at).where(
                Communication.account_id == task.account_id, Communication.step_id == "statement-1"
            )
        ).one()
    # Issue 17: the first statement's date is recorded when it goes out and reaches the agency,
    # with the last contact and the balance by age.
    assert first_letter is not None and account.first_statement_at == first_letter
    placed = next(csv.DictReader(io.StringIO(placements[0].read_text())))
    assert placed["first_statement_on"] == first_letter.date().isoformat()
    assert placed["last_contact_on"] >= placed["first_statement_on"]
    assert sum(float(v) for k, v in placed.items() if k.startswith("balance_")) == 55
    # A payment after placement: `status` shows the live ledger, the agency gets an update row.
    await Intake(session_factory, None, settings).post_payment_fact(number, 1500, f"AG-{number}")
    view = await account_status(session_factory, None, number)
    assert (view.state, view.balance_cents) == (BalanceState.PLACED, 4000)
    updates = list((Path(settings.data_dir) / "agency").glob("agency-updates-*.csv"))
    update_rows = list(csv.DictReader(io.StringIO(updates[0].read_text())))
    # The day's file is shared by every account placed today: this account's rows.
    assert [
        (r["change"], r["amount"], r["balance"])
        for r in update_rows
        if r["account_number"] == number
    ] == [("payment", "-15.00", "40.00")]


async def test_payment_mid_ladder_ends_it_and_duplicates_change_nothing(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    record_history: RecordHistory,
) -> None:
    client = ts_env.client
    intake = Intake(session_factory, client, settings)
    async with build_worker(client, settings, session_factory):
        # Day 4 (notice-1) is Monday 5 July 2027, Independence Day observed: it moves to Tuesday.
        start = await advance_to(ts_env, BEFORE_JULY_FOURTH)
        number, account_id = await _import_one(intake, tmp_path)
        await ts_env.sleep(dt.timedelta(days=25))
        assert await intake.post_payment(number, 2000, "PAY-MID-1") == (True, 3500)
        assert await intake.post_payment(number, 2000, "PAY-MID-1") == (False, 3500)
        status = await get_status(client, account_id)
        assert (status.balance_cents, status.paid_cents) == (3500, 2000)
        assert [r.step_id for r in status.history] == ["statement-1", "notice-1", "reminder-1"]
        assert patient_day(status.history[1].at, start) == 5
        assert status.next_step is not None and status.next_step.step_id == "statement-2"

        # A new charge joins the same workflow run.
        run_id = (await client.get_workflow_handle(workflow_id(account_id)).describe()).run_id
        extra = dict(
            _rows[number],
            charge_ref="C-EXTRA",
            charges="12.00",
            insurance_paid="0",
            insurance_adjustment="0",
        )
        await intake.import_balances(write_csv(tmp_path / "extra.csv", [extra]))
        handle = client.get_workflow_handle(workflow_id(account_id), result_type=EscalationResult)
        assert (await handle.describe()).run_id == run_id
        assert (await get_status(client, account_id)).balance_cents == 4700

        await ts_env.sleep(dt.timedelta(days=10))
        assert await intake.post_payment(number, 4700, "PAY-MID-2") == (True, 0)
        result = await handle.result()
        assert result.state is BalanceState.PAID
        # statement-2 (day 30) went out before the payment; nothing after it.
        assert [r.step_id for r in (await get_status(client, account_id)).history][
            -1
        ] == "statement-2"
        await record_history("paid_mid_ladder_with_new_charge", handle)
