"""Start rate: balances imported (ledger, then signal-with-start) per second vs trivial starts.

``Intake.import_balances`` on a CSV of synthetic balances: the ledger rows and their queued
messages in batches of whole accounts, each in one transaction, and the signal outbox delivering
each batch's first charges as signal-with-starts (``starter.START_CONCURRENCY`` in flight, read
and marked once per batch) while the next batch is written. A new balance's start carries its
first charges in its input (``signal_outbox.enqueue_start``), a plain start as the baseline's.
Baseline: as many trivial workflows started on the same dev server with the same number in
flight. Both sides warm up once (50 each, not measured: a worker or an API runs for days, and its
first import compiles statements and loads policies); then turns of both sides, who goes first
alternating (``bench.rounds``); the turn with the median ratio is kept. No worker runs for
either, so only the starts are timed. Target ratio >= 0.8.
"""

from __future__ import annotations

import asyncio
import uuid

from temporalio.contrib.pydantic import pydantic_data_converter

from bench.common import (
    Result,
    balance_rows,
    instant_policy,
    midday_zone,
    quick_from_argv,
    stack,
    write_csv,
)
from bench.rounds import alternate
from config.loader import load_policy
from models.payloads import EscalationInput
from starter import START_CONCURRENCY, Intake

TURNS = 5
WARM_UP = 50


def input_bytes(policy_path: str) -> int:
    """Size of one workflow input as sent: the pinned policy travels with every start."""
    bundle = load_policy(policy_path)
    inp = EscalationInput(
        account_id=uuid.uuid4().hex, policy=bundle.policy, policy_hash=bundle.hash
    )
    return len(pydantic_data_converter.payload_converter.to_payloads([inp])[0].data)


async def measure(quick: bool) -> Result:
    n = 50 if quick else 1000
    turns = 1 if quick else TURNS
    async with stack() as st:
        zone = midday_zone()
        policy = instant_policy(st.directory, 1, zone)
        files = [
            write_csv(st.directory / f"balances-{t}.csv", balance_rows(n, policy, zone))
            for t in range(turns)
        ]
        warm_up = write_csv(st.directory / "warm-up.csv", balance_rows(WARM_UP, policy, zone))
        intake = Intake(st.session_factory, st.client, st.settings_for("bench-start"))
        gate = asyncio.Semaphore(START_CONCURRENCY)

        async def trivial() -> None:
            async with gate:
                await st.client.start_workflow(
                    "bench-trivial",
                    id=f"trivial-{uuid.uuid4().hex}",
                    task_queue="bench-start-baseline",
                )

        async def baseline(turn: int) -> int:
            await asyncio.gather(*(trivial() for _ in range(n)))
            return n

        async def subject(turn: int) -> int:
            report = await intake.import_balances(files[turn])
            assert report.started_or_joined == n
            return n

        if not quick:
            await asyncio.gather(*(trivial() for _ in range(WARM_UP)))
            await intake.import_balances(warm_up)
        figure, base, details = await alternate(turns, baseline, subject)
    return Result(
        "start_rate",
        figure,
        base,
        "balances/s",
        f"{n:,} imported vs {n:,} trivial starts, {turns} turns, who goes first alternating;"
        " median turn",
        target=">= 0.8",
        details={
            "balances": n,
            "input_bytes_physician": input_bytes("physician"),
            **details,
        },
    )


if __name__ == "__main__":
    print(asyncio.run(measure(quick_from_argv(__doc__ or ""))).line())
