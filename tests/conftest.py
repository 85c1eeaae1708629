"""Shared fixtures: a real PostgreSQL with the migrated schema, and real Temporal servers.

Database: ``DUNNING_TEST_DATABASE_URL`` (CI names the machine's own server) or, when unset, an
embedded server the tests start. A fresh database is created for the session and dropped after.
A database that cannot be reached fails the suite; it never skips.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from embedded.postgres import EmbeddedPostgres
from embedded.temporal import DEV_SERVER_STARTUP_TIMEOUT, dev_server_path, test_server_path
from models.orm.database import make_engine, make_session_factory
from tests.console_support import console as console  # the browser tests' fixture
from tests.support.clock import TUESDAY_MORNING
from tests.support.database import migrated_database
from tests.support.scenario import Case, StaffCase, case
from tests.support.scenario import RecordHistory as RecordHistory  # tests import it from here


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record-histories",
        action="store_true",
        help="rewrite the committed workflow histories used by the replay tests",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With ``--record-histories`` only the tests that record a history run (``make histories``)."""
    if not config.getoption("--record-histories"):
        return
    recording = [i for i in items if "record_history" in getattr(i, "fixturenames", ())]
    skipped = [i for i in items if i not in recording]
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = recording


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = os.environ.get("DUNNING_TEST_DATABASE_URL")
    embedded = None
    if not base:
        embedded = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", database="postgres")
        base = embedded.start()
    try:
        with migrated_database(base) as test_url:
            yield test_url
    finally:
        if embedded is not None:
            embedded.stop()


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url, pool_size=12)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def db_session(engine: Engine) -> Iterator[Session]:
    """A session in a transaction rolled back at the end of the test."""
    with engine.connect() as conn:
        trans = conn.begin()
        session = Session(bind=conn, join_transaction_mode="create_savepoint")
        try:
            yield session
        finally:
            session.close()
            trans.rollback()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database={"url": database_url},
        temporal={"task_queue": f"test-{uuid.uuid4().hex[:8]}"},
    )


@pytest.fixture
def cli_signed_in(monkeypatch: pytest.MonkeyPatch, session_factory: sessionmaker[Session]) -> str:
    """The CLI in this process acts as a new billing lead (who may import): their token in
    ``DUNNING_TOKEN``. Returns the token."""
    from tests.identities import signed_in

    token, _ = signed_in(session_factory, "billing_lead")
    monkeypatch.setenv("DUNNING_TOKEN", token)
    return token


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server, shared by the session's concurrency and message tests."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=dev_server_path(),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
        # The SDK's 5 s is too short on a busy machine, and one slow start of this shared server
        # would fail every dev-server test of the session.
        dev_server_startup_timeout=DEV_SERVER_STARTUP_TIMEOUT,
    )
    yield env
    await env.shutdown()


@pytest.fixture
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server for one workflow at a time (it hangs with several)."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server_path(),
        data_converter=pydantic_data_converter,
        test_server_startup_timeout=DEV_SERVER_STARTUP_TIMEOUT,
    )
    yield env
    await env.shutdown()


HISTORY_DIR = Path(__file__).parent / "histories"


@pytest.fixture
def record_history(request: pytest.FixtureRequest) -> RecordHistory:
    """Save a finished workflow's history for the replay tests, with ``--record-histories``."""

    async def record(name: str, handle: WorkflowHandle[Any, Any]) -> None:
        if not request.config.getoption("--record-histories"):
            return
        history = await handle.fetch_history()
        HISTORY_DIR.mkdir(exist_ok=True)
        (HISTORY_DIR / f"{name}.json").write_text(history.to_json(), encoding="utf-8")

    return record


@pytest.fixture
def staff_case(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    record_history: RecordHistory,
) -> StaffCase:
    """A factory of one-balance scenarios on the time-skipping server (``tests.support.scenario``):
    ``async with staff_case(policy=..., start=...) as c:``."""

    def make(
        policy: str = "staff-test", start: dt.datetime = TUESDAY_MORNING, **overrides: str
    ) -> AbstractAsyncContextManager[Case]:
        return case(
            ts_env, settings, session_factory, tmp_path, record_history, policy, start, **overrides
        )

    return make
