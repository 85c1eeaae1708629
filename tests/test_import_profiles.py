"""Practice-management exports as practices have them (issue 20): OpenEMR's collections report,
Open Dental's aging report and patient export, end to end through ``dunning import balances``;
dry-run totals equal what the patients truly owe. Every patient is invented."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.import_files import read_table
from models.import_profiles import convert, detect_profile
from models.orm import Account, ChargeLine, Guarantor
from tests.identities import signed_in
from tests.support.cli import invoke

# The CLI imports as a signed-in person whose roles grant intake.
pytestmark = pytest.mark.usefixtures("cli_signed_in")

AS_OF = "2026-11-30"


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


def _owed(session_factory: sessionmaker[Session], *numbers: str) -> dict[str, int]:
    """These accounts' balances (cents), by account number."""
    with session_factory() as session:
        accounts = session.scalars(select(Account).where(Account.account_number.in_(numbers))).all()
        return {a.account_number: a.balance_cents for a in accounts}


def _lines(session_factory: sessionmaker[Session], number: str) -> list[ChargeLine]:
    with session_factory() as session:
        account = select(Account.id).where(Account.account_number == number)
        return list(
            session.scalars(select(ChargeLine).where(ChargeLine.account_id.in_(account))).all()
        )


def _openemr(pid: int) -> str:
    """OpenEMR's collections CSV export (collections_report.php): a comma after every line's last
    column, "Last, First Middle" names, adjustments negative, the insurance policy number."""
    return (
        "Insurance,Name,DOB,Policy,Phone,Invoice,DOS,Referrer,Provider,Charge,Adjust,Paid,"
        "Balance,Aging Days,\n"
        f'"Acme Health","Synthetic, Testa Q",1980-02-03,POL-778812,(212) 555-0123,{pid}.1,'
        '2026-09-14,,"Dr Example","1,250.00",-430.00,600.00,220.00,77,\n'
        f'"Acme Health","Synthetic, Testa Q",1980-02-03,POL-778812,(212) 555-0123,{pid}.2,'
        "2026-11-02,,Dr Example,310.00,-110.55,0.00,199.45,28,\n"
        f'"","Imaginary, Rolf",1971-07-08,,212-555-0199,{pid + 1}.1,2026-07-20,,Dr Example,'
        "95.00,0.00,40.00,55.00,133,\n"
    )


