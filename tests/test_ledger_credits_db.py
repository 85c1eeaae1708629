"""One balance, the ledger's: credits net new charges; references are never silently reused.

Real PostgreSQL; no Temporal client (``Intake(..., None, ...)``): what reaches a workflow is read
from the signal outbox the intake commits with the ledger rows.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from models.imports import CsvImportError
from models.orm import Account, AccountStatus, SignalOutbox
from models.orm.repositories import ReferenceConflict
from services.credits import route_new_lines
from starter import Intake
from tests.factories import balance_row, write_csv


def test_route_new_lines_nets_a_credit_first() -> None:
    # A running ladder follows every line; a negative one is an adjustment.
    running = route_new_lines(5000, True, [("A", 3000), ("B", -1000)])
    assert running.charges == [("A", 3000)] and running.adjustments == [("B", -1000)]
    # No ladder: a credit of 20.00 eats the first 20.00 of new charges, in order.
    netted = route_new_lines(-2000, False, [("A", 1500), ("B", 3000)])
    assert netted.charges == [("B", 2500)] and netted.adjustments == []
    # Still at or below zero: nothing is charged.
    assert route_new_lines(-2000, False, [("A", 2000)]).charges == []
    # Insurance above the charges on one line nets the other line of the same import.
    assert route_new_lines(0, False, [("A", -3000), ("B", 5000)]).charges == [("B", 2000)]


def _outbox(session_factory: sessionmaker[Session], account_number: str) -> list[SignalOutbox]:
    with session_factory() as session:
        account = session.scalars(
            select(Account).where(Account.account_number == account_number)
        ).one()
        return list(
            session.scalars(
                select(SignalOutbox)
                .where(SignalOutbox.account_id == account.id)
                .order_by(SignalOutbox.id)
            ).all()
        )


def _account(session_factory: sessionmaker[Session], number: str) -> Account:
    with session_factory() as session:
        return session.scalars(select(Account).where(Account.account_number == number)).one()


async def test_a_credit_is_never_dunned_and_nets_new_charges(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    intake = Intake(session_factory, None, settings)
    # Insurance paid 130.00 of a 100.00 visit: the patient is owed 30.00.
    row = balance_row(charges="100.00", insurance_paid="130.00", insurance_adjustment="0")
    number = row["account_number"]
    report = await intake.import_balances(write_csv(tmp_path / "a.csv", [row]))
    assert report.new_charges == 0 and report.queued == 0
    assert _account(session_factory, number).balance_cents == -3000
    assert _outbox(session_factory, number) == []

    # A 20.00 charge nets against the credit: still 10.00 in credit, no ladder, no statement.
    small = dict(row, charge_ref=f"{row['charge_ref']}-2", charges="20.00", insurance_paid="0")
    await intake.import_balances(write_csv(tmp_path / "b.csv", [small]))
    assert _account(session_factory, number).balance_cents == -1000
    assert _outbox(session_factory, number) == []

    # A 50.00 charge: 40.00 is owed, and only 40.00 starts the ladder.
    big = dict(row, charge_ref=f"{row['charge_ref']}-3", charges="50.00", insurance_paid="0")
    report = await intake.import_balances(write_csv(tmp_path / "c.csv", [big]))
    account = _account(session_factory, number)
    assert account.balance_cents == 4000 and account.status is AccountStatus.OPEN
    messages = _outbox(session_factory, number)
    assert [(m.name, m.payload["amount_cents"]) for m in messages] == [("add_charge", 4000)]
    assert messages[0].start_input is not None and messages[0].delivered_at is None
    assert report.queued == 1  # no Temporal: the start waits in the outbox


async def test_paying_past_the_balance_leaves_a_credit(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    intake = Intake(session_factory, None, settings)
    row = balance_row()  # 55.00 owed
    await intake.import_balances(write_csv(tmp_path / "a.csv", [row]))
    posted = await intake.post_payment_fact(
        row["account_number"], 8000, "OVER-" + row["charge_ref"]
    )
    assert (posted.new, posted.balance_cents, posted.credit_cents) == (True, -2500, 2500)
    assert posted.delivered is False  # queued: no Temporal here
    names = [m.name for m in _outbox(session_factory, row["account_number"])]
    assert names == ["add_charge", "record_payment"]


async def test_a_reference_reused_with_another_amount_or_account_is_a_conflict(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    intake = Intake(session_factory, None, settings)
    a, b = balance_row(), balance_row()
    await intake.import_balances(write_csv(tmp_path / "a.csv", [a, b]))
    ref = f"PAY-{uuid.uuid4().hex[:8]}"
    first = await intake.post_payment_fact(a["account_number"], 2000, ref)
    again = await intake.post_payment_fact(a["account_number"], 2000, ref)
    assert (first.new, again.new, again.balance_cents) == (True, False, 3500)
    with pytest.raises(ReferenceConflict, match=r"reference: .* 2000 cents, not 2500"):
        await intake.post_payment_fact(a["account_number"], 2500, ref)
    with pytest.raises(ReferenceConflict, match="another account"):
        await intake.post_payment_fact(b["account_number"], 2000, ref)
    # Nothing stored changed, and only the first posting was queued for the workflow.
    assert _account(session_factory, a["account_number"]).balance_cents == 3500
    assert _account(session_factory, b["account_number"]).balance_cents == 5500
    assert [m.name for m in _outbox(session_factory, a["account_number"])].count(
        "record_payment"
    ) == 1

    # A payments file: the conflicting rows are named, and nothing is posted.
    other = f"PAY-{uuid.uuid4().hex[:8]}"
    header = ["account_number", "reference", "amount"]
    rows = [
        {"account_number": a["account_number"], "reference": ref, "amount": "25.00"},
        {"account_number": b["account_number"], "reference": other, "amount": "5.00"},
        {"account_number": b["account_number"], "reference": other, "amount": "6.00"},
    ]
    path = write_csv(tmp_path / "p.csv", rows, header)
    with pytest.raises(CsvImportError) as caught:
        await intake.import_payments(path)
    assert [(e.row, e.field) for e in caught.value.errors] == [(2, "reference"), (4, "reference")]
    assert _account(session_factory, b["account_number"]).balance_cents == 5500
