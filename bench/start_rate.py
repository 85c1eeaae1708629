"""Start rate: balances imported (ledger, then signal-with-start) per second vs trivial starts.

``Intake.import_balances`` on a CSV of ``n`` synthetic balances: the ledger rows in one
transaction, then each account's workflow started with its first charge (signal-with-start),
``starter.START_CONCURRENCY`` accounts at a time, as ``dunning import balances`` does. Baseline:
``n`` trivial workflows started on the same dev server with the same number in flight. No worker
runs for either, so only the starts are timed.
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
    timed,
    write_csv,
)
from config.loader import load_policy
from models.payloads import EscalationInput
from starter import START_CONCURRENCY, Intake


def input_bytes(policy_path: str) -> int:
    """Size of one workflow input as sent: the pinned policy travels with every start."""
    bundle = load_policy(policy_path)
    inp = EscalationInput(
        account_id=uuid.uuid4().hex, policy=bundle.policy, policy_hash=bundle.hash
    )
    return len(pydantic_data_converter.payload_converter.to_payloads([inp])[0].data)


async def measure(quick: bool) -> Result:
    n = 50 if quick else 1000
    async with stack() as st:
        zone = midday_zone()
        policy = instant_policy(st.directory, 1, zone)
        path = write_csv(st.directory / "balances.csv", balance_rows(n, policy, zone))
        intake = Intake(st.session_factory, st.client, st.settings_for("bench-start"))
        with timed() as ours:
            report = await intake.import_balances(path)
        assert report.started_or_joined == n
        gate = asyncio.Semaphore(START_CONCURRENCY)

        async def trivial() -> None:
            async with gate:
                await st.client.start_workflow(
                    "bench-trivial",
                    id=f"trivial-{uuid.uuid4().hex}",
                    task_queue="bench-start-baseline",
                )

        with timed() as theirs:
            await asyncio.gather(*(trivial() for _ in range(n)))
    return Result(
        "start_rate",
        n / ours(),
        n / theirs(),
        "balances/s",
        f"{n:,} imported in {ours():.1f}s vs {n:,} trivial starts in {theirs():.1f}s",
        details={
            "balances": n,
            "input_bytes_physician": input_bytes("physician"),
        },
    )


if __name__ == "__main__":
    print(asyncio.run(measure(quick_from_argv(__doc__ or ""))).line())
