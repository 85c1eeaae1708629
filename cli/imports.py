"""``dunning import balances|payments``: validate the whole file, then import it in chunks.

Every bad row is reported with its number and field in one pass, and nothing is imported while
any row is bad, unless ``--skip-bad`` is given: then the bad rows (for balances, every row of an
account with a bad row, so that no balance is imported half) go to ``FILE.rejects.csv`` with
their row number and error, and the rest is imported. A large file shows a progress bar: it is
imported in chunks of whole accounts, each chunk ledger first and then its workflows, so that an
interrupted import is finished by running it again (known references are skipped).
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from cli.common import console
from models.imports import (
    BalanceRow,
    CsvImportError,
    PaymentRow,
    RowError,
    map_columns,
    read_records,
    write_records,
)
from starter import ImportReport

CHUNK_ROWS = 500
PROGRESS_MIN_ROWS = 1000
REJECT_COLUMNS = ["row", "error"]
Importer = Callable[[Path, bool], Awaitable[ImportReport]]


class RateColumn(ProgressColumn):
    """Rows per second so far (rich's own speed columns speak of bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} rows/s")


def rejects_path(file: Path) -> Path:
    return file.with_name(file.stem + ".rejects.csv")


async def run_import(
    file: Path, kind: str, importer: Importer, *, dry_run: bool, skip_bad: bool
) -> tuple[ImportReport, list[RowError], Path | None]:
    """Check the whole file, set bad rows aside if allowed, then import in chunks.

    Returns the combined report, the rejected rows' errors and the rejects file (if any).

    Raises:
        CsvImportError: a bad row and no ``--skip-bad``, or a problem with the header.
    """
    model = BalanceRow if kind == "balances" else PaymentRow
    header, records = read_records(file)
    account_column = map_columns(header, model).get("account_number")
    rejected: dict[int, list[RowError]] = defaultdict(list)
    good = list(records)
    with tempfile.TemporaryDirectory(prefix="dunning-import-") as tmp:
        work = Path(tmp)
        # Each pass may find more (unknown accounts are checked once the rows parse): repeat.
        for attempt in range(3):
            # The first pass reads the file itself, so that what a rewrite would lose (a row with
            # more values than columns) is reported; later passes read the remaining rows.
            candidate = (
                file
                if attempt == 0
                else write_records(work / f"check-{attempt}.csv", header, (r for _, r in good))
            )
            lines = [line for line, _ in good]
            try:
                await importer(candidate, True)
                break
            except CsvImportError as exc:
                errors = exc.errors if attempt == 0 else _renumber(exc.errors, lines)
                if not skip_bad or any(e.row == 1 for e in errors):
                    raise CsvImportError(sorted(errors, key=lambda e: e.row)) from None
                bad = {e.row for e in errors}
                for error in errors:
                    rejected[error.row].append(error)
                if kind == "balances" and account_column:
                    bad_accounts = {r.get(account_column) for line, r in good if line in bad}
                    for line, record in good:
                        if line not in bad and record.get(account_column) in bad_accounts:
                            rejected[line].append(
                                RowError(
                                    line, "account_number", "another row of this account is bad"
                                )
                            )
                            bad.add(line)
                good = [(line, r) for line, r in good if line not in bad]
        else:
            raise CsvImportError([e for es in rejected.values() for e in es])
        rejects = None
        if rejected:
            rejects = _write_rejects(file, header, records, rejected)
        report = ImportReport(rows=len(good))
        if dry_run or not good:
            if dry_run:
                report.accounts = len({r.get(account_column or "") for _, r in good})
            return report, [e for es in rejected.values() for e in es], rejects
        chunks = _chunks(good, account_column if kind == "balances" else None)
        progress = Progress(
            TextColumn(f"importing {kind}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=len(good) < PROGRESS_MIN_ROWS,
        )
        with progress:
            task = progress.add_task(kind, total=len(good))
            for index, chunk in enumerate(chunks):
                path = write_records(work / f"chunk-{index}.csv", header, chunk)
                part = await importer(path, False)
                report.accounts += part.accounts
                report.new_charges += part.new_charges
                report.started_or_joined += part.started_or_joined
                report.queued += part.queued
                progress.advance(task, len(chunk))
    return report, [e for es in rejected.values() for e in es], rejects


def _renumber(errors: list[RowError], lines: list[int]) -> list[RowError]:
    """Errors of a re-written subset, numbered by the original file's lines."""
    out = []
    for e in errors:
        index = e.row - 2
        row = lines[index] if e.row > 1 and 0 <= index < len(lines) else e.row
        out.append(RowError(row, e.field, e.message))
    return sorted(out, key=lambda e: e.row)


def _chunks(
    good: list[tuple[int, dict[str, str]]], account_column: str | None
) -> list[list[dict[str, str]]]:
    if account_column is None:
        return [[r for _, r in good[i : i + CHUNK_ROWS]] for i in range(0, len(good), CHUNK_ROWS)]
    by_account: dict[str, list[dict[str, str]]] = defaultdict(list)
    for _, record in good:
        by_account[record.get(account_column, "")].append(record)
    chunks: list[list[dict[str, str]]] = [[]]
    for rows in by_account.values():
        if chunks[-1] and len(chunks[-1]) + len(rows) > CHUNK_ROWS:
            chunks.append([])
        chunks[-1].extend(rows)
    return chunks


def _write_rejects(
    file: Path,
    header: list[str],
    records: list[tuple[int, dict[str, str]]],
    rejected: dict[int, list[RowError]],
) -> Path:
    path = rejects_path(file)
    rows = []
    for line, record in records:
        if line in rejected:
            message = "; ".join(f"{e.field}: {e.message}" for e in rejected[line])
            rows.append({"row": str(line), "error": message, **record})
    return write_records(path, REJECT_COLUMNS + header, rows)
