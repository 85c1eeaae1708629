"""``make chaos`` (``python -m bench.chaos [--quick]``): the fault suite's long versions.

- ``chaos_temporal_outage``: 1,000 open balances; Temporal stopped for 60 s while a payment is
  posted to each; Temporal restarted on the same database; the worker's dispatcher delivers the
  queued signals. Figures: payments sent, delivered (repaired), lost and duplicated.
- ``chaos_webhook_copies``: 50 provider events, each claimed by 20 concurrent threads: applied,
  duplicated and lost.
- ``chaos_worker_killed``, ``chaos_postgres_paused``, ``chaos_crash_restart``
  (``bench.chaos_faults``), 1,000 balances each: ``kill -9`` of the worker mid-batch,
  PostgreSQL stopped 60 s while their steps fall due, ``kill -9`` of ``dunning run`` mid-batch
  then a restart. Steps sent, duplicated, lost and repaired.

The ``chaos_*`` entries are merged into ``bench/results.json``. ``--quick``: 50 balances, 5 s
outages.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from api.webhooks.common import claim
from bench import chaos_faults
from bench.common import (
    RESULTS,
    Database,
    Result,
    balance_rows,
    database,
    instant_policy,
    machine,
    midday_zone,
    quick_from_argv,
    report,
    write_csv,
)
from embedded.temporal import DEV_SERVER_STARTUP_TIMEOUT, dev_server_path, free_port
from services.signal_outbox import Dispatcher, pending_count
from starter import Intake, get_status
from worker import build_worker

QUERY_CONCURRENCY = 8
QUERY_ATTEMPTS = 5


async def _temporal(db_file: Path, port: int) -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=dev_server_path(),
        dev_server_database_filename=str(db_file),
        port=port,
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
        dev_server_startup_timeout=DEV_SERVER_STARTUP_TIMEOUT,
    )


async def temporal_outage(db: Database, n: int, outage_s: float) -> Result:
    settings = db.settings_for("chaos-outage")
    zone = midday_zone()
    policy = instant_policy(db.directory, 1, zone)
    rows = balance_rows(n, policy, zone)
    db_file, port = db.directory / "temporal.db", free_port()
    env = await _temporal(db_file, port)
    intake = Intake(db.session_factory, env.client, settings)
    async with build_worker(env.client, settings, db.session_factory):
        await intake.import_balances(write_csv(db.directory / "balances.csv", rows))
    await env.shutdown()
    started = time.monotonic()
    queued = 0
    for row in rows:
        posted = await intake.post_payment_fact(
            row["account_number"], 1000, f"CHAOS-{row['charge_ref']}"
        )
        queued += int(not posted.delivered)
    await asyncio.sleep(max(0.0, outage_s - (time.monotonic() - started)))
    env = await _temporal(db_file, port)
    try:
        stop = asyncio.Event()
        dispatcher = Dispatcher(env.client, db.session_factory, settings.temporal.task_queue)
        async with build_worker(env.client, settings, db.session_factory):
            task = asyncio.create_task(dispatcher.run(stop))
            recovered = time.monotonic()
            while True:
                with db.session_factory() as session:
                    if pending_count(session) == 0:
                        break
                await asyncio.sleep(0.5)
            drained_s = time.monotonic() - recovered
            stop.set()
            await task
            gate = asyncio.Semaphore(QUERY_CONCURRENCY)

            async def paid(number: str) -> int:
                async with gate:
                    # A worker busy with 1,000 fresh signals answers queries late: ask again.
                    for attempt in range(QUERY_ATTEMPTS):
                        try:
                            view = await get_status(env.client, intake.account_id(number))
                        except RPCError:
                            if attempt == QUERY_ATTEMPTS - 1:
                                raise
                            await asyncio.sleep(2)
                            continue
                        return view.paid_cents
                    raise AssertionError("unreachable")

            paid_cents = await asyncio.gather(*(paid(r["account_number"]) for r in rows))
    finally:
        await env.shutdown()
    lost = sum(1 for c in paid_cents if c < 1000)
    duplicated = sum(1 for c in paid_cents if c > 1000)
    delivered = n - lost
    return Result(
        "chaos_temporal_outage",
        delivered,
        n,
        "payments",
        note=f"{n} payments posted during a {outage_s:.0f}s outage; drained in {drained_s:.1f}s",
        target=">= 1.0",
        details={
            "sent": n,
            "queued": queued,
            "repaired": queued,
            "lost": lost,
            "duplicated": duplicated,
            "outage_s": outage_s,
            "drain_s": round(drained_s, 1),
        },
    )


def webhook_copies(db: Database, events: int, copies: int) -> Result:
    applied = 0
    with ThreadPoolExecutor(max_workers=copies) as pool:
        for _ in range(events):
            event_id = uuid.uuid4().hex
            copy = functools.partial(claim, db.session_factory, "chaos", event_id)
            won = list(pool.map(copy, ["x"] * copies))
            applied += won.count(True)
    duplicated = max(0, applied - events)
    return Result(
        "chaos_webhook_copies",
        applied,
        events,
        "events applied",
        note=f"{events} events x {copies} concurrent copies",
        target="<= 1.0",
        details={
            "sent": events * copies,
            "applied": applied,
            "duplicated": duplicated,
            "lost": max(0, events - applied),
            "repaired": 0,
        },
    )


def merge(results: list[Result], path: Path = RESULTS) -> None:
    data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"benchmarks": {}}
    data.setdefault("benchmarks", {}).update({r.name: r.as_dict() for r in results})
    data["chaos_machine"] = machine()
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


FAULT_TIMEOUT = 600.0
"""How long a fault run waits for the engine to finish before counting what is missing as lost."""
KILL_AFTER = 1 / 3
"""The share of the steps sent when a process is killed: mid-batch."""


async def main(quick: bool) -> None:
    n, outage = (50, 5.0) if quick else (1000, 60.0)
    async with database() as db:
        results = [
            await temporal_outage(db, n, outage),
            webhook_copies(db, 10 if quick else 50, 20),
            await chaos_faults.worker_killed(db, n, KILL_AFTER, FAULT_TIMEOUT),
            await chaos_faults.postgres_paused(db, n, outage, FAULT_TIMEOUT),
            await chaos_faults.crash_restart(db, n, KILL_AFTER, FAULT_TIMEOUT),
        ]
    report(results)
    merge(results)
    print(f"written {RESULTS}")


if __name__ == "__main__":
    asyncio.run(main(quick_from_argv(__doc__ or "")))
