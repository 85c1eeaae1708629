"""No Surprises Act end to end on the time-skipping server (issue 18, item 4).

Before: with a ``no_surprises_dispute`` hold in place, ``dunning refer`` was accepted, approved and
the account placed; the engine had no good-faith estimate and no NSA-protected amount.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.actions import (
    AdjustmentKind,
    HoldReason,
    HoldRequest,
    Installment,
    PlanRequest,
    ReferralRequest,
    ResumeRequest,
)
from models.orm import Communication, ProtectionFlag
from models.orm import repositories as repo
from models.orm.account import Adjustment
from models.orm.protections import ConsentPurpose, FlagKind, RestrictionKind
from models.payloads import BalanceState, Decision
from models.policy import Channel
from services import protections
from services.identity import Actor
from starter import (
    ActionRejected,
    Intake,
    get_account,
    get_status,
    hold,
    request_referral,
    resume,
    set_payment_plan,
)
from tests.factories import balance_row, policy_in, write_csv
from tests.support.clock import TUESDAY_MORNING, advance_to
from tests.support.scenario import POLICIES, case, no_history
from tests.support.waits import eventually
from worker import build_worker

pytestmark = pytest.mark.timeskipping
CLERK = Actor(id="clerk-1", name="Clerk One", roles=frozenset({"staff"}))


async def test_nsa_dispute_blocks_referral_and_every_message_until_resolved(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    # Billed $300.00 against a good-faith estimate of $100.00: $200 over, not dispute-eligible;
    # the dispute hold applies whatever the amount once a patient has filed.
    async with case(ts_env, settings, session_factory, tmp_path, no_history) as c:
        await c.at_day(2)
        await hold(
            c.client,
            c.account_id,
            HoldRequest(reason=HoldReason.NO_SURPRISES_DISPUTE, requested_by="clerk-1"),
        )
        with pytest.raises(ActionRejected, match="No Surprises Act"):
            await request_referral(c.client, c.account_id, ReferralRequest(requested_by="clerk-1"))
        await c.at_day(100)
        assert set(await c.sent()) == {"statement-1"}  # no letter, text or call while disputed
        with session_factory() as session:
            account = c.account()
            sent = session.scalars(
                select(Communication).where(Communication.account_id == account.id)
            ).all()
            assert [s.step_id for s in sent] == ["statement-1"]
        await resume(c.client, c.account_id, ResumeRequest(requested_by="clerk-1"))
        task_id = (
            await request_referral(c.client, c.account_id, ReferralRequest(requested_by="clerk-1"))
        ).task_id
        # A dispute filed while the referral waits for approval: the approval is refused.
        await hold(
            c.client,
            c.account_id,
            HoldRequest(reason=HoldReason.NO_SURPRISES_DISPUTE, requested_by="clerk-1"),
        )
        with pytest.raises(ActionRejected, match="No Surprises Act"):
            await c.decide(task_id, Decision.APPROVE, "sup-1", "supervisor")
        assert (await c.status()).state is BalanceState.ON_HOLD


async def test_a_bill_400_over_the_estimate_is_flagged_and_its_statement_says_how_to_dispute(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    client = ts_env.client
    intake = Intake(session_factory, client, settings)
    row = balance_row(
        policy=policy_in(settings, POLICIES / "staff-test.yaml"),
        charges="500.00",
        insurance_paid="0",
        insurance_adjustment="0",
        good_faith_estimate="100.00",
        nsa_protected="50.00",
    )
    async with build_worker(client, settings, session_factory):
        await advance_to(ts_env, TUESDAY_MORNING)  # the statement goes out in business hours
        await intake.import_balances(write_csv(tmp_path / "balance.csv", [row]))
        account_id = intake.account_id(row["account_number"])
        await eventually(lambda: _sent(client, account_id))
        with session_factory() as session:
            account = repo.account_by_number(session, row["account_number"])
            assert account is not None
        assert account.balance_cents == 45000  # $500 billed, $50 NSA-protected: not owed
        with session_factory() as session:
            flags = session.scalars(
                select(ProtectionFlag).where(ProtectionFlag.account_id == account.id)
            ).all()
            assert [(f.kind, f.amount_cents) for f in flags] == [
                (FlagKind.NSA_DISPUTE_ELIGIBLE.value, 40000)
            ]
            letter = session.scalars(
                select(Communication).where(
                    Communication.account_id == account.id,
                    Communication.step_id == "statement-1",
                )
            ).one()
        assert letter.channel is Channel.LETTER
        assert letter.body is not None
        assert "No Surprises Act" in letter.body
        assert "$400 or more above the good-faith estimate" in letter.body
        assert "cms.gov/nosurprises" in letter.body


async def _sent(client: Client, account_id: str) -> bool:
    view = await get_status(client, account_id)
    return any(r.step_id == "statement-1" for r in view.history)


async def test_a_2017_new_york_debt_is_time_barred_and_refer_is_refused(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    async with case(
        ts_env,
        settings,
        session_factory,
        tmp_path,
        no_history,
        service_date="2017-06-01",
        state="NY",
    ) as c:
        await c.at_day(1)
        with pytest.raises(ActionRejected, match="time-barred: the 3-year statute of limitations"):
            await request_referral(c.client, c.account_id, ReferralRequest(requested_by="clerk-1"))


async def test_mail_only_reroutes_the_next_text_to_a_letter(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    async with case(ts_env, settings, session_factory, tmp_path, no_history) as c:
        await c.at_day(2)
        with session_factory.begin() as session:
            change = protections.restrict_channels(
                session, CLERK, c.number, RestrictionKind.MAIL_ONLY
            )
        await protections.notify_privacy_change(c.client, change)
        await c.at_day(6)
        sent = await c.sent()
        assert sent["notice-1"][1] is Channel.LETTER  # sms first in its chain, now restricted


async def _restrict_then_lift(
    client: Client, session_factory: sessionmaker[Session], number: str
) -> None:
    for change_of in (protections.restrict_channels, protections.lift_restriction):
        with session_factory.begin() as session:
            change = change_of(session, CLERK, number, RestrictionKind.MAIL_ONLY)
        await protections.notify_privacy_change(client, change)


async def test_lifting_mail_only_lets_the_next_text_go(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    """Before: lifting "mail only" left the opt-out it had written on texts, so notice-1 went by
    letter although the patient had consented to texts and withdrawn the restriction."""
    async with case(ts_env, settings, session_factory, tmp_path, no_history) as c:
        await c.at_day(2)
        await _restrict_then_lift(c.client, session_factory, c.number)
        await c.at_day(6)
        assert (await c.sent())["notice-1"][1] is Channel.SMS


async def test_lifting_mail_only_never_restores_texts_after_a_revocation(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    """A revocation given before the restriction survives its lifting: no text, a letter."""
    async with case(ts_env, settings, session_factory, tmp_path, no_history) as c:
        await c.at_day(1)
        with session_factory.begin() as session:
            stop = protections.revoke_consent(
                session, CLERK, c.number, Channel.SMS, ConsentPurpose.BILLING
            )
        await protections.notify_privacy_change(c.client, stop)
        await c.at_day(2)
        await _restrict_then_lift(c.client, session_factory, c.number)
        await c.at_day(6)
        assert (await c.sent())["notice-1"][1] is Channel.LETTER


async def test_full_assistance_after_a_payment_writes_off_and_refunds(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    async with case(ts_env, settings, session_factory, tmp_path, no_history) as c:
        await c.at_day(1)
        await c.intake.post_payment(c.number, 10000, f"PAY-{c.number}")
        outcome = await protections.approve_financial_assistance(
            session_factory, c.client, CLERK, c.number, 100
        )
        assert (outcome.refund_cents, outcome.write_off_cents) == (10000, 20000)
        # The ledger records the write-off as it is approved, not only when the balance ends.
        with session_factory() as session:
            assert session.execute(
                select(Adjustment.kind, Adjustment.amount_cents).where(
                    Adjustment.account_id == c.account().id
                )
            ).all() == [(AdjustmentKind.FINANCIAL_ASSISTANCE, -20000)]
        assert c.account().balance_cents == 0
        result = await c.handle().result()
        assert result.state is BalanceState.WRITTEN_OFF and result.balance_cents == 0
        with session_factory() as session:
            kinds = session.scalars(
                select(ProtectionFlag.kind).where(ProtectionFlag.account_id == c.account().id)
            ).all()
        assert FlagKind.REFUND_DUE.value in kinds


async def test_incomplete_application_letter_and_ecas_suspended_until_the_deadline(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    async with case(
        ts_env, settings, session_factory, tmp_path, no_history, policy="staff-test-501r"
    ) as c:
        await c.at_day(1)
        deadline = (c.start + dt.timedelta(days=30)).date()
        await protections.financial_assistance_incomplete(
            session_factory, c.client, CLERK, c.number, ["proof of income"], deadline
        )
        view = await c.status()
        assert view.state is BalanceState.ON_HOLD
        with pytest.raises(ActionRejected, match="501"):
            await request_referral(c.client, c.account_id, ReferralRequest(requested_by="clerk-1"))
        account = await get_account(c.client, c.account_id)
        assert account.hold is not None and account.hold.until is not None
        assert account.hold.until.date() == deadline + dt.timedelta(days=1)


async def test_no_plan_reminder_while_an_nsa_dispute_is_pending(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    async with case(ts_env, settings, session_factory, tmp_path, no_history) as c:
        await c.at_day(1)
        due = (c.start + dt.timedelta(days=10)).date()
        await set_payment_plan(
            c.client,
            c.account_id,
            PlanRequest(
                installments=[Installment(due_on=due, amount_cents=30000)], agreed_by="clerk-1"
            ),
        )
        await hold(
            c.client,
            c.account_id,
            HoldRequest(reason=HoldReason.NO_SURPRISES_DISPUTE, requested_by="clerk-1"),
        )
        await c.at_day(12)
        view = await c.status()
        assert [r.step_id for r in view.history if r.step_id.startswith("plan")] == []
        await resume(c.client, c.account_id, ResumeRequest(requested_by="clerk-1"))
        await c.at_day(13)
        view = await c.status()
        assert view.state is not BalanceState.ON_HOLD
