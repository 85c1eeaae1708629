"""Payment-plan affordability caps and the missed-appointment fee cap (issue 18, "not supported").

Before: a plan asking a Colorado patient $150 a month on a $3,000 monthly income was agreed (the
state caps a clinician's plan at 2% of monthly income, a hospital's at 4%; Maryland hospitals at
5%), and a $75 missed-appointment fee was imported under a policy meant for $50 fees. Now the
decision core's rules (``workflows.protections``; the state table with its sources in
``workflows.state_rules``) refuse both, through the service layer's front doors.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.loader import load_policy
from config.settings import Settings
from models.actions import Installment
from models.imports import BalanceRow, CsvImportError
from models.orm import AuditEvent
from services import intake as intake_service
from services import staff
from services.context import Services
from services.errors import Refused, Rejection
from services.identity import Actor
from starter import Intake
from tests.factories import balance_row, write_csv
from workflows.protections import fee_cap_problem, plan_affordability_problem
from workflows.state_rules import STATE_RULES, effective_rule

CLERK = Actor(id="clerk-1", name="Clerk One", roles=frozenset({"staff"}))
PHYSICIAN = load_policy("physician").policy  # no state, not a hospital
HOSPITAL = load_policy("hospital-501r").policy  # IRS 501(r): a hospital
FEES = load_policy("dental-missed-appointment").policy


def _monthly(amount_cents: int, months: int = 3) -> list[Installment]:
    return [
        Installment(due_on=dt.date(2027, 1 + m, 15), amount_cents=amount_cents)
        for m in range(months)
    ]


def test_the_caps_are_in_the_state_table_with_their_sources() -> None:
    colorado, maryland = STATE_RULES["CO"], STATE_RULES["MD"]
    assert (colorado.plan_cap_bp_hospital, colorado.plan_cap_bp_clinician) == (400, 200)
    assert (maryland.plan_cap_bp_hospital, maryland.plan_cap_bp_clinician) == (500, None)
    assert any("HB 21-1198" in s for s in colorado.sources)
    assert any("hospital payment plans" in s for s in maryland.sources)
    # Both states: the more protective (lower) cap.
    assert effective_rule("CO", "MD").plan_cap_bp_hospital == 400


def test_a_colorado_residents_plan_is_capped_at_2_percent_of_income_for_a_clinician() -> None:
    income = 300_000  # $3,000.00 a month: at most $60.00 a month
    assert plan_affordability_problem(PHYSICIAN, "CO", _monthly(6000), income) == ""
    refused = plan_affordability_problem(PHYSICIAN, "CO", _monthly(6001), income)
    assert refused.startswith("installments: $60.01 due in 2027-01 is above $60.00")
    assert "CO caps clinician payment plans at 2% of monthly income" in refused
    assert "HB 21-1198" in refused
    # Two installments in one month count together.
    twice = [
        Installment(due_on=dt.date(2027, 1, 1), amount_cents=4000),
        Installment(due_on=dt.date(2027, 1, 20), amount_cents=4000),
    ]
    assert "$80.00 due in 2027-01" in plan_affordability_problem(PHYSICIAN, "CO", twice, income)
    # Elsewhere, no state cap.
    assert plan_affordability_problem(PHYSICIAN, "NY", _monthly(15000), None) == ""


def test_hospitals_get_their_states_cap_and_the_income_must_be_known() -> None:
    income = 300_000
    assert plan_affordability_problem(HOSPITAL, "CO", _monthly(12000), income) == ""  # 4%
    assert "4% of monthly income" in plan_affordability_problem(
        HOSPITAL, "CO", _monthly(12001), income
    )
    assert plan_affordability_problem(HOSPITAL, "MD", _monthly(15000), income) == ""  # 5%
    assert "MD caps hospital" in plan_affordability_problem(HOSPITAL, "MD", _monthly(15001), income)
    assert plan_affordability_problem(PHYSICIAN, "MD", _monthly(15001), income) == ""
    missing = plan_affordability_problem(HOSPITAL, "MD", _monthly(100), None)
    assert missing.startswith("monthly_income: MD caps hospital payment plans at 5%")


def _post(settings: Settings, session_factory: sessionmaker[Session], **row: str) -> str:
    intake = Intake(session_factory, None, settings)
    parsed = BalanceRow.model_validate(balance_row(**row))
    with session_factory.begin() as session:
        intake.post_account(session, parsed.account_number, [parsed])
    return parsed.account_number


def test_the_plan_front_door_refuses_a_plan_above_the_cap_and_audits_it(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    number = _post(
        settings,
        session_factory,
        state="CO",
        city="Denver",
        postal_code="80202",
        time_zone="America/Denver",
        charges="300.00",
        insurance_paid="0",
        insurance_adjustment="0",
    )
    svc = Services(settings, session_factory)  # no Temporal: refused before the workflow
    with pytest.raises(Refused) as refused:
        asyncio.run(staff.plan(svc, CLERK, number, _monthly(10000), monthly_income_cents=300_000))
    assert refused.value.kind is Rejection.INVALID_REQUEST
    assert "CO caps clinician payment plans at 2% of monthly income" in refused.value.message
    with pytest.raises(Refused) as no_income:
        asyncio.run(staff.plan(svc, CLERK, number, _monthly(10000)))
    assert no_income.value.message.startswith("monthly_income:")
    # Within the cap the plan passes the check and goes on to the workflow (here: not running).
    affordable = [Installment(due_on=dt.date(2027, 1 + m, 15), amount_cents=6000) for m in range(5)]
    with pytest.raises(Refused) as onward:
        asyncio.run(staff.plan(svc, CLERK, number, affordable, monthly_income_cents=300_000))
    assert onward.value.kind is not Rejection.INVALID_REQUEST
    with session_factory() as s:
        outcomes = s.scalars(
            select(AuditEvent.detail["kind"].astext).where(AuditEvent.action == "plan")
        ).all()
    assert outcomes.count(Rejection.INVALID_REQUEST.value) >= 2


def test_a_missed_appointment_fee_above_the_cap_is_refused_naming_the_row(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    assert FEES.thresholds.missed_appointment_fee_cap == 5000
    assert fee_cap_problem(FEES, 5000) == ""
    assert fee_cap_problem(PHYSICIAN, 50_000) == ""  # a policy without a fee cap
    rows = [
        balance_row(
            policy="dental-missed-appointment",
            charges="50.00",
            insurance_paid="0",
            insurance_adjustment="0",
            description="Missed appointment",
        ),
        balance_row(
            policy="dental-missed-appointment",
            charges="75.00",
            insurance_paid="0",
            insurance_adjustment="0",
            description="Missed appointment",
        ),
    ]
    csv_path = write_csv(tmp_path / "fees.csv", rows)
    intake = Intake(session_factory, None, settings)
    with pytest.raises(CsvImportError) as bad:
        asyncio.run(intake.import_balances(csv_path))
    (error,) = bad.value.errors
    assert (error.row, error.field) == (3, "charges")
    assert "$75.00 is above the missed-appointment fee cap of $50.00" in error.message
    # The API's front door: the same rule, naming the charge.
    parsed = [BalanceRow.model_validate(rows[1])]
    with pytest.raises(intake_service.ChargeRefused, match=r"charges\[0\]\.charges: \$75\.00"):
        asyncio.run(intake_service.post_account(intake, parsed, "integration"))
