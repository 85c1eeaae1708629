"""A property-based run of schemathesis against the running API: no input makes it fail (5xx).

The app is served by uvicorn on a free loopback port with a real worker on the dev server, and
schemathesis (its own CLI, as a CI job would run it) drives every operation of the OpenAPI
document with a billing lead's token, which may call them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest
import uvicorn
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from config.settings import Settings
from embedded.temporal import free_port
from models.orm import ApiRole
from models.orm.database import make_engine, make_session_factory
from tests.api_support import api_settings, ec_key_pair, make_tokens
from tests.support.database import migrated_database
from tests.support.waits import communicate_within, until_flag
from worker import build_worker

pytestmark = pytest.mark.devserver
SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
SERVER_START_TIMEOUT = 30.0


@pytest.fixture
def own_database(database_url: str) -> Iterator[sessionmaker[Session]]:
    """A database of its own, made by the migrations: schemathesis reads account numbers from
    responses (the worklist), and other tests' accounts belong to task queues with no worker."""
    with migrated_database(database_url, "dunning_st") as own:
        engine = make_engine(own, pool_size=5)
        try:
            yield make_session_factory(engine)
        finally:
            engine.dispose()


async def test_schemathesis_finds_no_server_error(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    own_database: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    session_factory = own_database
    _, public = ec_key_pair()
    cfg = api_settings(settings, public)
    app = create_app(cfg, session_factory, dev_env.client)
    token = make_tokens(session_factory)[ApiRole.BILLING_LEAD]
    port = free_port(18_000)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    async with build_worker(dev_env.client, cfg, session_factory):
        serve = asyncio.create_task(server.serve())
        try:
            await until_flag(
                lambda: server.started or serve.done(),
                SERVER_START_TIMEOUT,
                "uvicorn",
                lambda: repr(serve.exception()) if serve.done() else "still starting",
            )
            assert server.started, f"uvicorn stopped before serving: {serve.exception()!r}"
            proc = await asyncio.create_subprocess_exec(
                SCHEMATHESIS,
                "run",
                f"http://127.0.0.1:{port}/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "12",
                "--seed",
                "6",
                "--request-timeout",
                "20",
                "--phases",
                "examples,coverage,fuzzing",
                "--header",
                f"Authorization: Bearer {token}",
                "--report-junit-path",
                str(tmp_path / "junit.xml"),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=tmp_path,
            )
            out = await communicate_within(proc, 240, "schemathesis")
        finally:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await serve
    text = out.decode(errors="replace")
    (tmp_path.parent / "schemathesis.txt").write_text(text)
    assert proc.returncode == 0, text[-6000:]
    # It really exercised the API: every operation of the document has a test case in the report.
    tested = {
        case.get("name", "")
        for case in ElementTree.parse(tmp_path / "junit.xml").getroot().iter("testcase")
    }
    operations = {
        f"{method.upper()} {path}"
        for path, item in app.openapi()["paths"].items()
        for method in item
    }
    assert operations, "the OpenAPI document lists no operation"
    missing = {op for op in operations if not any(op in name for name in tested)}
    assert not missing, (missing, sorted(tested)[:20])
