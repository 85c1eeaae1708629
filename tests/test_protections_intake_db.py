"""Patient and guarantor, No Surprises Act amounts at intake (issue 18, items 4 and 7).

Before: a balance row had no patient apart from the guarantor and no date of birth (a minor
guarantor was undetectable), no good-faith estimate and no NSA-protected amount.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from models.imports import BalanceRow, CsvImportError
from models.orm import ChargeLine, Guarantor, Patient, ProtectionFlag
from models.orm import repositories as repo
from models.orm.protections import FlagKind
from models.protections import age_on, majority_date, nsa_dispute_eligible
from services import protections
from starter import Intake
from tests.factories import balance_row, write_csv


def row_suffix() -> str:
    return uuid.uuid4().hex[:8]


def _born_18_years_before(day: dt.date, days: int) -> dt.date:
    """A birth date whose 18th birthday is ``days`` before ``day`` (negative: after)."""
    eighteenth = day - dt.timedelta(days=days)
    try:
        return eighteenth.replace(year=eighteenth.year - 18)
    except ValueError:  # 29 February
        return eighteenth.replace(year=eighteenth.year - 18, day=28)


async def test_a_guarantor_under_18_is_refused_with_a_clear_row_error(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    minor = (dt.date.today() - dt.timedelta(days=17 * 365)).isoformat()
    rows = [balance_row(), balance_row(guarantor_dob=minor)]
    intake = Intake(session_factory, None, settings)
    with pytest.raises(CsvImportError) as caught:
        await intake.import_balances(write_csv(tmp_path / "b.csv", rows), dry_run=True)
    [error] = caught.value.errors
    assert (error.row, error.field) == (3, "guarantor_dob")
    assert "the guarantor is under 18" in error.message
    assert "parent or guardian" in error.message


async def test_nsa_protected_above_the_visit_balance_is_a_row_error(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    row = balance_row(charges="100.00", insurance_paid="0", insurance_adjustment="0")
    row["nsa_protected"] = "100.01"
    intake = Intake(session_factory, None, settings)
    with pytest.raises(CsvImportError) as caught:
        await intake.import_balances(write_csv(tmp_path / "b.csv", [row]), dry_run=True)
    assert "nsa_protected: more than the visit's balance" in str(caught.value)


def test_the_400_dollar_line_is_exact() -> None:
    assert nsa_dispute_eligible(50000, 10000)
    assert not nsa_dispute_eligible(49999, 10000)  # $399.99 over
    assert not nsa_dispute_eligible(90000, None)  # no estimate given


def test_patient_is_kept_apart_from_the_guarantor_and_the_protected_amount_is_not_owed(
    settings: Settings, db_session: Session
) -> None:
    intake = Intake(sessionmaker(bind=db_session.get_bind()), None, settings)
    row = BalanceRow.model_validate(
        balance_row(
            charges="300.00",
            insurance_paid="0",
            insurance_adjustment="0",
            nsa_protected="120.00",
            good_faith_estimate="250.00",
            guarantor_dob="1980-05-01",
            patient_id="P-CHILD-1",
            patient_first_name="Kid",
            patient_last_name="Synthetic",
            patient_dob="2014-03-02",
        )
    )
    inp, charges = intake.post_account(db_session, row.account_number, [row])
    db_session.flush()
    account = repo.account_by_number(db_session, row.account_number)
    assert account is not None
    assert account.balance_cents == 18000 and [c.amount_cents for c in charges] == [18000]
    line = db_session.scalars(select(ChargeLine).where(ChargeLine.account_id == account.id)).one()
    patient = db_session.scalars(select(Patient).where(Patient.id == line.patient_id)).one()
    guarantor = db_session.get(Guarantor, account.guarantor_id)
    assert guarantor is not None
    assert (patient.first_name, patient.date_of_birth) == ("Kid", dt.date(2014, 3, 2))
    assert patient.guarantor_id == guarantor.id
    # Messages go to the guarantor: the workflow's contact profile is the guarantor's.
    assert guarantor.first_name == "Testy" and guarantor.date_of_birth == dt.date(1980, 5, 1)
    assert inp.profile.channels  # built from the guarantor's contact points
    assert not line.nsa_dispute_eligible  # $50 over the estimate
    assert not db_session.scalars(
        select(ProtectionFlag).where(ProtectionFlag.account_id == account.id)
    ).all()


def test_a_patient_reaching_18_is_flagged_for_review_once(
    settings: Settings, db_session: Session
) -> None:
    intake = Intake(sessionmaker(bind=db_session.get_bind()), None, settings)
    today = dt.date.today()
    adult = _born_18_years_before(today, 1)  # turned 18 yesterday
    child = _born_18_years_before(today, -1)  # turns 18 tomorrow
    assert age_on(adult, today) == 18 and age_on(child, today) == 17
    numbers = []
    for i, dob in enumerate((adult, child)):
        row = BalanceRow.model_validate(
            balance_row(
                patient_id=f"P-{i}-{row_suffix()}",
                patient_first_name="Kid",
                patient_last_name="Synthetic",
                patient_dob=dob.isoformat(),
            )
        )
        intake.post_account(db_session, row.account_number, [row])
        numbers.append(row.account_number)
    db_session.flush()
    assert protections.flag_patients_reaching_majority(db_session, today) >= 1
    assert protections.flag_patients_reaching_majority(db_session, today) == 0  # idempotent
    flagged: dict[str, list[ProtectionFlag]] = {}
    for n in numbers:
        account = repo.account_by_number(db_session, n)
        assert account is not None
        flagged[n] = list(
            db_session.scalars(
                select(ProtectionFlag).where(
                    ProtectionFlag.account_id == account.id,
                    ProtectionFlag.kind == FlagKind.REACHED_MAJORITY.value,
                )
            )
        )
    assert len(flagged[numbers[0]]) == 1 and flagged[numbers[0]][0].due_on == majority_date(adult)
    assert flagged[numbers[1]] == []


@pytest.mark.parametrize(("state", "barred"), [("NY", True), ("TX", False)])
def test_a_time_barred_debt_is_flagged_at_import(
    settings: Settings, db_session: Session, state: str, barred: bool
) -> None:
    intake = Intake(sessionmaker(bind=db_session.get_bind()), None, settings)
    row = BalanceRow.model_validate(balance_row(service_date="2017-06-01", state=state))
    intake.post_account(db_session, row.account_number, [row])
    db_session.flush()
    account = repo.account_by_number(db_session, row.account_number)
    assert account is not None
    flags = db_session.scalars(
        select(ProtectionFlag).where(
            ProtectionFlag.account_id == account.id,
            ProtectionFlag.kind == FlagKind.TIME_BARRED.value,
        )
    ).all()
    assert len(flags) == int(barred)
    if barred:
        assert flags[0].due_on == dt.date(2020, 6, 1)  # New York: 3 years (CPLR 214-i)
