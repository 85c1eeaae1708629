"""Matching an 835's claims to accounts, with Temporal away (the signal outbox keeps the
messages): a claim pattern for suffixed control numbers, a reference on two accounts, a bad
pattern."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from models.orm import repositories as repo
from services.context import Services
from services.identity import SYSTEM
from services.remittance import ClaimPatternError, compile_pattern, import_remittance
from starter import Intake
from tests.factories import balance_row, write_csv

DATA = Path(__file__).parent / "data" / "remittance"


def _era(tmp_path: Path, claims: dict[str, str], trace: str) -> Path:
    text = (DATA / "guide_5010_example.835").read_text().replace("*TRACE-0001*", f"*{trace}*")
    for placeholder, value in claims.items():
        text = text.replace(f"CLP*{placeholder}*", f"CLP*{value}*")
    path = tmp_path / f"{trace}.835"
    path.write_text(text)
    return path


async def test_claim_pattern_and_ambiguous_references(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    # Starts with a letter: a tag of eight digits (one run in 43) made the shared reference
    # "SH-12345678" match the claim pattern below, as "SH" with a suffix.
    tag = "T" + uuid.uuid4().hex[:8].upper()
    gross = {"insurance_paid": "0", "insurance_adjustment": "0"}
    a = balance_row(charge_ref=f"PA-{tag}", charges="185.00", **gross)
    shared = f"SH-{tag}"  # the same visit reference on two accounts
    b1 = balance_row(charge_ref=shared, charges="200.00", **gross)
    b2 = balance_row(charge_ref=shared, charges="200.00", **gross)
    await Intake(session_factory, None, settings).import_balances(
        write_csv(tmp_path / "b.csv", [a, b1, b2])
    )
    era = _era(tmp_path, {"CLAIM-A": f"PA-{tag}-01", "CLAIM-B": shared}, f"TP-{tag}")
    svc = Services(settings, session_factory, None)

    plain = await import_remittance(svc, SYSTEM, era, dry_run=True)
    assert [p.account_number for p in plain.claims[:2]] == [None, None]
    assert plain.claims[1].unmatched == "the claim reference is on more than one account"

    report = await import_remittance(svc, SYSTEM, era, claim_pattern=r"^(?P<ref>.+)-\d+$")
    first, second = report.claims[:2]
    assert (first.account_number, report.posted, report.queued) == (a["account_number"], 1, 1)
    assert second.unmatched == "the claim pattern does not match the patient control number"
    with session_factory() as session:
        account = repo.account_by_number(session, a["account_number"])
        assert account is not None and account.balance_cents == 5500


@pytest.mark.parametrize(
    ("pattern", "message"),
    [("(", "claim_pattern: not a regular expression"), ("^(.+)-", "needs a group named ref")],
)
def test_bad_claim_patterns_are_refused(pattern: str, message: str) -> None:
    with pytest.raises(ClaimPatternError, match=message):
        compile_pattern(pattern)