def test_openemr_collections_report_imports_what_is_owed(
    cli_env: None, tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    pid = 700000 + uuid.uuid4().int % 100000
    path = tmp_path / "collections.csv"
    path.write_text(_openemr(pid), encoding="utf-8")

    dry = invoke("import", "balances", str(path), "--dry-run", "--as-of", AS_OF)
    out = _flat(dry.output)
    assert dry.exit_code == 0, dry.output
    assert "profile: openemr-collections" in out
    assert "Adjust -> insurance_adjustment" in out and "Paid -> insurance_paid" in out
    assert "Policy: the insurance policy number, not an escalation policy" in out
    assert "would import 3 rows for 2 accounts" in out
    # 220.00 + 199.45 + 55.00: the Balance column, not the gross charges (1,655.00).
    assert "3 lines owing $474.45" in out
    assert "0-30 days $199.45" in out and "61-90 days $220.00" in out
    assert "120+ days $55.00" in out

    real = invoke("import", "balances", str(path), "--as-of", AS_OF)
    assert real.exit_code == 0, real.output
    first, second = f"OE-{pid}", f"OE-{pid + 1}"
    assert _owed(session_factory, first, second) == {first: 41945, second: 5500}
    with session_factory() as session:
        guarantor = session.scalars(
            select(Guarantor).where(Guarantor.external_ref == f"OE-{pid}")
        ).one()
        assert (guarantor.first_name, guarantor.last_name) == ("Testa", "Synthetic")


def test_a_wrong_balance_column_is_a_row_error(cli_env: None, tmp_path: Path) -> None:
    path = tmp_path / "collections.csv"
    path.write_text(_openemr(1).replace("199.45,28", "199.46,28"), encoding="utf-8")
    result = invoke("import", "balances", str(path), "--dry-run")
    assert result.exit_code == 1
    assert "row 3: Balance: expected 199.45 (charges less adjustments and payments)" in _flat(
        result.output
    )


def test_open_dental_aging_report_is_imported_as_balance_forward_lines(
    cli_env: None, tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    tag = uuid.uuid4().hex[:6]
    rows = [
        [
            *("Guarantor", "0-30 Days", "31-60 Days", "61-90 Days", "> 90 Days", "Total"),
            *("-Ins Est", "=Patient"),
        ],
        [f"Zed{tag}, 'Bo' Bonnie", "40.00", "0.00", "120.00", "0.00", "160.00", "30.00", "130.00"],
        [f"Quill{tag}, Ann", "0.00", "0.00", "0.00", "310.25", "310.25", "0.00", "310.25"],
        [f"Vale{tag}, Tim", "25.00", "0.00", "0.00", "0.00", "25.00", "25.00", "0.00"],
    ]
    path = tmp_path / "aging.txt"
    path.write_text("\n".join("\t".join(r) for r in rows) + "\n", encoding="utf-8")

    dry = invoke("import", "balances", str(path), "--dry-run", "--as-of", AS_OF)
    out = _flat(dry.output)
    assert dry.exit_code == 0, dry.output
    assert "profile: opendental-aging" in out and "tab-delimited" in out
    assert "-Ins Est: insurance's estimated part, already taken out of =Patient" in out
    assert "rows with nothing owed, skipped: 1" in out
    assert "would import 2 rows for 2 accounts" in out
    assert "2 lines owing $440.25" in out
    assert "61-90 days $130.00" in out and "91-120 days $310.25" in out

    real = invoke("import", "balances", str(path), "--as-of", AS_OF)
    assert real.exit_code == 0, real.output
    number = f"OD-zed{tag}bonnie"
    others = (f"OD-quill{tag}ann", f"OD-vale{tag}tim")
    assert _owed(session_factory, number, *others) == {number: 13000, others[0]: 31025}
    (line,) = _lines(session_factory, number)
    assert line.service_date == dt.date(2026, 11, 30) - dt.timedelta(days=61)
    assert line.external_ref == "BF-20261130" and line.description == "Balance forward"

    again = invoke("import", "balances", str(path), "--as-of", AS_OF)
    assert again.exit_code == 0 and "0 new charges" in _flat(again.output)
    later = invoke("import", "balances", str(path), "--as-of", "2026-12-01", "--dry-run")
    assert later.exit_code == 1
    assert "row 2: charge_ref: the account has a balance-forward line of another date" in _flat(
        later.output
    )


def test_open_dental_patient_export_takes_the_family_balance_from_the_guarantor(
    cli_env: None, tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    g = 500000 + uuid.uuid4().int % 100000
    header = (
        "PatNum,LName,FName,Address,City,State,Zip,WirelessPhone,HmPhone,Email,Guarantor,"
        "TxtMsgOk,Bal_0_30,Bal_31_60,Bal_61_90,BalOver90,InsEst,BalTotal,EstBalance"
    )
    family = [
        f"{g},Synthetic,Paula,1 Example Way,Springfield,NY,10001,(212) 555-0142,,"
        f"p{g}@example.test,{g},1,80.00,0.00,45.50,0.00,20.00,125.50,60.00",
        f"{g + 1},Synthetic,Kid,1 Example Way,Springfield,NY,10001,,,,{g},0,"
        "0.00,0.00,0.00,0.00,0.00,0.00,65.50",
    ]
    path = tmp_path / "patients.csv"
    path.write_text("\n".join([header, *family]) + "\n", encoding="utf-8")

    dry = invoke("import", "balances", str(path), "--dry-run", "--as-of", AS_OF)
    out = _flat(dry.output)
    assert dry.exit_code == 0, dry.output
    assert "profile: opendental-patients" in out
    assert "TxtMsgOk -> sms_consent" in out and "WirelessPhone -> phone" in out
    assert "HmPhone: a landline is not texted" in out
    assert "would import 1 rows for 1 accounts" in out and "1 lines owing $105.50" in out

    real = invoke("import", "balances", str(path), "--profile", "opendental-patients")
    assert real.exit_code == 0, real.output
    assert _owed(session_factory, f"OD-{g}", f"OD-{g + 1}") == {f"OD-{g}": 10550}
    with session_factory() as session:
        guarantor = session.scalars(
            select(Guarantor).where(Guarantor.external_ref == f"OD-{g}")
        ).one()
        assert guarantor.phone == "+12125550142" and guarantor.first_name == "Paula"


def test_an_unknown_profile_is_named(cli_env: None, tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    result = invoke("import", "balances", str(path), "--profile", "../../etc/passwd")
    assert result.exit_code == 1
    assert "--profile: expected a profile name such as engine" in _flat(result.output)
    assert "Traceback" not in result.output


def test_a_row_refused_for_a_control_character_takes_its_account_along(
    cli_env: None, tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    pid = 800000 + uuid.uuid4().int % 100000
    path = tmp_path / "collections.csv"
    path.write_text(_openemr(pid).replace("Dr Example,310.00", "Dr Ex\x00ample,310.00"))
    result = invoke("import", "balances", str(path), "--skip-bad", "--as-of", AS_OF)
    out = _flat(result.output)
    assert result.exit_code == 0, result.output
    assert "row 3: Provider: a control character (U+0000)" in out
    assert "row 2: account_number: another row of this account is bad" in out
    first, second = f"OE-{pid}", f"OE-{pid + 1}"
    assert _owed(session_factory, first, second) == {second: 5500}


def test_open_dental_aging_with_patnum_keys_accounts_by_it() -> None:
    text = (
        "Guarantor\tPatNum\t0-30 Days\t31-60 Days\t61-90 Days\t> 90 Days\tTotal\t-Ins Est"
        "\t=Patient\n"
        "Alike, Sam\t101\t10.00\t0.00\t0.00\t0.00\t10.00\t0.00\t10.00\n"
        "Alike, Sam\t102\t0.00\t20.00\t0.00\t0.00\t20.00\t0.00\t20.00\n"
    )
    table = read_table(text)
    converted = convert(table, detect_profile(table.header), dt.date(2026, 11, 30))
    assert converted.errors == []
    assert [
        (r["account_number"], r["charges"], r["service_date"]) for _, r in converted.records
    ] == [
        ("OD-101", "10.00", "2026-11-30"),
        ("OD-102", "20.00", "2026-10-30"),
    ]
    without = read_table(text.replace("\tPatNum", "").replace("\t101", "").replace("\t102", ""))
    refused = convert(without, detect_profile(without.header), dt.date(2026, 11, 30))
    assert [(e.row, e.message.split(":")[0]) for e in refused.errors] == [
        (3, "the same account as row 2")
    ]
