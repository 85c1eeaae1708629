"""Import rate: CSV rows through ``dunning import balances`` vs raw signal-with-starts.

The figure is the whole import as the command runs it (``cli.imports.run_import``: validation of
the whole file, then chunks of accounts, each chunk's ledger rows and their queued messages in
transactions of whole accounts, the signal outbox delivering each one's starts concurrently
while the next is written, and the next chunk read while this one's workflows start). A new
balance's start carries its first charges in its input (``signal_outbox.enqueue_start``): a plain
start, where an account whose ladder runs gets a signal-with-start per charge.
The baseline is the same number of raw signal-with-starts of a trivial workflow on the same dev
server, with as many in flight (``starter.START_CONCURRENCY``), as the issue set it; against plain
starts, see ``bench.start_rate``. Both sides warm up once (50 each, not measured); the rows are
then split in turns of both sides, who goes first alternating (``bench.rounds``); the turn with
the median ratio is kept. No worker runs for either side, so only the starts and the ledger are
timed. Target ratio >= 0.8.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from bench.common import Result, balance_rows, instant_policy, midday_zone, quick_from_argv, stack
from bench.common import write_csv as write_rows
from bench.rounds import alternate
from cli.imports import run_import
from starter import START_CONCURRENCY, ImportReport, Intake

TURNS = 5
WARM_UP = 50


async def measure(quick: bool) -> Result:
    n = 500 if quick else 10_000
    turns = 1 if quick else TURNS
    per_turn = n // turns
    async with stack() as st:
        zone = midday_zone()
        policy = instant_policy(st.directory, 1, zone)
        intake = Intake(st.session_factory, st.client, st.settings_for("bench-import"))
        gate = asyncio.Semaphore(START_CONCURRENCY)

        async def importer(p: Path, d: bool) -> ImportReport:
            return await intake.import_balances(p, dry_run=d)

        async def raw_start(turn: int) -> None:
            async with gate:
                await st.client.start_workflow(
                    "bench-trivial",
                    id=f"trivial-{turn}-{uuid.uuid4().hex}",
                    task_queue="bench-import-baseline",
                    start_signal="charge",
                    start_signal_args=[{"reference": uuid.uuid4().hex, "amount_cents": 1}],
                )

        async def baseline(turn: int) -> int:
            await asyncio.gather(*(raw_start(turn) for _ in range(per_turn)))
            return per_turn

        files = [
            write_rows(st.directory / f"import-{t}.csv", balance_rows(per_turn, policy, zone))
            for t in range(turns)
        ]

        warm_up = write_rows(st.directory / "warm-up.csv", balance_rows(WARM_UP, policy, zone))
        if not quick:
            await asyncio.gather(*(raw_start(-1) for _ in range(WARM_UP)))
            await run_import(warm_up, "balances", importer, dry_run=False, skip_bad=False)

        async def subject(turn: int) -> int:
            report, _, _ = await run_import(
                files[turn], "balances", importer, dry_run=False, skip_bad=False
            )
            assert report.rows == per_turn and report.started_or_joined == per_turn
            return per_turn

        figure, base, details = await alternate(turns, baseline, subject)
    return Result(
        "import_rows",
        figure,
        base,
        "rows/s",
        f"{n:,} rows imported (ledger + start) in {turns} turns vs as many raw"
        " signal-with-starts of a trivial workflow, who goes first alternating; median turn",
        target=">= 0.8",
        details={"rows": n, **details},
    )


if __name__ == "__main__":
    print(asyncio.run(measure(quick_from_argv(__doc__ or ""))).line())
