"""What every benchmark needs: embedded PostgreSQL and dev server, bench policies, results."""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import csv
import datetime as dt
import json
import os
import platform
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.baseline import BaselineWorkflow, TrivialWorkflow, noop
from config.settings import POLICY_DIR, Settings
from embedded.postgres import EmbeddedPostgres
from embedded.temporal import DEV_SERVER_STARTUP_TIMEOUT, dev_server_path, test_server_path
from models.orm.database import make_engine, make_session_factory, migrate
from worker import workflow_runner

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results.json"
TWELVE_MONTH = BENCH_DIR / "policies" / "twelve-month.yaml"


@dataclass
class Result:
    """One benchmark's figure, its baseline's, their ratio and the unit; JSON for scripts."""

    name: str
    figure: float
    baseline: float
    unit: str
    note: str = ""
    target: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.figure / self.baseline if self.baseline else 0.0

    @property
    def met(self) -> bool | None:
        """Whether the ratio meets ``target`` (``">= 0.8"``, ``"<= 1.2"``); None without one."""
        if not self.target:
            return None
        op, value = self.target.split()
        return self.ratio >= float(value) if op == ">=" else self.ratio <= float(value)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["figure"] = round(self.figure, 3)
        data["baseline"] = round(self.baseline, 3)
        data["ratio"] = round(self.ratio, 3)
        data["target_met"] = self.met
        return data

    def line(self) -> str:
        return (
            f"{self.name:<18} {self.figure:>12,.1f} {self.baseline:>12,.1f} "
            f"{self.ratio:>7.3f}  {self.unit:<16} {self._verdict()}{self.note}"
        )

    def _verdict(self) -> str:
        met = self.met
        return "" if met is None else f"[target {self.target}: {'met' if met else 'MISSED'}] "


HEADER = f"{'benchmark':<18} {'figure':>12} {'baseline':>12} {'ratio':>7}  unit"


def quick_from_argv(description: str) -> bool:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    return bool(args.quick or os.environ.get("DUNNING_BENCH_QUICK"))


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "nproc": cores,
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average_at_start": [round(x, 2) for x in load],
    }


def midday_zone(now: dt.datetime | None = None) -> str:
    """A fixed-offset zone in which it is about 13:00 now: every contact rule lets a step run."""
    now = now or dt.datetime.now(dt.UTC)
    offset = 13 - now.hour
    if offset > 14:
        offset -= 24
    if offset < -12:
        offset += 24
    return "Etc/GMT" + ("" if offset == 0 else f"{-offset:+d}")  # Etc/GMT-3 is UTC+03:00


INSTANT_STEP_CHANNELS = ("letter", "email")


def instant_policy(directory: Path, steps: int, time_zone: str) -> Path:
    """A bench-only policy of ``steps`` steps all due at once when local time is midday.

    Every step is on day 0 with no spacing, every day is a business day and the patient's zone is
    chosen so that it is about 13:00 there: the decision core lets each step run as soon as the
    previous one is recorded, so the run measures the engine, not the calendar.
    """
    lines = [
        "name: bench-instant",
        "practice: {name: Example Clinic, phone: (555) 010-0199, pay_url: https://pay.example.test}",
        "thresholds: {minimum_balance: 1.00}",
        "contact:",
        f"  practice_time_zone: {time_zone}",
        f"  default_patient_time_zone: {time_zone}",
        "  business_days: [mon, tue, wed, thu, fri, sat, sun]",
        "  min_spacing_hours: 0",
        "steps:",
    ]
    for i in range(steps):
        channel = INSTANT_STEP_CHANNELS[i % 2]
        template = "statement" if channel == "letter" else "statement-notice"
        lines.append(
            f"  - {{id: step-{i + 1}, day: 0, channels: [{channel}], template: {template}}}"
        )
    path = directory / f"bench-instant-{steps}.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def balance_rows(n: int, policy: Path, time_zone: str) -> list[dict[str, str]]:
    """Synthetic balances: invented names and numbers only."""
    rows = []
    for _ in range(n):
        k = uuid.uuid4().hex[:10].upper()
        rows.append(
            {
                "account_number": f"B-{k}",
                "guarantor_id": f"G-{k}",
                "first_name": "Bench",
                "last_name": "Synthetic",
                "email": f"b{k.lower()}@example.test",
                # Area code 500 and ZIP 99999 have no place: the midday zone on record alone sets
                # the allowed hours (a New York number would hold every step for New York's
                # morning whenever the bench runs at New York's night).
                "phone": "+15005550123",
                "sms_consent": "no",
                "address_line1": "1 Example Way",
                "city": "Springfield",
                "state": "NY",
                "postal_code": "99999",
                "time_zone": time_zone,
                "charge_ref": f"C-{k}",
                "service_date": "2026-10-01",
                "description": "Office visit",
                "charges": "185.00",
                "insurance_paid": "90.00",
                "insurance_adjustment": "40.00",
                "patient_paid": "0.00",
                "policy": policy.stem,  # a name, found in the policy folders
            }
        )
    return rows


BENCH_POLICY_DIR = Path(__file__).parent / "policies"


