"""The long fault runs of ``make chaos`` that count steps: a killed worker, a paused PostgreSQL, a
killed ``dunning run``.

Each run imports balances on the bench's instant policy (every step due at once: a letter, then an
email to the local outbox), causes its fault while steps are due or in flight, ends it, waits for
the engine to finish, then counts from the ledger and the outbox mailboxes:

- ``sent``: steps recorded as sent (or ``unconfirmed``: claimed by a worker that died mid-send;
  for the local outbox that never happens, a retry reads the mailbox);
- ``duplicated``: steps sent twice (a second outbox row for one step, a second copy of a message
  in the mailboxes);
- ``lost``: steps that should have been sent and were not, once the engine had time to finish;
- ``repaired``: steps that were in flight or due when the fault struck and were completed after it.

``chaos_worker_killed``: ``kill -9`` of the worker process once at least a third of the steps are
sent (polled: under load the kill lands later); a fresh worker takes over (the killed worker's
steps are retried once their heartbeats stop).
``chaos_postgres_paused``: every process of the embedded PostgreSQL stopped (SIGSTOP) while the
steps fall due, then continued (SIGCONT). ``chaos_crash_restart``: ``kill -9`` of ``dunning run``
(embedded Temporal, worker, API) mid-batch; a second ``dunning run`` on the same data folder stops
the Temporal server left behind and resumes every balance: one Temporal server afterwards.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import select
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from bench.common import (
    Database,
    Result,
    balance_rows,
    instant_policy,
    midday_zone,
    start_dev_server,
    write_csv,
)
from config.settings import Settings
from embedded.runlock import PID_FILE, temporal_servers
from embedded.temporal import free_port
from models.orm import Account, Communication, CommunicationStatus
from starter import Intake
from worker import build_worker

STEPS = 2  # a letter (the print queue) and an email (the local outbox's mailbox)
DONE = (CommunicationStatus.SENT, CommunicationStatus.UNCONFIRMED)
MESSAGE_ID = re.compile(r"^Message-Id: <([0-9a-f-]+)@dunning>$", re.MULTILINE)
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Tally:
    """What the ledger and the mailboxes hold for the run's balances."""

    done: set[tuple[str, str]] = field(default_factory=set)
    """(account, step) recorded as sent or unconfirmed."""
    pending: set[tuple[str, str]] = field(default_factory=set)
    """(account, step) claimed, the send not recorded yet."""
    rows_per_step: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    unconfirmed: int = 0
    mailbox_copies: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def duplicated(self) -> int:
        rows = sum(c - 1 for c in self.rows_per_step.values() if c > 1)
        copies = sum(c - 1 for c in self.mailbox_copies.values() if c > 1)
        return rows + copies


def tally(db: Database, numbers: list[str], outbox: Path) -> Tally:
    t = Tally()
    ids: set[str] = set()
    with db.session_factory() as session:
        rows = session.execute(
            select(Account.account_number, Communication.step_id, Communication.status)
            .add_columns(Communication.id)
            .join(Communication, Communication.account_id == Account.id)
            .where(Account.account_number.in_(numbers))
        ).all()
    for number, step_id, status, communication_id in rows:
        key = (number, step_id)
        t.rows_per_step[key] += 1
        ids.add(str(communication_id))
        if status in DONE:
            t.done.add(key)
            t.unconfirmed += status is CommunicationStatus.UNCONFIRMED
        elif status is CommunicationStatus.PENDING:
            t.pending.add(key)
    if outbox.is_dir():
        for mailbox in outbox.rglob("*.mbox"):
            for found in MESSAGE_ID.findall(mailbox.read_text(encoding="utf-8")):
                if found in ids:
                    t.mailbox_copies[found] += 1
    return t


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float, step: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


def result(name: str, n: int, at_fault: Tally, end: Tally, note: str, **details: Any) -> Result:
    expected = n * STEPS
    lost = expected - len(end.done)
    repaired = len(end.done - at_fault.done)
    return Result(
        name,
        len(end.done),
        expected,
        "steps",
        note=note,
        target=">= 1.0",
        details={
            "sent": len(end.done),
            "duplicated": end.duplicated,
            "lost": lost,
            "repaired": repaired,
            "balances": n,
            "in_flight_at_fault": len(at_fault.pending),
            "sent_at_fault": len(at_fault.done),
            "unconfirmed": end.unconfirmed,
            **details,
        },
    )


def _balances(db: Database, n: int, name: str) -> tuple[list[dict[str, str]], Path]:
    zone = midday_zone()
    folder = db.directory / name
    folder.mkdir(parents=True, exist_ok=True)
    # The policy goes where the run's settings look policies up by name (the database folder).
    rows = balance_rows(n, instant_policy(db.directory, STEPS, zone), zone)
    return rows, write_csv(folder / "balances.csv", rows)


