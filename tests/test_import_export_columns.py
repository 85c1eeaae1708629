"""CSV import of practice-management exports: column aliases, --skip-bad with a rejects file."""

from __future__ import annotations

import csv
import datetime as dt
import os
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.imports import BalanceRow, PaymentRow, parse_rows
from models.orm import repositories as repo
from tests.factories import balance_row, write_csv
from tests.support.cli import run_dunning

# The CLI imports as a signed-in person whose roles grant intake.
pytestmark = pytest.mark.usefixtures("cli_signed_in")

EXPORT_HEADER = [
    "Acct #",
    "Guarantor ID",
    "Guarantor First Name",
    "Guarantor Last Name",
    "Cell Phone",
    "OK to Text",
    "Zip",
    "Visit ID",
    "DOS",
    "Procedure",
    "Patient Balance",
]


def test_export_columns_are_recognised_with_us_dates() -> None:
    text = (
        ",".join(EXPORT_HEADER) + "\n"
        "P-100,G-1,Testy,Synthetic,(212) 555-0100,Y,10001,V-1,10/01/2026,Office visit,$55.00\n"
        "P-100,G-1,Testy,Synthetic,(212) 555-0100,Y,10001,V-2,13/01/2026,Office visit,12.5\n"
        "P-101,G-2,Testy,Synthetic,,,10001,V-3,2026-10-02,,abc\n"
    )
    rows, errors = parse_rows(text, BalanceRow)
    assert [
        (line, r.account_number, r.charge_ref, r.service_date, r.balance_cents, r.sms_consent)
        for line, r in rows
    ] == [(2, "P-100", "V-1", dt.date(2026, 10, 1), 5500, True)]
    assert rows[0][1].phone == "+12125550100"  # E.164, as the providers want it
    assert {(e.row, e.field) for e in errors} == {
        (3, "DOS (service_date)"),
        (4, "Procedure (description)"),
        (4, "Patient Balance (charges)"),
    }
    # A canonical column wins over an alias; payments have their own aliases.
    both = (
        "account_number,Acct #,reference,Payment Amount,Payment Date\nA-1,X,R-1,10.00,01/31/2027\n"
    )
    ((_line, payment),) = parse_rows(both, PaymentRow)[0]
    assert (payment.account_number, payment.amount, payment.received_on) == (
        "A-1",
        1000,
        dt.date(2027, 1, 31),
    )


@pytest.mark.devserver
async def test_skip_bad_writes_rejects_and_imports_whole_good_accounts(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    database_url: str,
) -> None:
    env = dict(
        os.environ,
        DUNNING_DATABASE__URL=database_url,
        DUNNING_DATA_DIR=str(settings.data_dir),
        DUNNING_TEMPORAL__ADDRESS=dev_env.client.service_client.config.target_host,
        DUNNING_TEMPORAL__TASK_QUEUE=settings.temporal.task_queue,
        COLUMNS="200",
    )
    good = balance_row()
    split = balance_row()
    split_bad = dict(split, charge_ref=split["charge_ref"] + "-2", service_date="2026-02-30")
    bad = balance_row(email="not-an-email")
    path = write_csv(tmp_path / "export.csv", [good, split, split_bad, bad])

    code, out = await run_dunning(env, "import", "balances", str(path))
    assert code == 1, out
    assert "row 4: service_date:" in out and "row 5: email:" in out and "nothing imported" in out
    with session_factory() as session:
        assert repo.account_by_number(session, good["account_number"]) is None

    code, out = await run_dunning(env, "import", "balances", str(path), "--skip-bad")
    assert code == 0, out
    rejects = tmp_path / "export.rejects.csv"
    with rejects.open(newline="", encoding="utf-8") as f:
        rejected = {r["row"]: r for r in csv.DictReader(f)}
    assert set(rejected) == {"3", "4", "5"}  # row 3 is good, but its account has a bad row
    assert rejected["4"]["error"].startswith("service_date:")
    assert "another row of this account" in rejected["3"]["error"]
    assert rejected["5"]["account_number"] == bad["account_number"]
    assert "imported 1 rows for 1 accounts" in out
    with session_factory() as session:
        assert repo.account_by_number(session, good["account_number"]) is not None
        assert repo.account_by_number(session, split["account_number"]) is None
        assert repo.account_by_number(session, bad["account_number"]) is None
