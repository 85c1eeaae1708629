"""``dunning run`` and ``dunning worker``: the long-running processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from sqlalchemy import func, select

from activities.reconcile import ensure_schedule
from cli.common import console
from config.settings import PACKAGE_DIR, Settings
from embedded.stack import Stack
from embedded.temporal import free_port
from models.orm import Account
from services import readiness
from services.signal_outbox import Dispatcher
from starter import Intake
from worker import build_worker, tune_gc

log = logging.getLogger(__name__)
SAMPLE_BALANCES = PACKAGE_DIR / "samples" / "balances.csv"


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: Ctrl-C stops the whole engine, not just the API."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_engine(settings: Settings, *, with_api: bool, embedded_temporal: bool = True) -> None:
    """Start the stack, seed an empty database, run the worker (and API) until Ctrl-C."""
    if not embedded_temporal and not settings.temporal.address:
        from starter import read_runtime

        address = read_runtime(settings).get("temporal_address")
        if not address:
            console.print(
                "[red]error:[/red] no Temporal server: set DUNNING_TEMPORAL__ADDRESS "
                "or start `dunning run`"
            )
            raise SystemExit(1)
        settings.temporal.address = address
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async with Stack(settings) as stack:
        assert stack.db is not None and stack.client is not None
        worker = build_worker(stack.client, settings, stack.db.session_factory)
        dispatcher = Dispatcher(
            stack.client, stack.db.session_factory, settings.temporal.task_queue
        )
        tune_gc()
        async with worker:
            # Ledger facts committed while Temporal did not answer reach their workflows now.
            dispatching = asyncio.create_task(dispatcher.run(stop))
            # Reconciliation: daily, and once now.
            await ensure_schedule(stack.client, settings)
            api_url = ""
            server = None
            if with_api:
                from api.app import create_app

                port = free_port(settings.api.port)
                api_url = f"http://{settings.api.host}:{port}"
                app = create_app(settings, stack.db.session_factory, stack.client)
                server = _Server(
                    uvicorn.Config(
                        app, host=settings.api.host, port=port, log_level="warning", lifespan="off"
                    )
                )
            stack.write_runtime(api_url)
            await _seed_if_empty(settings, stack)
            await _wait_ready(settings, stack)
            console.print("[bold green]dunning is running[/bold green]")
            if stack.ui_url:
                console.print(f"  Temporal web UI  {stack.ui_url}")
            console.print(f"  Temporal         {stack.temporal_address}")
            if api_url:
                console.print(f"  HTTP API         {api_url}  (docs at {api_url}/docs)")
                console.print(f"  staff console    {api_url}/console")
            console.print(f"  outbox           {Path(settings.outbox_dir).resolve()}")
            console.print("  Ctrl-C stops everything; open balances resume on the next run.")
            serve = asyncio.create_task(server.serve()) if server else None
            await stop.wait()
            console.print("stopping...")
            if server and serve:
                server.should_exit = True
                await serve
            await dispatching


async def _wait_ready(settings: Settings, stack: Stack, timeout: float = 30.0) -> None:
    """Wait until PostgreSQL, Temporal and the worker's polling all check out (/health/ready)."""
    assert stack.db is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await readiness.check(
            stack.db.session_factory, stack.client, settings.temporal.task_queue
        )
        if result.ready:
            return
        if loop.time() > deadline:
            failing = ", ".join(f"{k}: {v}" for k, v in result.checks.items() if v != "ok")
            console.print(f"[yellow]not ready yet[/yellow] ({failing})")
            return
        await asyncio.sleep(0.25)


async def _seed_if_empty(settings: Settings, stack: Stack) -> None:
    assert stack.db is not None and stack.client is not None
    with stack.db.session_factory() as session:
        if session.scalar(select(func.count()).select_from(Account)):
            return
    report = await Intake(stack.db.session_factory, stack.client, settings).import_balances(
        SAMPLE_BALANCES
    )
    console.print(f"  seeded {report.accounts} synthetic sample balances ({SAMPLE_BALANCES.name})")
