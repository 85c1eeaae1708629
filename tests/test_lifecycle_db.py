"""Closed balances stay closed through imports; the agency hears of every change (issue 17 items 3
and 4, issues 11 and 18).

Real PostgreSQL; no Temporal client (``Intake(..., None, ...)``): what would reach a workflow is
read from the signal outbox the intake commits with the ledger rows.
"""

from __future__ import annotations

import csv
import datetime as dt
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from models.orm import (
    Account,
    AccountStatus,
    AgencyUpdate,
    AuditEvent,
    ChargeLine,
    LegalFact,
    SignalOutbox,
)
from models.payloads import BalanceState
from services import agency, protections
from services.agency import balance_by_age
from services.context import Services
from services.errors import Refused
from services.identity import Actor
from services.ledger_status import account_status
from services.recall import recall
from starter import Intake
from tests.factories import balance_row, write_csv
from tests.support.cli import invoke_in_thread
from workflows.contract import Rejection

# The CLI imports as a signed-in person whose roles grant intake.
pytestmark = pytest.mark.usefixtures("cli_signed_in")

CLERK = Actor(id="clerk-lifecycle", name="clerk-lifecycle", roles=["staff"])


def _account(session_factory: sessionmaker[Session], number: str) -> Account:
    with session_factory() as session:
        return session.scalars(select(Account).where(Account.account_number == number)).one()


def _set_status(
    session_factory: sessionmaker[Session], number: str, status: AccountStatus, **values: object
) -> None:
    with session_factory.begin() as session:
        session.execute(
            update(Account)
            .where(Account.account_number == number)
            .values(status=status, closed_at=dt.datetime.now(dt.UTC), **values)
        )


def _outbox(session_factory: sessionmaker[Session], account_id: uuid.UUID) -> list[SignalOutbox]:
    with session_factory() as session:
        return list(
            session.scalars(
                select(SignalOutbox)
                .where(SignalOutbox.account_id == account_id)
                .order_by(SignalOutbox.id)
            ).all()
        )


def _lines(session_factory: sessionmaker[Session], account_id: uuid.UUID) -> list[str]:
    with session_factory() as session:
        return list(
            session.scalars(
                select(ChargeLine.external_ref).where(ChargeLine.account_id == account_id)
            ).all()
        )


@pytest.mark.parametrize("closed", [AccountStatus.PLACED, AccountStatus.WRITTEN_OFF])
async def test_a_nightly_reimport_never_reopens_and_a_new_charge_starts_its_own_balance(
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    closed: AccountStatus,
) -> None:
    intake = Intake(session_factory, None, settings)
    row = balance_row(charges="300.00", insurance_paid="0", insurance_adjustment="0")
    number = row["account_number"]
    export = write_csv(tmp_path / "night-1.csv", [row])
    await intake.import_balances(export)
    root = _account(session_factory, number)
    _set_status(session_factory, number, closed)
    started = len(_outbox(session_factory, root.id))  # the first ladder's charge

    # The unchanged export again: nothing changes.
    report = await intake.import_balances(export)
    assert report.new_charges == 0 and report.warnings == []
    assert _account(session_factory, number).status is closed

    # The next night's export carries a new $80 visit on the same account.
    visit = dict(row, charge_ref=f"{row['charge_ref']}-N", charges="80.00")
    visit.update(service_date="2026-11-20", description="Follow-up visit")
    night_2 = write_csv(tmp_path / "night-2.csv", [row, visit])
    dry = await intake.import_balances(night_2, dry_run=True)
    assert [(w.row, w.field) for w in dry.warnings] == [(3, "account_number")]
    assert f"{number}.2" in dry.warnings[0].message
    assert _lines(session_factory, root.id) == [row["charge_ref"]]  # the dry run wrote nothing

    report = await intake.import_balances(night_2)
    assert report.new_charges == 1 and [w.row for w in report.warnings] == [3]
    after = _account(session_factory, number)
    assert (after.status, after.balance_cents) == (closed, 30000)
    own = _account(session_factory, f"{number}.2")
    assert (own.status, own.balance_cents, own.continues_account_id) == (
        AccountStatus.OPEN,
        8000,
        root.id,
    )
    assert _lines(session_factory, own.id) == [visit["charge_ref"]]  # statements list only it
    assert [(m.name, m.payload["amount_cents"]) for m in _outbox(session_factory, own.id)] == [
        ("add_charge", 8000)
    ]
    assert len(_outbox(session_factory, root.id)) == started  # the closed one is not asked

    # The same export once more: its lines are found where they went; no third balance.
    report = await intake.import_balances(night_2)
    assert report.new_charges == 0 and report.warnings == []
    with session_factory() as session:
        numbers = session.scalars(
            select(Account.account_number).where(Account.account_number.like(f"{number}%"))
        ).all()
    assert sorted(numbers) == [number, f"{number}.2"]


