"""An import that fails in the middle of writing leaves nothing half-written.

The file is valid; the database refuses the last account's charge line while the import is
writing (a trigger installed for this test only, matching only this test's charge reference: a
real failure of the real database, not a stand-in for the project's code). The accounts, the
guarantors, the charge lines, the consent rows and the audit rows written before it are all gone,
and no workflow was started; once the fault is gone, the same file imports whole.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from models.orm import Account, AuditEvent, ChargeLine, Guarantor
from starter import Intake
from tests.factories import balance_row, write_csv


@pytest.fixture
def refused_charge(engine: Engine) -> Iterator[str]:
    """A charge reference the database refuses to store, for the length of one test."""
    ref = f"C-FAIL-{uuid.uuid4().hex[:8].upper()}"
    name = f"refuse_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"RAISE EXCEPTION 'injected failure'; END $$"
            )
        )
        conn.execute(
            text(
                f"CREATE TRIGGER {name} BEFORE INSERT ON charge_lines FOR EACH ROW "
                f"WHEN (NEW.external_ref = '{ref}') EXECUTE FUNCTION {name}()"
            )
        )
    try:
        yield ref
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TRIGGER IF EXISTS {name} ON charge_lines"))
            conn.execute(text(f"DROP FUNCTION IF EXISTS {name}()"))


def _written(session_factory: sessionmaker[Session], rows: list[dict[str, str]]) -> dict[str, int]:
    numbers = [r["account_number"] for r in rows]
    guarantors = [r["guarantor_id"] for r in rows]
    with session_factory() as s:
        accounts = select(Account.id).where(Account.account_number.in_(numbers))
        return {
            "accounts": s.scalar(select(func.count()).select_from(accounts.subquery())) or 0,
            "guarantors": s.scalar(
                select(func.count())
                .select_from(Guarantor)
                .where(Guarantor.external_ref.in_(guarantors))
            )
            or 0,
            "charge lines": s.scalar(
                select(func.count())
                .select_from(ChargeLine)
                .where(ChargeLine.account_id.in_(accounts))
            )
            or 0,
            "audit rows": s.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.account_id.in_(accounts))
            )
            or 0,
        }


async def test_a_failure_while_writing_leaves_nothing_half_written(
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    refused_charge: str,
) -> None:
    rows = [balance_row(), balance_row(), balance_row(charge_ref=refused_charge)]
    path = write_csv(tmp_path / "three.csv", rows)
    # No Temporal client: the import must fail at the database, before any workflow start.
    intake = Intake(session_factory, None, settings)
    with pytest.raises(DBAPIError, match="injected failure"):
        await intake.import_balances(path)
    assert _written(session_factory, rows) == {
        "accounts": 0,
        "guarantors": 0,
        "charge lines": 0,
        "audit rows": 0,
    }
    # The two accounts before the refused one are written when nothing fails (the ledger commits
    # with their messages queued for the missing Temporal): the failure above came midway.
    report = await intake.import_balances(write_csv(tmp_path / "two.csv", rows[:2]))
    assert report.queued == 2
    assert _written(session_factory, rows) == {
        "accounts": 2,
        "guarantors": 2,
        "charge lines": 2,
        "audit rows": 2,
    }
