"""The practice's identity in one place, and the remittance facts a statement explains (issue 15).

A policy's ``practice`` block names the practice; what it leaves out comes from the deployment's
settings. Letters, emails (the From name), texts and replies all read the account's policy
practice. Each visit's remittance facts come in through the CSV import and the API.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from activities.messaging import MessagingActivities, PolicyStore
from activities.statement import statement_problems
from config.loader import load_policy
from config.settings import Settings
from models.imports import BalanceRow, parse_rows
from models.orm import ChargeLine
from models.payloads import StepOutcome
from models.policy import Channel
from starter import Intake
from tests.factories import HEADER, balance_row, write_csv
from tests.fakes.accounts import make_account, step_input
from tests.fakes.providers import SENDGRID_KEY, FakeProviders, fake_providers
from tests.support.cli import invoke
from tests.support.clock import MORNING
from worker import build_senders

REMITTANCE_HEADER = [*HEADER, "Primary Insurance", "Claim Status", "Ded", "Coins", "Non-covered"]


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    with fake_providers() as f:
        yield f


def test_a_policy_without_an_address_takes_the_deployments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = (Path(__file__).parent / "policies" / "staff-test.yaml").read_text(encoding="utf-8")
    (tmp_path / "templates").symlink_to(Path(__file__).parent / "policies" / "templates")
    path = tmp_path / "staff-test.yaml"
    path.write_text(policy, encoding="utf-8")
    monkeypatch.setenv("DUNNING_PRACTICE__REMIT_TO", '["PO Box 9", "Testville, OH 43001"]')
    monkeypatch.setenv("DUNNING_PRACTICE__TAX_ID", "00-1234567")
    practice = load_policy(path).policy.practice
    # The policy's own name and phone win; the address it leaves out is the deployment's.
    assert practice.name == "Example Clinic" and practice.phone == "(555) 010-0199"
    assert practice.remit_to == ["PO Box 9", "Testville, OH 43001"]
    assert practice.return_lines == practice.remit_to  # no return address: the remit-to
    assert practice.tax_id == "00-1234567"
    # A shipped policy names its own identity, whatever the deployment says.
    hospital = load_policy("hospital-501r").policy.practice
    assert hospital.remit_to == ["Patient Financial Services", "PO Box 300", "Lakeside, OH 43440"]
    assert hospital.assistance_summary("es").startswith("Puede tener derecho")
    assert hospital.assistance_summary("fr") == hospital.financial_assistance_summary


def test_an_email_comes_from_the_accounts_policy_practice(
    fake: FakeProviders, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    configured = settings.model_copy(
        update={
            "sendgrid": settings.sendgrid.model_copy(
                update={
                    "api_key": SecretStr(SENDGRID_KEY),
                    "base_url": fake.base_url,
                    "from_email": "billing@clinic.example.test",
                }
            )
        }
    )
    assert configured.practice.name == "Riverside Family Medicine"  # the deployment's default
    dental = load_policy("dental")
    messaging = MessagingActivities(
        session_factory,
        build_senders(configured),
        PolicyStore(session_factory),
        clock=lambda: MORNING,
    )
    account_id = make_account(session_factory, dental)
    step = dental.policy.steps[0]
    result = messaging.send_step(step_input(dental, account_id, step.id, channels=[Channel.EMAIL]))
    assert result.outcome is StepOutcome.SENT and result.channel is Channel.EMAIL
    (request,) = fake.of("sendgrid")
    assert request.json["from"] == {
        "email": "billing@clinic.example.test",
        "name": "Maple Street Dental",
    }


def test_remittance_columns_of_an_export_are_read_and_checked() -> None:
    good = balance_row(charges="400.00", insurance_paid="200.00", insurance_adjustment="50.00")
    good |= {
        "Primary Insurance": "Buckeye Health Plan",
        "Claim Status": "Partly Paid",
        "Ded": "100.00",
        "Coins": "25.00",
        "Non-covered": "",
    }
    too_much = good | {"Non-covered": "200.00"}
    unknown = good | {"Claim Status": "lost"}
    header = ",".join(REMITTANCE_HEADER) + "\n"
    body = "".join(
        ",".join(f'"{row.get(h, "")}"' for h in REMITTANCE_HEADER) + "\n"
        for row in (good, too_much, unknown)
    )
    rows, errors = parse_rows(header + body, BalanceRow)
    assert {(e.row, e.field) for e in errors} == {(3, "(row)"), (4, "Claim Status (claim_status)")}
    by_row = {e.row: str(e) for e in errors}
    assert "deductible: deductible + coinsurance + copay + not_covered is more" in by_row[3]
    assert "Buckeye" not in by_row[3] + by_row[4]  # errors name the field, not the data
    ((_, row),) = rows
    assert row.payer == "Buckeye Health Plan" and row.claim_status == "partly_paid"
    assert (row.deductible, row.coinsurance, row.copay, row.not_covered) == (10000, 2500, 0, 0)


async def test_an_imported_visit_keeps_its_remittance_facts(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    row = balance_row(charges="400.00", insurance_paid="200.00", insurance_adjustment="50.00")
    row |= {"payer": "Buckeye Health Plan", "claim_status": "paid", "deductible": "100.00"}
    row |= {"coinsurance": "25.00", "copay": "20.00", "not_covered": "5.00"}
    header = [*HEADER, "payer", "claim_status", "deductible", "coinsurance", "copay", "not_covered"]
    await Intake(session_factory, None, settings).import_balances(
        write_csv(tmp_path / "b.csv", [row], header)
    )
    with session_factory() as s:
        line = s.scalars(
            select(ChargeLine).where(ChargeLine.external_ref == row["charge_ref"])
        ).one()
        assert line.account_id != uuid.UUID(int=0)
        assert (line.payer, line.claim_status) == ("Buckeye Health Plan", "paid")
        assert (
            line.deductible_cents,
            line.coinsurance_cents,
            line.copay_cents,
            line.not_covered_cents,
        ) == (10000, 2500, 2000, 500)


def test_policy_check_names_what_keeps_letters_from_printing(tmp_path: Path) -> None:
    source = Path(__file__).parent / "policies" / "staff-test.yaml"
    (tmp_path / "templates").symlink_to(source.parent / "templates")
    text = source.read_text(encoding="utf-8")
    assert "  phone: (555) 010-0199\n" in text
    path = tmp_path / "staff-test.yaml"
    path.write_text(
        text.replace("  phone: (555) 010-0199\n", "  phone: (555) 010-0199\n  logo: no-logo.png\n"),
        encoding="utf-8",
    )
    result = invoke("policy", "check", str(path))
    assert result.exit_code == 1
    line = text.splitlines().index("  phone: (555) 010-0199") + 2
    assert f"{path}:{line}: practice.logo: no image file at no-logo.png" in " ".join(
        result.output.split()
    )
    assert "Traceback" not in result.output
    bundle = load_policy(source)
    french = replace(bundle, policy=bundle.policy.model_copy(update={"languages": ["en", "fr"]}))
    (problem,) = statement_problems(french)
    assert problem.path == "languages.1"
    assert "fr.yaml: missing: the statement's fixed wording in 'fr'" in problem.message
    assert statement_problems(bundle) == []
