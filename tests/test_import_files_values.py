"""Any file a spreadsheet writes, values checked before anything is written, and safe CSVs out
(issue 20). Every patient is invented."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from activities.ledger import LedgerActivities
from config.settings import Settings
from models.actions import ExportInput
from models.orm import Account
from models.safe_csv import neutralise
from starter import Intake
from tests.factories import HEADER, balance_row, write_csv
from tests.identities import signed_in
from tests.support.cli import invoke

# The CLI imports as a signed-in person whose roles grant intake.
pytestmark = pytest.mark.usefixtures("cli_signed_in")


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    tmp_path: Path,
    session_factory: sessionmaker[Session],
) -> None:
    """The CLI on the test database, signed in as staff, with Temporal away (messages queue)."""
    monkeypatch.setenv("DUNNING_DATABASE__URL", database_url)
    monkeypatch.setenv("DUNNING_TOKEN", signed_in(session_factory, "billing_lead")[0])
    monkeypatch.setenv("DUNNING_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DUNNING_TEMPORAL__ADDRESS", raising=False)


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def _text(rows: list[dict[str, str]], delimiter: str = ",", header: list[str] = HEADER) -> str:
    lines = [delimiter.join(header)]
    lines += [delimiter.join(str(r.get(h, "")) for h in header) for r in rows]
    return "\n".join(lines) + "\n"


def test_windows_1252_semicolons_tabs_and_a_bom_are_read(cli_env: None, tmp_path: Path) -> None:
    cases = {
        "excel.csv": _text([balance_row(first_name="Renée")]).encode("cp1252"),
        "europe.csv": _text([balance_row(), balance_row()], ";").encode("utf-8"),
        "tabs.txt": _text([balance_row()], "\t").encode("utf-8"),
        "bom.csv": b"\xef\xbb\xbf" + _text([balance_row()]).encode("utf-8"),
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        result = invoke("import", "balances", str(path), "--dry-run")
        assert result.exit_code == 0, (name, result.output)
        assert "profile: engine" in result.output
    assert (
        "cp1252, comma-delimited"
        in invoke("import", "balances", str(tmp_path / "excel.csv"), "--dry-run").output
    )
    assert (
        "semicolon-delimited"
        in invoke("import", "balances", str(tmp_path / "europe.csv"), "--dry-run").output
    )


def test_a_nul_byte_is_a_row_error_not_a_traceback(cli_env: None, tmp_path: Path) -> None:
    path = tmp_path / "nul.csv"
    path.write_text(_text([balance_row(), balance_row(last_name="Syn\x00thetic")]))
    result = invoke("import", "balances", str(path), "--dry-run")
    out = _flat(result.output)
    assert result.exit_code == 1
    assert "row 3: last_name: a control character (U+0000)" in out
    assert "Traceback" not in result.output


def test_bad_values_are_refused_by_row_and_column(
    cli_env: None, tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text("PRIVATE-LINE-7731: do not echo\n", encoding="utf-8")
    same = balance_row()
    rows = [
        balance_row(service_date="2031-01-15"),
        {**balance_row(), "currency": "EUR"},
        same,
        {**same, "charges": "999.00"},
        balance_row(policy="../../etc/passwd"),
        balance_row(policy=str(secret)),
        balance_row(charges="1000000000.01"),
    ]
    path = write_csv(tmp_path / "bad.csv", rows, [*HEADER, "currency"])
    result = invoke("import", "balances", str(path), "--dry-run")
    out = _flat(result.output)
    assert result.exit_code == 1
    assert "row 2: service_date: expected the date of a visit that has happened" in out
    assert "row 3: currency: expected USD" in out
    assert "row 5: charge_ref: the same charge reference as row 4 of this account" in out
    assert "row 6: policy: expected the name of a policy in the configured policy folder" in out
    assert "row 7: policy: expected the name of a policy" in out
    assert "row 8: charges: expected an amount of at most $1,000,000,000.00" in out
    assert "PRIVATE-LINE" not in result.output and "etc/passwd" not in result.output

    result = invoke("import", "balances", str(path), "--skip-bad")
    assert result.exit_code == 0, result.output
    rejects = (tmp_path / "bad.rejects.csv").read_text(encoding="utf-8")
    assert "PRIVATE-LINE" not in rejects
    with session_factory() as session:
        numbers = [r["account_number"] for r in rows]
        stored = session.scalars(select(Account).where(Account.account_number.in_(numbers)))
        assert list(stored) == []  # every account had a bad row


def test_an_identical_repeated_line_is_merged(cli_env: None, tmp_path: Path) -> None:
    row = balance_row()
    path = write_csv(tmp_path / "twice.csv", [row, row])
    result = invoke("import", "balances", str(path), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "1 lines owing $55.00" in _flat(result.output)


def test_a_balance_above_32_bit_cents_passes_the_dry_run_and_the_import_alike(
    cli_env: None, tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    row = balance_row(charges="21474836.48", insurance_paid="0", insurance_adjustment="0")
    path = write_csv(tmp_path / "big.csv", [row])
    dry = invoke("import", "balances", str(path), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "1 lines owing $21,474,836.48" in _flat(dry.output)
    real = invoke("import", "balances", str(path))
    assert real.exit_code == 0, real.output
    with session_factory() as session:
        account = session.scalars(
            select(Account).where(Account.account_number == row["account_number"])
        ).one()
        assert account.balance_cents == 2_147_483_648


def test_an_unread_money_column_is_an_error(cli_env: None, tmp_path: Path) -> None:
    row = {**balance_row(), "Write Off": "12.00"}
    path = write_csv(tmp_path / "extra.csv", [row], [*HEADER, "Write Off"])
    result = invoke("import", "balances", str(path), "--dry-run")
    assert result.exit_code == 1
    assert "row 1: Write Off: holds amounts but is not one of the engine's columns" in _flat(
        result.output
    )
    path = write_csv(
        tmp_path / "note.csv", [{**balance_row(), "Note": "call after 5"}], [*HEADER, "Note"]
    )
    result = invoke("import", "balances", str(path), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Note: not one of the engine's columns" in result.output


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://x.test","pay")', '\'=HYPERLINK("http://x.test","pay")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("-2+3", "'-2+3"),
        ("\tTab", "'\tTab"),
        ("\rReturn", "'\rReturn"),
        ("-3.50", "-3.50"),
        ("Renée", "Renée"),
    ],
)
def test_formulas_are_neutralised(cell: str, written: str) -> None:
    assert neutralise(cell) == written


def test_the_rejects_file_neutralises_formulas(cli_env: None, tmp_path: Path) -> None:
    rows = [balance_row(), balance_row(first_name='=HYPERLINK("http://x.test")', charges="x")]
    path = write_csv(tmp_path / "formula.csv", rows)
    result = invoke("import", "balances", str(path), "--skip-bad", "--dry-run")
    assert result.exit_code == 0, result.output
    with (tmp_path / "formula.rejects.csv").open(encoding="utf-8", newline="") as f:
        (rejected,) = list(csv.DictReader(f))
    assert rejected["first_name"] == '\'=HYPERLINK("http://x.test")'
    assert rejected["row"] == "3" and rejected["error"].startswith("charges:")


async def test_the_placement_file_neutralises_formulas(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    row = balance_row(first_name="@SUM(A1:A9)", last_name='=HYPERLINK("http://x.test")')
    await Intake(session_factory, None, settings).import_balances(
        write_csv(tmp_path / "b.csv", [row])
    )
    with session_factory() as session:
        account = session.scalars(
            select(Account).where(Account.account_number == row["account_number"])
        ).one()
    ledger = LedgerActivities(session_factory, tmp_path / "agency")
    path = Path(
        ledger.place_with_agency(
            ExportInput(account_id=str(account.id), balance_cents=5500, approved_by="lead")
        )
    )
    records = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline=""))
    (placed,) = [r for r in records if r["account_number"] == row["account_number"]]
    assert placed["first_name"] == "'@SUM(A1:A9)"
    assert placed["last_name"] == '\'=HYPERLINK("http://x.test")'
    assert placed["balance"] == "55.00"