async def test_an_export_that_disagrees_with_a_closed_account_is_a_row_warning(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    intake = Intake(session_factory, None, settings)
    row = balance_row()
    await intake.import_balances(write_csv(tmp_path / "a.csv", [row]))
    _set_status(session_factory, row["account_number"], AccountStatus.SETTLED)
    changed = write_csv(tmp_path / "b.csv", [dict(row, patient_paid="10.00")])
    for dry_run in (True, False):
        report = await intake.import_balances(changed, dry_run=dry_run)
        assert [(w.row, w.field) for w in report.warnings] == [(2, "charge_ref")]
        assert "settled" in report.warnings[0].message
        assert "resolve by hand" in report.warnings[0].message
    account = _account(session_factory, row["account_number"])
    assert (account.status, account.balance_cents) == (AccountStatus.SETTLED, 5500)


async def test_bankruptcy_pre_petition_charges_stay_stayed_and_post_petition_start_their_own(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    intake = Intake(session_factory, None, settings)
    row = balance_row(charges="300.00", insurance_paid="0", insurance_adjustment="0")
    number = row["account_number"]
    await intake.import_balances(write_csv(tmp_path / "a.csv", [row]))
    root = _account(session_factory, number)
    _set_status(session_factory, number, AccountStatus.STOPPED)
    started = len(_outbox(session_factory, root.id))
    with session_factory.begin() as session:
        session.add(
            LegalFact(
                account_id=root.id,
                kind="bankruptcy",
                reference=f"test:bk:{uuid.uuid4().hex[:8]}",
                detail={"filed_on": "2026-11-02", "chapter": 7},
                reported_by="test",
            )
        )
    late = dict(row, charge_ref=f"{row['charge_ref']}-PRE", charges="40.00")
    late.update(service_date="2026-10-20")  # before the filing, posted late
    after = dict(row, charge_ref=f"{row['charge_ref']}-POST", charges="80.00")
    after.update(service_date="2026-11-10")
    report = await intake.import_balances(write_csv(tmp_path / "b.csv", [row, late, after]))
    assert {(w.row, w.field) for w in report.warnings} == {
        (3, "service_date"),
        (4, "account_number"),
    }
    stayed = _account(session_factory, number)
    assert (stayed.status, stayed.balance_cents) == (AccountStatus.STOPPED, 34000)
    assert len(_outbox(session_factory, root.id)) == started  # the stay: nothing is collected
    own = _account(session_factory, f"{number}.2")
    assert (own.status, own.balance_cents) == (AccountStatus.OPEN, 8000)
    assert _lines(session_factory, own.id) == [after["charge_ref"]]


async def test_a_deceased_guarantors_new_charge_joins_the_estate_uncollected(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    intake = Intake(session_factory, None, settings)
    row = balance_row()
    await intake.import_balances(write_csv(tmp_path / "a.csv", [row]))
    _set_status(session_factory, row["account_number"], AccountStatus.ESTATE)
    started = len(_outbox(session_factory, _account(session_factory, row["account_number"]).id))
    more = dict(row, charge_ref=f"{row['charge_ref']}-2")
    report = await intake.import_balances(write_csv(tmp_path / "b.csv", [row, more]))
    assert [w.row for w in report.warnings] == [3] and "estate" in report.warnings[0].message
    account = _account(session_factory, row["account_number"])
    assert (account.status, account.balance_cents) == (AccountStatus.ESTATE, 11000)
    assert len(_outbox(session_factory, account.id)) == started


def test_balance_by_age_takes_payments_from_the_oldest_visits() -> None:
    today = dt.date(2027, 3, 1)
    lines = [(dt.date(2026, 10, 1), 20000), (dt.date(2027, 2, 10), 10000)]
    # 250.00 left of 300.00: the 50.00 paid came off the oldest visit.
    assert balance_by_age(lines, 25000, today) == {
        "balance_0_30": 10000,
        "balance_31_60": 0,
        "balance_61_90": 0,
        "balance_91_120": 0,
        "balance_120_plus": 15000,
    }
    # A fee above the visits counts as oldest; a credit owes the agency nothing.
    assert balance_by_age(lines, 31000, today)["balance_120_plus"] == 21000
    assert sum(balance_by_age(lines, -500, today).values()) == 0


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


async def test_the_agency_hears_of_payments_disputes_and_the_recall(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    intake = Intake(session_factory, None, settings)
    row = balance_row(charges="300.00", insurance_paid="0", insurance_adjustment="0")
    number = row["account_number"]
    await intake.import_balances(write_csv(tmp_path / "a.csv", [row]))
    placed_at = dt.datetime.now(dt.UTC)
    first = dt.datetime(2026, 10, 5, 15, tzinfo=dt.UTC)
    _set_status(
        session_factory, number, AccountStatus.PLACED, placed_at=placed_at,
        first_statement_at=first,
    )  # fmt: skip
    svc = Services(settings, session_factory)

    posted = await intake.post_payment_fact(number, 5000, f"PAY-{number}")
    assert posted.balance_cents == 25000
    # Posted twice (a retry): the agency hears of it once.
    await intake.post_payment_fact(number, 5000, f"PAY-{number}")
    view = await account_status(session_factory, None, number)
    assert (view.state, view.balance_cents) == (BalanceState.PLACED, 25000)  # the live ledger

    directory = agency.export_dir(settings)
    path = agency.update_file(directory, dt.datetime.now(dt.UTC).date())
    rows = [r for r in _rows(path) if r["account_number"] == number]
    assert [(r["change"], r["amount"], r["balance"]) for r in rows] == [
        ("payment", "-50.00", "250.00")
    ]
    assert rows[0]["first_statement_on"] == "2026-10-05"
    assert rows[0]["placed_on"] == placed_at.date().isoformat()
    assert path.stat().st_mode & 0o077 == 0  # names and addresses: owner only

    from models.actions import HoldReason
    from services import staff

    assert (await staff.hold(svc, CLERK, number, HoldReason.DISPUTE)).agency
    done = await recall(svc, CLERK, number)
    assert (done.balance_cents, Path(done.update_file)) == (25000, path)
    rows = [r for r in _rows(path) if r["account_number"] == number]
    assert [r["change"] for r in rows] == ["payment", "dispute", "recall"]
    assert _account(session_factory, number).status is AccountStatus.RECALLED
    view = await account_status(session_factory, None, number)
    assert view.state is BalanceState.RECALLED

    with pytest.raises(Refused) as refused:
        await recall(svc, CLERK, number)
    assert refused.value.kind is Rejection.NOT_PLACED
    with session_factory() as session:
        outcomes = session.scalars(
            select(AuditEvent.detail)
            .join(Account, Account.id == AuditEvent.account_id)
            .where(
                Account.account_number == number,
                AuditEvent.action.in_(["agency_recall", "recalled_from_agency"]),
            )
        ).all()
    assert {"why": "staff"} in outcomes and any(d.get("kind") == "NotPlaced" for d in outcomes)


async def test_approved_assistance_recalls_a_placed_account(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    intake = Intake(session_factory, None, settings)
    row = balance_row()
    number = row["account_number"]
    await intake.import_balances(write_csv(tmp_path / "a.csv", [row]))
    _set_status(session_factory, number, AccountStatus.PLACED)
    directory = agency.export_dir(settings)
    outcome = await protections.approve_financial_assistance(
        session_factory, None, CLERK, number, 100, agency_dir=directory
    )
    assert outcome.recall
    account = _account(session_factory, number)
    assert account.status is AccountStatus.RECALLED
    with session_factory() as session:
        changes = session.scalars(
            select(AgencyUpdate.change).where(AgencyUpdate.account_id == account.id)
        ).all()
    assert changes == ["recall"]
    rows = _rows(agency.update_file(directory, dt.datetime.now(dt.UTC).date()))
    assert [r["change"] for r in rows if r["account_number"] == number] == ["recall"]


async def test_the_cli_dry_run_prints_the_closed_account_warnings(
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    intake = Intake(session_factory, None, settings)
    row = balance_row()
    await intake.import_balances(write_csv(tmp_path / "a.csv", [row]))
    _set_status(session_factory, row["account_number"], AccountStatus.PLACED)
    visit = dict(row, charge_ref=f"{row['charge_ref']}-N", service_date="2026-11-20")
    night = write_csv(tmp_path / "night.csv", [row, visit])
    monkeypatch.setenv("DUNNING_DATABASE__URL", database_url)
    monkeypatch.setenv("DUNNING_DATA_DIR", str(settings.data_dir))
    result = await invoke_in_thread("import", "balances", str(night), "--dry-run")
    assert result.exit_code == 0, result.output
    assert (
        f"warning: row 3: account_number: {row['account_number']} is placed: "
        f"'{visit['charge_ref']}' starts a balance of its own ({row['account_number']}.2)"
    ) in " ".join(result.output.split())
    assert _account(session_factory, row["account_number"]).status is AccountStatus.PLACED
