"""CSV import: every bad row reported by number and field in one pass, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from models.imports import BalanceRow, CsvImportError, parse_rows
from models.orm import Account, ChargeLine
from starter import Intake
from tests.factories import HEADER, balance_row, write_csv
from tests.identities import signed_in
from tests.support.cli import invoke

# The CLI imports as a signed-in person whose roles grant intake.
pytestmark = pytest.mark.usefixtures("cli_signed_in")


def _count(session_factory: sessionmaker[Session], rows: list[dict[str, str]]) -> tuple[int, int]:
    """This file's accounts and charge lines in the ledger (the database is shared)."""
    numbers = [r["account_number"] for r in rows]
    with session_factory() as session:
        accounts = select(Account.id).where(Account.account_number.in_(numbers))
        return (
            session.scalar(select(func.count()).select_from(accounts.subquery())) or 0,
            session.scalar(
                select(func.count())
                .select_from(ChargeLine)
                .where(ChargeLine.account_id.in_(accounts))
            )
            or 0,
        )


async def test_bad_rows_reported_by_row_and_field_and_nothing_written(
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    rows = [
        balance_row(),
        balance_row(charges="12.345"),
        balance_row(service_date="2026-13-01", email="not-an-email"),
        balance_row(time_zone="Mars/Olympus"),
        balance_row(policy="no-such-policy"),
        balance_row(),
    ]
    with pytest.raises(CsvImportError) as caught:
        await Intake(session_factory, None, settings).import_balances(
            write_csv(tmp_path / "b.csv", rows)
        )
    found = {(e.row, e.field) for e in caught.value.errors}
    assert found == {
        (3, "charges"),
        (4, "service_date"),
        (4, "email"),
        (5, "time_zone"),
        (6, "policy"),
    }
    text = str(caught.value)
    assert "row 3: charges:" in text and "row 6: policy:" in text
    assert "Testy" not in text  # errors name the row and field, never the patient
    assert _count(session_factory, rows) == (0, 0)


def test_missing_columns_are_named() -> None:
    header = [h for h in HEADER if h not in ("charges", "service_date")]
    text = ",".join(header) + "\n"
    rows, errors = parse_rows(text, BalanceRow)
    assert rows == [] and {(e.row, e.field) for e in errors} == {
        (1, "charges"),
        (1, "service_date"),
    }


async def test_dry_run_checks_without_writing(
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    rows = [balance_row(), balance_row()]
    report = await Intake(session_factory, None, settings).import_balances(
        write_csv(tmp_path / "ok.csv", rows), dry_run=True
    )
    assert (report.rows, report.accounts) == (2, 2)
    assert _count(session_factory, rows) == (0, 0)


def test_cli_reports_bad_rows_and_exits_non_zero(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DUNNING_DATABASE__URL", database_url)
    monkeypatch.setenv("DUNNING_DATA_DIR", str(tmp_path / "data"))
    path = write_csv(tmp_path / "bad.csv", [balance_row(), balance_row(charges="-5")])
    result = invoke("import", "balances", str(path), "--dry-run")
    assert result.exit_code == 1
    assert "row 3: charges:" in result.output and "nothing imported" in result.output
    good = write_csv(tmp_path / "good.csv", [balance_row()])
    result = invoke("import", "balances", str(good), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would import 1 rows for 1 accounts" in result.output


def test_importing_needs_a_person_whose_roles_grant_intake(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    session_factory: sessionmaker[Session],
) -> None:
    """An import posts balances and payments: nobody signed in, or staff without the intake
    permission, is refused before anything is read or written (the API's rule, on the CLI)."""
    monkeypatch.setenv("DUNNING_DATABASE__URL", database_url)
    monkeypatch.setenv("DUNNING_DATA_DIR", str(tmp_path / "data"))
    rows = [balance_row()]
    path = write_csv(tmp_path / "rows.csv", rows)
    monkeypatch.delenv("DUNNING_TOKEN")
    result = invoke("import", "balances", str(path))
    assert result.exit_code == 6 and "not logged in" in result.output, result.output
    monkeypatch.setenv("DUNNING_TOKEN", signed_in(session_factory, "staff")[0])
    result = invoke("import", "payments", str(path))
    assert result.exit_code == 6 and "intake permission" in result.output, result.output
    assert _count(session_factory, rows) == (0, 0)
