"""The CLI with Temporal away: the ledger takes facts, says what is queued, shows credits."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from cli.main import app
from tests.factories import balance_row, write_csv
from tests.identities import signed_in

# The CLI imports as a signed-in person whose roles grant intake.
pytestmark = pytest.mark.usefixtures("cli_signed_in")


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_pay_past_the_balance_and_aging_credits_without_temporal(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    tmp_path: Path,
    session_factory: sessionmaker[Session],
) -> None:
    monkeypatch.setenv("DUNNING_DATABASE__URL", database_url)
    monkeypatch.setenv("DUNNING_TOKEN", signed_in(session_factory, "billing_lead")[0])
    monkeypatch.setenv("DUNNING_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DUNNING_TEMPORAL__ADDRESS", raising=False)
    row = balance_row()  # 55.00
    number = row["account_number"]
    runner = CliRunner()
    result = runner.invoke(app, ["import", "balances", str(write_csv(tmp_path / "b.csv", [row]))])
    assert result.exit_code == 0, result.output
    assert "1 account(s) queued" in _flat(result.output)

    result = runner.invoke(app, ["pay", number, "80.00", "--ref", f"P-{number}"])
    out = _flat(result.output)
    assert result.exit_code == 0, out
    assert "balance -$25.00" in out
    assert "paid past the balance" in out and "$25.00 is owed to the patient" in out
    assert "recorded and queued" in out

    result = runner.invoke(app, ["pay", number, "81.00", "--ref", f"P-{number}"])
    assert result.exit_code == 4  # refused by a rule: the reference is another payment's
    assert "already posted for 8000 cents, not 8100" in _flat(result.output)

    result = runner.invoke(app, ["status", number])
    out = _flat(result.output)
    assert result.exit_code == 0, out
    assert "in_credit" in out and "credit: $25.00 owed to the patient" in out
    assert "next:" not in out

    result = runner.invoke(app, ["aging"])
    assert result.exit_code == 0, result.output
    assert "credits (" in result.output
