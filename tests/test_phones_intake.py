"""Phone numbers are normalised to E.164 at intake; an impossible number is a row error.

Before: numbers were stored and sent to Twilio exactly as typed, and an invalid one was
discovered by the provider (a failed send days later).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from api.schemas import GuarantorIn
from cli.main import app
from config.settings import Settings
from models.imports import BalanceRow, parse_rows
from models.orm import ApiRole, Guarantor
from models.orm import repositories as repo
from models.phones import to_e164
from tests.api_support import Api, account_body, api_settings, ec_key_pair, running_api
from tests.factories import balance_row, write_csv

# The CLI imports as a signed-in person whose roles grant intake.
pytestmark = pytest.mark.usefixtures("cli_signed_in")

runner = CliRunner()


@pytest.mark.parametrize(
    ("typed", "e164"),
    [
        ("(212) 555-0123", "+12125550123"),
        ("212-555-0123", "+12125550123"),
        ("212.555.0123", "+12125550123"),
        ("1 212 555 0123", "+12125550123"),
        ("+1 (212) 555-0123", "+12125550123"),
        ("+44 20 7183 8750", "+442071838750"),
        ("  ", None),
    ],
)
def test_numbers_as_staff_type_them_become_e164(typed: str, e164: str | None) -> None:
    assert to_e164(typed) == e164


@pytest.mark.parametrize(
    "bad", ["555-0100", "(555) 010-0100", "12345", "+1 000 555 0123", "2125550"]
)
def test_impossible_numbers_are_refused_without_repeating_them(bad: str) -> None:
    with pytest.raises(ValueError, match="not a valid phone number") as info:
        to_e164(bad)
    assert bad.strip() not in str(info.value) and "not a valid phone number" in str(info.value)


def test_csv_rows_are_normalised_and_a_bad_number_names_row_and_column(tmp_path: Path) -> None:
    good = balance_row(phone="(212) 555-0188")
    bad = balance_row(phone="(555) 010-0100")
    path = write_csv(tmp_path / "balances.csv", [good, bad])
    rows, errors = parse_rows(path, BalanceRow)
    assert [(line, row.phone) for line, row in rows] == [(2, "+12125550188")]
    assert [(e.row, e.field) for e in errors] == [(3, "phone")]
    assert "not a valid phone number" in errors[0].message


def test_import_dry_run_reports_the_bad_number_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.setenv("DUNNING_DATABASE__URL", database_url)  # where the signed-in user is
    path = write_csv(tmp_path / "balances.csv", [balance_row(), balance_row(phone="555-0100")])
    result = runner.invoke(app, ["import", "balances", str(path), "--dry-run"])
    assert result.exit_code != 0
    assert "row 3: phone: " in result.output and "not a valid phone number" in result.output
    assert "Traceback" not in result.output


def test_api_body_is_normalised_and_refused_naming_the_field() -> None:
    fields = {"id": "G-1", "first_name": "Testy", "last_name": "Synthetic"}
    assert GuarantorIn.model_validate({**fields, "phone": "212 555 0123"}).phone == "+12125550123"
    with pytest.raises(ValidationError) as info:
        GuarantorIn.model_validate({**fields, "phone": "(555) 010-0100"})
    assert info.value.errors()[0]["loc"] == ("phone",)


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment, settings: Settings, session_factory: sessionmaker[Session]
) -> AsyncIterator[Api]:
    cfg = api_settings(settings, ec_key_pair()[1])
    async with running_api(dev_env.client, cfg, session_factory) as a:
        yield a


@pytest.mark.devserver
async def test_api_intake_stores_e164_and_refuses_an_invalid_number(api: Api) -> None:
    body = account_body(phone="(500) 555-0142")
    r = await api.http.put("/accounts/P-E164-1", json=body, headers=api.auth(ApiRole.INTEGRATION))
    assert r.status_code == 200, r.text
    with api.session_factory() as session:
        account = repo.account_by_number(session, "P-E164-1")
        assert account is not None
        guarantor = session.get(Guarantor, account.guarantor_id)
        assert guarantor is not None and guarantor.phone == "+15005550142"
    bad = account_body(phone="(555) 010-0100")
    r = await api.http.put("/accounts/P-E164-2", json=bad, headers=api.auth(ApiRole.INTEGRATION))
    assert r.status_code == 422
    assert "phone" in r.text and "not a valid phone number" in r.text
    with api.session_factory() as session:
        assert repo.account_by_number(session, "P-E164-2") is None
