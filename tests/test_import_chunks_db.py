"""A file of several chunks: the next chunk is read while the previous one starts its workflows,
but the ledgers are written one after the other in file order (a guarantor on two chunks keeps
the later row's details), and every account is imported once."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from cli.imports import CHUNK_ROWS, run_import
from config.settings import Settings
from models.orm import Account, Guarantor, SignalOutbox
from starter import ImportReport, Intake
from tests.factories import balance_row, write_csv


async def test_chunks_write_their_ledgers_in_file_order(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    rows = [balance_row() for _ in range(2 * CHUNK_ROWS + 100)]  # three chunks
    shared = rows[0]["guarantor_id"]
    later = CHUNK_ROWS + 100  # in the second chunk, read while the first is written
    rows[later] |= {"guarantor_id": shared, "email": "later@example.test"}
    intake = Intake(session_factory, None, settings)  # Temporal away: every start queues

    async def importer(path: Path, dry_run: bool) -> ImportReport:
        return await intake.import_balances(path, dry_run=dry_run)

    report, rejected, _ = await run_import(
        write_csv(tmp_path / "big.csv", rows), "balances", importer, dry_run=False, skip_bad=False
    )
    assert rejected == []
    assert (report.rows, report.accounts, report.new_charges) == (len(rows),) * 3
    assert (report.started_or_joined, report.queued) == (0, len(rows))
    numbers = [r["account_number"] for r in rows]
    with session_factory() as session:
        accounts = session.scalar(
            select(func.count()).select_from(Account).where(Account.account_number.in_(numbers))
        )
        starts = session.scalar(
            select(func.count())
            .select_from(SignalOutbox)
            .join(Account, Account.id == SignalOutbox.account_id)
            .where(Account.account_number.in_(numbers), SignalOutbox.start_input.is_not(None))
        )
        guarantor = session.scalars(select(Guarantor).where(Guarantor.external_ref == shared)).one()
        owners = session.scalars(
            select(Account.account_number).where(Account.guarantor_id == guarantor.id)
        ).all()
    assert (accounts, starts) == (len(rows), len(rows))
    assert guarantor.email == "later@example.test"
    assert sorted(owners) == sorted([numbers[0], numbers[later]])