def _worker_process(address: str, db: Database, settings: Settings) -> subprocess.Popen[bytes]:
    """``bench.worker_process`` on the run's queue and data folder; returns once it polls."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.worker_process",
            address,
            db.url,
            settings.temporal.task_queue,
            str(settings.data_dir),
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    line = _line_within(proc, 120)
    if line.strip() != b"ready":
        proc.kill()
        proc.wait(10)
        raise RuntimeError(f"the worker process did not start: {line!r}")
    return proc


def _line_within(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    """The first line ``proc`` prints, or b"" after ``timeout`` seconds."""
    stdout = proc.stdout
    assert stdout is not None
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return got[0] if got else b""


def _kill_9(proc: subprocess.Popen[bytes] | psutil.Process) -> None:
    with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
        proc.send_signal(signal.SIGKILL)
    if isinstance(proc, subprocess.Popen):
        proc.wait(30)


@contextlib.asynccontextmanager
async def _temporal(client: Client | None) -> AsyncIterator[Client]:
    """``client``, or a fresh dev server's, stopped afterwards."""
    if client is not None:
        yield client
        return
    env = await start_dev_server()
    try:
        yield env.client
    finally:
        await env.shutdown()


async def worker_killed(
    db: Database, n: int, kill_after: float, timeout: float, client: Client | None = None
) -> Result:
    """``kill -9`` of the worker once ``kill_after`` of the steps are sent; a fresh one finishes.

    On ``client``'s server (a test's), else on a dev server of its own."""
    settings = db.settings_for(f"chaos-killed-{uuid.uuid4().hex[:8]}").model_copy(
        update={"data_dir": db.directory / "killed-data"}
    )
    rows, csv_path = _balances(db, n, "killed")
    numbers = [r["account_number"] for r in rows]
    outbox = Path(settings.outbox_dir)
    async with _temporal(client) as temporal:
        address = temporal.service_client.config.target_host
        proc = await asyncio.to_thread(_worker_process, address, db, settings)
        try:
            await Intake(db.session_factory, temporal, settings).import_balances(csv_path)
            threshold = int(n * STEPS * kill_after)

            async def far_enough() -> bool:
                return len(tally(db, numbers, outbox).done) >= threshold

            await wait_for(far_enough, timeout, 0.05)
            _kill_9(proc)
            at_fault = tally(db, numbers, outbox)
        finally:
            if proc.poll() is None:
                _kill_9(proc)
        killed_at = time.monotonic()
        async with build_worker(temporal, settings, db.session_factory):

            async def finished() -> bool:
                return len(tally(db, numbers, outbox).done) >= n * STEPS

            await wait_for(finished, timeout)
            recovered_s = time.monotonic() - killed_at
            end = tally(db, numbers, outbox)
    return result(
        "chaos_worker_killed",
        n,
        at_fault,
        end,
        f"kill -9 of the worker after {len(at_fault.done)} of {n * STEPS} steps; "
        f"finished {recovered_s:.0f}s later",
        recovered_s=round(recovered_s, 1),
    )


@contextlib.contextmanager
def postgres_stopped(pgdata: Path) -> Iterator[Callable[[], None]]:
    """Stop every process of the embedded server in ``pgdata``; yields ``resume`` (idempotent)."""
    first = (pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
    postmaster = psutil.Process(int(first))
    postmaster.suspend()  # no new backend is forked while the others are stopped
    procs = [postmaster, *postmaster.children(recursive=True)]
    for proc in procs[1:]:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.suspend()
    resumed = threading.Event()

    def resume() -> None:
        if resumed.is_set():
            return
        resumed.set()
        for proc in reversed(procs):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.resume()

    try:
        yield resume
    finally:
        resume()


async def postgres_paused(
    db: Database, n: int, pause_s: float, timeout: float, client: Client | None = None
) -> Result:
    """The balances' steps fall due while PostgreSQL is stopped for ``pause_s`` seconds.

    ``db`` must be an embedded server of its own (``bench.common.database``): it is the one
    stopped. On ``client``'s Temporal server, else on a dev server of its own."""
    settings = db.settings_for(f"chaos-pg-{uuid.uuid4().hex[:8]}").model_copy(
        update={"data_dir": db.directory / "pg-data"}
    )
    rows, csv_path = _balances(db, n, "paused")
    numbers = [r["account_number"] for r in rows]
    outbox = Path(settings.outbox_dir)
    async with _temporal(client) as temporal:
        # The workflows start with no worker polling: their first steps are due at once.
        await Intake(db.session_factory, temporal, settings).import_balances(csv_path)
        at_fault = tally(db, numbers, outbox)
        with postgres_stopped(db.directory / "pg") as resume:
            # Resumed from a thread: a worker blocked on the database cannot delay it.
            timer = threading.Timer(pause_s, resume)
            timer.start()
            try:
                async with build_worker(temporal, settings, db.session_factory):
                    await asyncio.to_thread(timer.join)
                    resumed_at = time.monotonic()

                    async def finished() -> bool:
                        return len(tally(db, numbers, outbox).done) >= n * STEPS

                    await wait_for(finished, timeout)
                    recovered_s = time.monotonic() - resumed_at
                    end = tally(db, numbers, outbox)
            finally:
                timer.cancel()
    return result(
        "chaos_postgres_paused",
        n,
        at_fault,
        end,
        f"{n} balances due while PostgreSQL was stopped {pause_s:.0f}s; "
        f"finished {recovered_s:.0f}s after it continued",
        pause_s=pause_s,
        recovered_s=round(recovered_s, 1),
    )


def _run_process(data_dir: Path, db: Database, temporal_port: int) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        DUNNING_DATA_DIR=str(data_dir),
        DUNNING_DATABASE__URL=db.url,
        DUNNING_API__PORT=str(free_port()),
        DUNNING_TEMPORAL__DEV_SERVER_PORT=str(temporal_port),
        DUNNING_TEMPORAL__DEV_SERVER_UI_PORT=str(free_port()),
        DUNNING_TEMPORAL__TASK_QUEUE="chaos-crash",
        # The bench database holds the other runs' balances: no repairs of theirs here.
        DUNNING_LEDGER__RECONCILE_AT_START="false",
    )
    env.pop("DUNNING_TEMPORAL__ADDRESS", None)
    with (data_dir.parent / "run.log").open("ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-c", "import cli; cli.main()", "run"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


async def _running(data_dir: Path, proc: subprocess.Popen[bytes], timeout: float = 120) -> str:
    """The Temporal address of a started ``dunning run``."""
    runtime = data_dir / "runtime.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = (data_dir.parent / "run.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"dunning run exited {proc.returncode}: {log}")
        if runtime.exists() and (data_dir / PID_FILE).exists():
            with contextlib.suppress(ValueError):
                return str(json.loads(runtime.read_text())["temporal_address"])
        await asyncio.sleep(0.2)
    raise RuntimeError("dunning run did not start in time")


