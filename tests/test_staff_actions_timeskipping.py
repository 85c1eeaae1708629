"""Staff decisions and account events end to end, one workflow per test on the time-skipping server.

Each scenario imports a synthetic $300.00 balance on ``tests/policies/staff-test.yaml`` (every day
open, fallback chains), skips time, acts as staff or as an outside system would, and checks the
workflow, the ledger and the outbox. Each records its history for the replay tests.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from config.loader import load_policy
from config.settings import Settings
from models.actions import (
    ChannelEventKind,
    ChannelEventSignal,
    HardshipRequest,
    HoldReason,
    HoldRequest,
    Installment,
    LifeEventKind,
    LifeEventSignal,
    PlanRequest,
    ReferralRequest,
    SettlementRequest,
    WriteOffRequest,
)
from models.orm import (
    AccountStatus,
    ChannelPreference,
    Communication,
    StaffTask,
    TaskKind,
    TaskStatus,
)
from models.orm import repositories as repo
from models.payloads import (
    BalanceState,
    CallResult,
    ChargeSignal,
    Decision,
    EscalationInput,
    EscalationResult,
)
from models.policy import Channel
from starter import (
    ActionRejected,
    Intake,
    get_account,
    get_status,
    grant_hardship,
    hold,
    propose_settlement,
    request_referral,
    request_write_off,
    set_payment_plan,
    signal,
    start_or_join,
    workflow_id,
)
from tests.factories import balance_row, patient_day, write_csv
from tests.support.clock import (
    BEFORE_FALL_BACK,
    FRIDAY_EVENING,
    SATURDAY_NOON,
    TUESDAY_MORNING,
    advance_to,
)
from tests.support.scenario import POLICIES, RecordHistory, StaffCase
from worker import build_worker

pytestmark = pytest.mark.timeskipping


async def test_hardship_granted_mid_ladder(staff_case: StaffCase) -> None:
    async with staff_case() as c:
        await c.at_day(10)
        assert set(await c.sent()) == {"statement-1", "notice-1"}
        # A financial-assistance application holds the ladder while it is reviewed.
        await hold(
            c.client,
            c.account_id,
            HoldRequest(reason=HoldReason.FINANCIAL_ASSISTANCE, requested_by="clerk-1"),
        )
        await c.at_day(40)
        assert (await c.status()).state is BalanceState.ON_HOLD
        assert set(await c.sent()) == {"statement-1", "notice-1"}
        left = await grant_hardship(
            c.client, c.account_id, HardshipRequest(discount_percent=60, granted_by="fa-officer")
        )
        assert left.balance_cents == 12000
        # The hold is lifted; the later steps moved by the 30 days held.
        await c.at_day(62)
        sent = await c.sent()
        assert 60 <= sent["statement-2"][0] <= 61
        assert (await c.status()).balance_cents == 12000
        assert (
            await grant_hardship(
                c.client,
                c.account_id,
                HardshipRequest(discount_percent=100, granted_by="fa-officer"),
            )
        ).balance_cents == 0
        result = await c.handle().result()
        assert result.state is BalanceState.WRITTEN_OFF and result.balance_cents == 0
        assert c.account().status is AccountStatus.WRITTEN_OFF
        await c.finish("hardship_granted_mid_ladder", pay=False)


async def test_plan_with_a_missed_installment_reenters_the_ladder(staff_case: StaffCase) -> None:
    async with staff_case(start=BEFORE_FALL_BACK) as c:
        await c.at_day(6)
        first = c.start.date()
        plan = PlanRequest(
            agreed_by="clerk-1",
            installments=[
                Installment(due_on=first + dt.timedelta(days=d), amount_cents=10000)
                for d in (15, 45, 75)
            ],
        )
        with pytest.raises(ActionRejected, match="add up to the balance"):
            await set_payment_plan(
                c.client,
                c.account_id,
                PlanRequest(agreed_by="clerk-1", installments=plan.installments[:2]),
            )
        await set_payment_plan(c.client, c.account_id, plan)
        assert (await c.status()).state is BalanceState.ON_PLAN
        await c.at_day(14)
        assert "plan1-1" in await c.sent()  # reminder 3 days before the first installment
        assert await c.intake.post_payment(c.number, 10000, "PLAN-PAY-1") == (True, 20000)
        await c.at_day(44)
        sent = await c.sent()
        assert "plan1-2" in sent and "statement-2" not in sent  # the ladder waits while on plan
        # The second installment is missed: after 5 days' grace the plan breaks and the ladder
        # re-enters at the step the policy names, on that step's own day (60): the first
        # statement's calendar is kept, so no limit counted from it (501(r)) moves earlier.
        await c.at_day(55)
        account = await get_account(c.client, c.account_id)
        assert account.plan is None and [e.kind for e in account.events].count("plan_broken") == 1
        view = await c.status()
        assert view.state is BalanceState.ESCALATING
        assert view.next_step is not None and view.next_step.step_id == "statement-3"
        await c.at_day(62)
        sent = await c.sent()
        assert 60 <= sent["statement-3"][0] <= 61
        assert "statement-2" not in sent
        assert (await c.status()).balance_cents == 20000
        await c.intake.post_payment(c.number, 20000, "PLAN-PAY-2")
        assert (await c.handle().result()).state is BalanceState.PAID
        await c.finish("plan_missed_installment", pay=False)


async def test_settlement_approved_paid_and_closed(staff_case: StaffCase) -> None:
    async with staff_case(start=SATURDAY_NOON) as c:
        await c.at_day(20)
        expires = c.start + dt.timedelta(days=40)
        answer = await propose_settlement(
            c.client,
            c.account_id,
            SettlementRequest(amount_cents=24000, expires_at=expires, proposed_by="clerk-1"),
        )
        # A 20% discount, above the 10% staff limit: not offered yet, a task waits for approval.
        assert not answer.offered and answer.task_id is not None
        task_id = answer.task_id
        with pytest.raises(ActionRejected):
            await c.decide(task_id, Decision.APPROVE, "clerk-1", "supervisor")  # four eyes
        with pytest.raises(ActionRejected):
            await c.decide(task_id, Decision.APPROVE, "clerk-2", "clerk")  # not an approver
        await c.decide(task_id, Decision.APPROVE, "sup-1", "supervisor")
        await c.at_day(21)
        assert (await c.status()).state is BalanceState.SETTLEMENT_OFFERED
        await c.intake.post_payment(c.number, 24000, "SETTLE-1")
        result = await c.handle().result()
        assert result.state is BalanceState.SETTLED and result.balance_cents == 0
        account = await get_account(c.client, c.account_id)
        assert account.written_off_cents == 6000
        assert c.account().status is AccountStatus.SETTLED
        await c.finish("settlement_paid", pay=False)


async def test_settlement_expires_and_the_ladder_goes_on(staff_case: StaffCase) -> None:
    async with staff_case(start=FRIDAY_EVENING) as c:
        await c.at_day(1)
        answer = await propose_settlement(
            c.client,
            c.account_id,
            SettlementRequest(
                amount_cents=28000, expires_at=c.start + dt.timedelta(days=8), proposed_by="clerk-1"
            ),
        )
        assert answer.offered and answer.task_id is None  # 6.7% is within the staff limit
        await c.at_day(6)
        assert "notice-1" not in await c.sent()  # no pressure while the offer stands
        await c.at_day(12)
        account = await get_account(c.client, c.account_id)
        assert account.settlement is None and "settlement_expired" in [
            e.kind for e in account.events
        ]
        sent = await c.sent()
        assert 8 <= sent["notice-1"][0] <= 9
        assert (await c.status()).state is BalanceState.ESCALATING
        await c.finish("settlement_expired")


async def test_write_off_denied_then_approved_by_a_second_person(staff_case: StaffCase) -> None:
    async with staff_case() as c:
        await c.at_day(5)
        with pytest.raises(ActionRejected, match="more than the balance"):
            await request_write_off(
                c.client,
                c.account_id,
                WriteOffRequest(amount_cents=99999, reason="uncollectable", requested_by="clerk-1"),
            )
        first = (
            await request_write_off(
                c.client,
                c.account_id,
                WriteOffRequest(reason="uncollectable", requested_by="clerk-1"),
            )
        ).task_id
        with pytest.raises(ActionRejected, match="already open"):
            await request_write_off(
                c.client, c.account_id, WriteOffRequest(reason="again", requested_by="clerk-2")
            )
        await c.decide(first, Decision.DENY, "sup-1", "supervisor")
        await c.at_day(6)
        assert (await c.status()).balance_cents == 30000
        second = (
            await request_write_off(
                c.client,
                c.account_id,
                WriteOffRequest(reason="patient moved abroad", requested_by="clerk-1"),
            )
        ).task_id
        with pytest.raises(ActionRejected, match="four eyes"):
            await c.decide(second, Decision.APPROVE, "clerk-1", "supervisor")
        with pytest.raises(ActionRejected, match="may not decide"):
            await c.decide(second, Decision.APPROVE, "mgr-1", "manager")
        # Nobody answers for 3 days: the request escalates to the manager.
        await c.at_day(10)
        assert (await get_account(c.client, c.account_id)).tasks[0].roles == [
            "supervisor",
            "manager",
        ]
        await c.decide(second, Decision.APPROVE, "mgr-1", "manager")
        result = await c.handle().result()
        assert result.state is BalanceState.WRITTEN_OFF
        events = [e.kind for e in (await get_account(c.client, c.account_id)).events]
        assert events.count("write_off_denied") == 1 and "approval_escalated" in events
        assert c.account().status is AccountStatus.WRITTEN_OFF
        await c.finish("write_off_denied_then_approved", pay=False)


async def test_agency_referral_blocked_by_501r_then_allowed(staff_case: StaffCase) -> None:
    async with staff_case(policy="staff-test-501r") as c:
        await c.at_day(30)
        with pytest.raises(ActionRejected, match="501"):
            await request_referral(c.client, c.account_id, ReferralRequest(requested_by="clerk-1"))
        await c.at_day(100)  # the final notice (day 90) went out, but 30 days have not passed
        assert "final-notice" in await c.sent()
        with pytest.raises(ActionRejected, match="501"):
            await request_referral(c.client, c.account_id, ReferralRequest(requested_by="clerk-1"))
        await c.at_day(125)
        task_id = (
            await request_referral(c.client, c.account_id, ReferralRequest(requested_by="clerk-1"))
        ).task_id
        await c.decide(task_id, Decision.APPROVE, "sup-1", "supervisor")
        result = await c.handle().result()
        assert result.state is BalanceState.PLACED
        assert c.account().status is AccountStatus.PLACED
        files = list((Path(c.settings.data_dir) / "agency").glob("placements-*.csv"))
        assert len(files) == 1 and c.number in files[0].read_text()
        await c.finish("referral_after_501r_wait", pay=False)


async def test_dispute_hold_resumes_by_itself(staff_case: StaffCase) -> None:
    async with staff_case(start=FRIDAY_EVENING) as c:
        await c.at_day(2)
        with pytest.raises(ActionRejected, match="future"):
            await hold(
                c.client,
                c.account_id,
                HoldRequest(reason=HoldReason.DISPUTE, until=c.start, requested_by="clerk-1"),
            )
        await hold(
            c.client,
            c.account_id,
            HoldRequest(
                reason=HoldReason.DISPUTE,
                until=c.start + dt.timedelta(days=22),
                requested_by="clerk-1",
            ),
        )
        await c.at_day(21)
        assert set(await c.sent()) == {"statement-1"}
        await c.at_day(40)
        sent = await c.sent()
        assert "hold_ended" in [e.kind for e in (await get_account(c.client, c.account_id)).events]
        assert 24 <= sent["notice-1"][0] <= 25  # day 4 moved by the 20 days held
        view = await c.status()
        assert view.next_step is not None and view.next_step.step_id == "statement-2"
        assert patient_day(view.next_step.at, c.start) >= 50  # day 30 moved by the 20 days held
        await c.finish("dispute_hold_resumed")


async def test_stop_then_a_switch_to_letters(staff_case: StaffCase) -> None:
    async with staff_case() as c:
        await c.at_day(1)
        await c.intake.channel_event(
            c.number,
            ChannelEventSignal(
                reference="SMS-IN-1", kind=ChannelEventKind.OPTED_OUT, channel=Channel.SMS
            ),
        )
        await c.at_day(50)
        sent = await c.sent()
        assert sent["notice-1"][1] is Channel.LETTER and sent["reminder-2"][1] is Channel.LETTER
        with c.session_factory() as session:
            account = c.account()
            pref = session.scalars(
                select(ChannelPreference).where(
                    ChannelPreference.guarantor_id == account.guarantor_id,
                    ChannelPreference.channel == Channel.SMS,
                )
            ).one()
            assert pref.opted_out_at is not None and not pref.consent
            sms = session.scalars(
                select(Communication).where(
                    Communication.account_id == account.id, Communication.channel == Channel.SMS
                )
            ).all()
            assert sms == []
        await c.finish("stop_then_letters")


async def test_returned_letter_then_email(staff_case: StaffCase) -> None:
    async with staff_case() as c:
        await c.at_day(2)
        assert (await c.sent())["statement-1"][1] is Channel.LETTER
        await c.intake.channel_event(
            c.number, ChannelEventSignal(reference="RTS-1", kind=ChannelEventKind.LETTER_RETURNED)
        )
        await c.at_day(35)
        sent = await c.sent()
        assert sent["statement-2"][1] is Channel.EMAIL
        assert sent["notice-1"][1] is Channel.SMS
        await c.finish("returned_letter_then_email")


async def test_bankruptcy_stops_everything(staff_case: StaffCase) -> None:
    async with staff_case() as c:
        await c.at_day(10)
        await signal(
            c.client,
            c.account_id,
            "life_event",
            LifeEventSignal(reference="BK-1", kind=LifeEventKind.BANKRUPTCY),
        )
        result = await c.handle().result()
        assert result.state is BalanceState.STOPPED and result.contacts == 2
        assert c.account().status is AccountStatus.STOPPED
        with c.session_factory() as session:
            rows = session.scalars(
                select(Communication).where(Communication.account_id == c.account().id)
            ).all()
            assert sorted(r.step_id for r in rows) == ["notice-1", "statement-1"]
        await c.finish("bankruptcy_stops", pay=False)


async def test_a_long_plan_continues_as_new_and_keeps_its_state(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    record_history: RecordHistory,
) -> None:
    """A 24-month plan outgrows no history: the workflow continues as new, carrying all state.

    Both the first run (which ends by continuing as new) and the last are recorded for the replay
    tests, so a change to what a run carries across, or to when it continues, fails replay.
    """
    client = ts_env.client
    bundle = load_policy(POLICIES / "staff-test.yaml")
    row = balance_row(charges="240.00", insurance_paid="0", insurance_adjustment="0")
    async with build_worker(client, settings, session_factory):
        start = await advance_to(ts_env, TUESDAY_MORNING)
        intake = Intake(session_factory, None, settings)
        # Ledger committed, its start queued in the signal outbox: no workflow yet.
        report = await intake.import_balances(write_csv(tmp_path / "b.csv", [row]))
        assert (report.started_or_joined, report.queued) == (0, 1)
        account_id = intake.account_id(row["account_number"])
        inp = EscalationInput(
            account_id=account_id,
            policy=bundle.policy,
            policy_hash=bundle.hash,
            history_limit=60,
            profile=repo.contact_profile(intake.guarantor(row["account_number"])),
        )
        with session_factory.begin() as session:
            repo.store_policy_version(session, bundle)
        handle = await start_or_join(
            client,
            settings.temporal.task_queue,
            inp,
            ChargeSignal(reference=row["charge_ref"], amount_cents=24000),
        )
        await ts_env.sleep(dt.timedelta(days=3))
        await set_payment_plan(
            client,
            account_id,
            PlanRequest(
                agreed_by="clerk-1",
                installments=[
                    Installment(
                        due_on=start.date() + dt.timedelta(days=30 * (m + 1)), amount_cents=1000
                    )
                    for m in range(24)
                ],
            ),
        )
        for month in range(24):
            await ts_env.sleep(dt.timedelta(days=30))
            await intake_pay(client, account_id, f"PLAN-{month}")
        result = await client.get_workflow_handle(
            workflow_id(account_id), result_type=EscalationResult
        ).result()
        assert result.state is BalanceState.PAID
        first = client.get_workflow_handle(workflow_id(account_id), run_id=handle.result_run_id)
        first_history = await first.fetch_history()
        # The first run ended by continuing as new (not by finishing), and later runs stayed short.
        assert first_history.events[-1].HasField(
            "workflow_execution_continued_as_new_event_attributes"
        )
        final = client.get_workflow_handle(workflow_id(account_id))
        history = await final.fetch_history()
        assert (await final.describe()).run_id != handle.result_run_id
        assert len(history.events) < 120
        reminders = [
            r.step_id
            for r in (await get_status(client, account_id)).history
            if r.step_id.startswith("plan1-")
        ]
        assert sorted(reminders) == sorted(f"plan1-{m + 1}" for m in range(24))  # each once
        await record_history("plan_continued_as_new_first_run", first)
        await record_history("plan_continued_as_new_last_run", final)


async def intake_pay(client: Client, account_id: str, reference: str) -> None:
    from models.payloads import PaymentSignal
    from starter import signal_payment

    await signal_payment(client, account_id, PaymentSignal(reference=reference, amount_cents=1000))


async def test_call_outcomes_feed_back_into_the_ladder(staff_case: StaffCase) -> None:
    """A conversation blocks calls for 7 days (Reg F); a promise to pay holds the ladder."""
    async with staff_case(policy="call-test", start=BEFORE_FALL_BACK) as c:
        await c.at_day(6)
        with c.session_factory() as session:
            task = session.scalars(
                select(StaffTask).where(
                    StaffTask.account_id == c.account().id, StaffTask.kind == TaskKind.CALL
                )
            ).one()
        assert task.step_id == "call-1" and "script" in task.detail
        called = c.start + dt.timedelta(days=5, hours=2)
        await c.intake.record_call_outcome(
            str(task.id), CallResult.REACHED, recorded_by="clerk-1", called_at=called
        )
        await c.at_day(9)
        view = await c.status()
        assert view.next_step is not None and view.next_step.step_id == "call-2"
        assert any("Reg F" in r for r in view.next_step.reasons)
        assert (view.next_step.at - called) >= dt.timedelta(days=7)
        await c.at_day(14)
        with c.session_factory() as session:
            second = session.scalars(
                select(StaffTask).where(
                    StaffTask.account_id == c.account().id, StaffTask.step_id == "call-2"
                )
            ).one()
        promised = (c.start + dt.timedelta(days=20)).date()
        await c.intake.record_call_outcome(
            str(second.id), CallResult.PROMISE_TO_PAY, recorded_by="clerk-1", promised_date=promised
        )
        await c.at_day(15)
        assert (await c.status()).state is BalanceState.ON_HOLD
        events = [e.kind for e in (await get_account(c.client, c.account_id)).events]
        assert events.count("call_outcome") == 2
        await c.finish("call_outcomes")


async def test_paying_closes_open_requests_in_the_worklist(staff_case: StaffCase) -> None:
    async with staff_case() as c:
        await c.at_day(3)
        task_id = (
            await request_write_off(
                c.client,
                c.account_id,
                WriteOffRequest(reason="uncollectable", requested_by="clerk-1"),
            )
        ).task_id
        await c.intake.post_payment(c.number, 30000, f"PAY-{c.number}")
        assert (await c.handle().result()).state is BalanceState.PAID
        with c.session_factory() as session:
            task = session.get(StaffTask, uuid.UUID(task_id))
            assert task is not None and task.status is TaskStatus.EXPIRED
            assert task.reason == "balance closed"
        await c.finish("paid_with_open_request", pay=False)
