"""``dunning import balances|payments``: validate the whole file, then import it in chunks.

Every bad row is reported with its number and field in one pass, and nothing is imported while
any row is bad, unless ``--skip-bad`` is given: then the bad rows (for balances, every row of an
account with a bad row, so that no balance is imported half) go to ``FILE.rejects.csv`` with
their row number and error, and the rest is imported. A large file shows a progress bar: it is
imported in chunks of whole accounts, each chunk ledger first and then its workflows (the next
chunk is read while they start), so that an interrupted import is finished by running it again
(known references are skipped).
"""

from __future__ import annotations

import asyncio
import collections
import csv
import datetime as dt
import io
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
from models.import_profiles import Converted, prepare
from models.imports import (
    BalanceRow,
    CsvImportError,
    RowError,
    aging_totals,
    check_charge_refs,
    parse_rows,
    write_records,
)
from models.safe_csv import SafeDictWriter
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
    file: Path,
    kind: str,
    importer: Importer,
    *,
    dry_run: bool,
    skip_bad: bool,
    source: Converted | None = None,
) -> tuple[ImportReport, list[RowError], Path | None]:
    """Check the whole file, set bad rows aside if allowed, then import in chunks.

    ``source`` is the file already read under its profile (:func:`models.import_profiles.prepare`);
    without it the file is read with the detected profile. Returns the combined report, the
    rejected rows' errors and the rejects file (if any).

    Raises:
        CsvImportError: a bad row and no ``--skip-bad``, or a problem with the file or header.
    """
    if source is None:
        source = prepare(file, kind)
    shown = {f: c for f, c in source.mapped.items() if c and c != f}

    def located(errors: list[RowError]) -> list[RowError]:
        return [
            RowError(
                e.row, f"{shown[e.field]} ({e.field})" if e.field in shown else e.field, e.message
            )
            for e in errors
        ]

    header, records = source.header, source.records
    found = [RowError(e.row, e.column, e.message) for e in source.errors]
    if any(e.row == 1 for e in found) or (found and not skip_bad and not records):
        raise CsvImportError(sorted(found, key=lambda e: e.row))
    rejected: dict[int, list[RowError]] = defaultdict(list)
    for error in found:
        rejected[error.row].append(error)
    good = [(line, r) for line, r in records if line not in rejected]
    account_column = "account_number" if kind == "balances" else None
    with tempfile.TemporaryDirectory(prefix="dunning-import-") as tmp:
        work = Path(tmp)
        warnings: list[RowError] = []
        # Each pass may find more (unknown accounts are checked once the rows parse): repeat.
        for attempt in range(3):
            candidate = write_records(work / f"check-{attempt}.csv", header, (r for _, r in good))
            lines = [line for line, _ in good]
            try:
                if good:
                    checked = await importer(candidate, True)
                    warnings = (
                        checked.warnings if attempt == 0 else _renumber(checked.warnings, lines)
                    )
                if found and not skip_bad:
                    raise CsvImportError([])
                break
            except CsvImportError as exc:
                errors = located(_renumber(exc.errors, lines))
                if not skip_bad or any(e.row == 1 for e in errors):
                    raise CsvImportError(sorted(found + errors, key=lambda e: e.row)) from None
                bad = {e.row for e in errors}
                for error in errors:
                    rejected[error.row].append(error)
                if account_column:
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
        if account_column and rejected:
            # A row refused before validation (a control character) takes its account along.
            bad_accounts = {source_account(source, line) for line in rejected}
            for line, record in good:
                if record.get(account_column) in bad_accounts:
                    rejected[line].append(
                        RowError(line, "account_number", "another row of this account is bad")
                    )
            good = [(line, r) for line, r in good if line not in rejected]
        rejects = None
        if rejected:
            rejects = _write_rejects(file, source, rejected)
        report = ImportReport(rows=len(good))
        if dry_run or not good:
            if dry_run:
                report.accounts = len({r.get(account_column or "account_number") for _, r in good})
                report.warnings = warnings
            return report, _all(rejected), rejects
        chunks = _chunks(good, account_column)
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
        # Balances: the next chunk is read and checked while this one's workflows start (its
        # ledger waits for this one's: ``Intake.import_balances``). Payments one chunk at a time.
        ahead = 1 if account_column else 0
        with progress:
            task = progress.add_task(kind, total=len(good))
            line_of = {id(record): line for line, record in good}
            running: collections.deque[tuple[asyncio.Task[ImportReport], list[dict[str, str]]]]
            running = collections.deque()

            async def finish_one() -> None:
                part_task, chunk = running.popleft()
                part = await part_task
                report.warnings += _renumber(part.warnings, [line_of[id(r)] for r in chunk])
                report.accounts += part.accounts
                report.new_charges += part.new_charges
                report.started_or_joined += part.started_or_joined
                report.queued += part.queued
                progress.advance(task, len(chunk))

            try:
                for index, chunk in enumerate(chunks):
                    path = write_records(work / f"chunk-{index}.csv", header, chunk)
                    running.append((asyncio.ensure_future(importer(path, False)), chunk))
                    if len(running) > ahead:
                        await finish_one()
                while running:
                    await finish_one()
            finally:
                # A chunk failed: the ones started after it stop (what they committed stays,
                # and running the import again finishes it).
                for part_task, _ in running:
                    part_task.cancel()
                await asyncio.gather(*(t for t, _ in running), return_exceptions=True)
    return report, _all(rejected), rejects


def source_account(source: Converted, line: int) -> str | None:
    """The account of a line of the file, converted or refused before conversion."""
    if line in source.bad_row_accounts:
        return source.bad_row_accounts[line]
    for at, record in source.records:
        if at == line:
            return record.get("account_number")
    return None


def _all(rejected: dict[int, list[RowError]]) -> list[RowError]:
    return [e for line in sorted(rejected) for e in rejected[line]]


def summarise(
    source: Converted, rejected: list[RowError], as_of: dt.date
) -> tuple[int, int, dict[str, int]]:
    """Accounts, lines and what is owed per aging bucket (cents) in the rows to import."""
    bad = {e.row for e in rejected}
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=source.header)
    writer.writeheader()
    writer.writerows(r for line, r in source.records if line not in bad)
    rows, _ = check_charge_refs(parse_rows(text.getvalue(), BalanceRow)[0])
    accounts = len({row.account_number for _, row in rows})
    return accounts, len(rows), aging_totals([row for _, row in rows], as_of)


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


def _write_rejects(file: Path, source: Converted, rejected: dict[int, list[RowError]]) -> Path:
    """The rejected rows as the file had them, each with its row number and why: safe to open."""
    path = rejects_path(file)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = SafeDictWriter(
            f, fieldnames=REJECT_COLUMNS + source.source_header, extrasaction="ignore"
        )
        writer.writeheader()
        for line in sorted(rejected):
            message = "; ".join(f"{e.field}: {e.message}" for e in rejected[line])
            writer.writerow(
                {"row": str(line), "error": message, **source.source_records.get(line, {})}
            )
    return path