async def crash_restart(db: Database, n: int, kill_after: float, timeout: float) -> Result:
    """``kill -9`` of ``dunning run`` mid-batch, then a second run on the same data folder."""
    data_dir = (db.directory / "crash" / "data").resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    rows, csv_path = _balances(db, n, "crash")
    numbers = [r["account_number"] for r in rows]
    outbox = data_dir / "outbox"
    db_file = data_dir / "temporal.db"
    port = free_port()
    settings = db.settings_for("chaos-crash").model_copy(update={"data_dir": data_dir})
    began = time.monotonic()
    first = _run_process(data_dir, db, port)
    second: subprocess.Popen[bytes] | None = None
    try:
        address = await _running(data_dir, first)
        started_s = time.monotonic() - began
        client = await Client.connect(address, data_converter=pydantic_data_converter)
        await Intake(db.session_factory, client, settings).import_balances(csv_path)
        threshold = int(n * STEPS * kill_after)

        async def far_enough() -> bool:
            return len(tally(db, numbers, outbox).done) >= threshold

        await wait_for(far_enough, timeout, 0.05)
        _kill_9(first)
        at_fault = tally(db, numbers, outbox)
        left_behind = [p.pid for p in temporal_servers(db_file)]
        (data_dir / "runtime.json").unlink(missing_ok=True)

        killed_at = time.monotonic()
        second = _run_process(data_dir, db, port)
        await _running(data_dir, second)
        restarted_s = time.monotonic() - killed_at
        servers = [p.pid for p in temporal_servers(db_file)]

        async def finished() -> bool:
            return len(tally(db, numbers, outbox).done) >= n * STEPS

        await wait_for(finished, timeout)
        recovered_s = time.monotonic() - killed_at
        end = tally(db, numbers, outbox)
        servers_at_end = len(temporal_servers(db_file))
        stopping = time.monotonic()
        second.send_signal(signal.SIGINT)
        stopped = await asyncio.to_thread(second.wait, 60)
        stop_s = time.monotonic() - stopping
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                _kill_9(proc)
        for left in temporal_servers(db_file):
            with contextlib.suppress(psutil.Error):
                left.kill()
    return result(
        "chaos_crash_restart",
        n,
        at_fault,
        end,
        f"kill -9 of `dunning run` after {len(at_fault.done)} of {n * STEPS} steps; "
        f"{len(left_behind)} Temporal server left behind, {len(servers)} after the restart; "
        f"finished {recovered_s:.0f}s after the kill",
        temporal_servers_left_by_the_kill=len(left_behind),
        temporal_servers_after_restart=len(servers),
        temporal_servers_at_end=servers_at_end,
        orphan_stopped=bool(left_behind) and not set(left_behind) & set(servers),
        restarted_run_exit_code=stopped,
        recovered_s=round(recovered_s, 1),
        start_s=round(started_s, 1),
        restart_s=round(restarted_s, 1),
        stop_s=round(stop_s, 1),
    )