@dataclass
class Database:
    """A fresh embedded PostgreSQL with the migrated schema, in a temporary folder."""

    directory: Path
    url: str
    engine: Engine
    session_factory: sessionmaker[Session]
    settings: Settings

    def settings_for(self, task_queue: str) -> Settings:
        return self.settings.model_copy(
            update={
                "temporal": self.settings.temporal.model_copy(update={"task_queue": task_queue})
            }
        )


@asynccontextmanager
async def database() -> AsyncIterator[Database]:
    with tempfile.TemporaryDirectory(prefix="dunning-bench-") as tmp:
        directory = Path(tmp)
        pg = EmbeddedPostgres(directory / "pg", database="dunning")
        url = pg.start()
        try:
            migrate(url)
            settings = Settings(
                data_dir=directory / "data",
                database={"url": url},
                temporal={"task_queue": "bench"},
                # Import rows name a policy; the bench's own policies are written here.
                # bench/policies holds the twelve-month ladder of history_cost and simulation.
                practice={"policy_dirs": [POLICY_DIR, BENCH_POLICY_DIR, directory]},
            )
            # As in production: one connection per activity slot, and a few to spare.
            engine = make_engine(url, pool_size=settings.database.pool_size)
            try:
                yield Database(directory, url, engine, make_session_factory(engine), settings)
            finally:
                engine.dispose()
        finally:
            pg.stop()


def baseline_worker(client: Client, task_queue: str, slots: int) -> Worker:
    """A worker for the baseline workflows, with as many activity slots as ``build_worker``."""
    workflows: list[type] = [BaselineWorkflow, TrivialWorkflow]
    return Worker(
        client,
        task_queue=task_queue,
        workflows=workflows,
        workflow_runner=workflow_runner(workflows),  # the same sandbox as ours
        activities=[noop],
        activity_executor=ThreadPoolExecutor(slots),
        max_concurrent_activities=slots,
    )


@dataclass
class Stack(Database):
    """A fresh embedded PostgreSQL and dev server in a temporary folder."""

    env: WorkflowEnvironment | None = None

    @property
    def client(self) -> Client:
        assert self.env is not None
        return self.env.client

    def baseline_worker(self, task_queue: str) -> Worker:
        return baseline_worker(
            self.client, task_queue, self.settings.temporal.max_concurrent_activities
        )


async def start_dev_server() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=dev_server_path(),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
        dev_server_startup_timeout=DEV_SERVER_STARTUP_TIMEOUT,
    )


@asynccontextmanager
async def stack() -> AsyncIterator[Stack]:
    async with database() as db:
        env = await start_dev_server()
        try:
            yield Stack(db.directory, db.url, db.engine, db.session_factory, db.settings, env)
        finally:
            await env.shutdown()


@asynccontextmanager
async def time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    """A fresh time-skipping server: one per workflow, because it hangs with several."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server_path(),
        data_converter=pydantic_data_converter,
        test_server_startup_timeout=DEV_SERVER_STARTUP_TIMEOUT,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@dataclass
class HistoryShape:
    """What a workflow history costs: events, bytes, and the commands behind them."""

    events: int = 0
    bytes: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    runs: int = 0
    last_types: list[str] = field(default_factory=list)

    @property
    def timers(self) -> int:
        return self.by_type.get("TIMER_STARTED", 0)

    @property
    def activities(self) -> int:
        return self.by_type.get("ACTIVITY_TASK_SCHEDULED", 0)

    @property
    def signals(self) -> int:
        return self.by_type.get("WORKFLOW_EXECUTION_SIGNALED", 0)

    @property
    def workflow_tasks(self) -> int:
        return self.by_type.get("WORKFLOW_TASK_COMPLETED", 0)

    @property
    def completed(self) -> bool:
        return bool(self.by_type.get("WORKFLOW_EXECUTION_COMPLETED"))

    def add(self, history: WorkflowHistory) -> HistoryShape:
        counts = collections.Counter(self.by_type)
        for event in history.events:
            counts[EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")] += 1
        self.last_types = [
            EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events[-3:]
        ]
        self.by_type = dict(sorted(counts.items()))
        self.events += len(history.events)
        self.bytes += sum(e.ByteSize() for e in history.events)
        self.runs += 1
        return self


@contextlib.contextmanager
def timed() -> Iterator[Callable[[], float]]:
    """``with timed() as elapsed:`` then ``elapsed()`` seconds, frozen when the block ends."""
    began = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - began
    end.append(time.perf_counter())


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float = 600.0, interval: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark did not finish in time")
        await asyncio.sleep(interval)


def write_results(
    results: list[Result],
    path: Path = RESULTS,
    *,
    quick: bool = False,
    seconds: float = 0.0,
    machine_info: dict[str, Any] | None = None,
    note: str = "",
) -> None:
    data = {
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "seconds": round(seconds, 1),
        "machine": machine_info or machine(),
        "note": note,
        "benchmarks": {r.name: r.as_dict() for r in results},
    }
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def report(results: list[Result]) -> None:
    print(HEADER)
    for r in results:
        print(r.line())
