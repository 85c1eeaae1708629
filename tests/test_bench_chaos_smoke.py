"""The long fault runs of ``make chaos`` (bench/chaos_faults.py) at tiny sizes: they run, and
their figures say every step was sent once (0 duplicated, 0 lost).

The smokes kill a process only once its steps are sent (the long runs kill mid-batch, which waits
for the send's start-to-close timeout); the fault tests (tests/test_fault_*.py,
tests/test_channels_killed_worker.py) prove the mid-send cases.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from bench import chaos, chaos_faults
from bench.common import Database, Result, database
from config.settings import Settings

pytestmark = pytest.mark.devserver
N = 3
EXPECTED = N * chaos_faults.STEPS
TIMEOUT = 120.0


def _all_sent_once(result: Result) -> dict[str, object]:
    details = result.details
    assert (details["sent"], details["duplicated"], details["lost"]) == (EXPECTED, 0, 0), details
    assert result.figure == result.baseline == EXPECTED and result.met
    return details


@pytest.fixture
def db(
    tmp_path: Path,
    database_url: str,
    engine: Engine,
    session_factory: sessionmaker[Session],
    settings: Settings,
) -> Database:
    # The runs write their policy into the folder and name it in their rows, as the bench's own
    # database does (`practice.policy_dirs`).
    settings.practice.policy_dirs.append(tmp_path)
    return Database(tmp_path, database_url, engine, session_factory, settings)


@pytest.mark.timeout(240)
async def test_worker_killed_smoke(db: Database, dev_env: WorkflowEnvironment) -> None:
    result = await chaos_faults.worker_killed(db, N, 1.0, TIMEOUT, dev_env.client)
    details = _all_sent_once(result)
    assert details["sent_at_fault"] == EXPECTED and details["repaired"] == 0


@pytest.mark.timeout(240)
async def test_crash_restart_smoke(db: Database) -> None:
    result = await chaos_faults.crash_restart(db, N, 1.0, TIMEOUT)
    details = _all_sent_once(result)
    assert details["temporal_servers_left_by_the_kill"] == 1
    assert details["temporal_servers_after_restart"] == 1 and details["orphan_stopped"] is True
    assert details["restarted_run_exit_code"] == 0


@pytest.mark.timeout(240)
async def test_postgres_paused_smoke(tmp_path: Path, dev_env: WorkflowEnvironment) -> None:
    # Its own embedded PostgreSQL: the one it stops is nobody else's.
    async with database() as own:
        result = await chaos_faults.postgres_paused(own, N, 3.0, TIMEOUT, dev_env.client)
    details = _all_sent_once(result)
    assert details["sent_at_fault"] == 0 and details["repaired"] == EXPECTED
    path = tmp_path / "results.json"
    chaos.merge([result], path)
    entry = json.loads(path.read_text(encoding="utf-8"))["benchmarks"]["chaos_postgres_paused"]
    assert {"sent", "duplicated", "lost", "repaired"} <= set(entry["details"])
