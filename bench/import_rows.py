"""Import rate: 10,000 CSV rows through ``dunning import balances`` vs checking them only.

The figure is the whole import as the command runs it (validation of the whole file, then chunks
of accounts: ledger, then signal-with-start of each workflow); the baseline is the dry run, which
reads and validates every row and writes nothing.
"""

from __future__ import annotations

import asyncio
import csv
import time
from pathlib import Path

from bench.common import Result, balance_rows, instant_policy, midday_zone, quick_from_argv, stack
from cli.imports import run_import
from starter import ImportReport, Intake


async def measure(quick: bool) -> Result:
    n = 500 if quick else 10_000
    async with stack() as st:
        zone = midday_zone()
        rows = balance_rows(n, instant_policy(st.directory, 1, zone), zone)
        path = st.directory / "import.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        intake = Intake(st.session_factory, st.client, st.settings_for("bench-import"))

        async def importer(p: Path, d: bool) -> ImportReport:
            return await intake.import_balances(p, dry_run=d)

        began = time.perf_counter()
        await run_import(path, "balances", importer, dry_run=True, skip_bad=False)
        checked = time.perf_counter() - began
        began = time.perf_counter()
        report, _, _ = await run_import(path, "balances", importer, dry_run=False, skip_bad=False)
        imported = time.perf_counter() - began
        assert report.rows == n and report.started_or_joined == n
    return Result(
        "import_rows",
        n / imported,
        n / checked,
        "rows/s",
        f"{n} rows imported (ledger + signal-with-start) vs validated only (--dry-run)",
    )


if __name__ == "__main__":
    print(asyncio.run(measure(quick_from_argv(__doc__ or ""))).line())
