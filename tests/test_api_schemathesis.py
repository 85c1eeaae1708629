"""A property-based run of schemathesis against the running API: no input makes it fail (5xx).

The app is served by uvicorn on a free loopback port with a real worker on the dev server, and
schemathesis (its own CLI, as a CI job would run it) drives every operation of the OpenAPI
document with a billing lead's token, which may call them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import uvicorn
from sqlalchemy import make_url
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from config.settings import Settings
from embedded.temporal import free_port
from models.orm import ApiRole
from models.orm.database import make_engine, make_session_factory, migrate
from tests.api_support import api_settings, ec_key_pair, make_tokens
from worker import build_worker

pytestmark = pytest.mark.devserver
SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


@pytest.fixture
def own_database(database_url: str) -> Iterator[sessionmaker[Session]]:
    """A database of its own, made by the migrations: schemathesis reads account numbers from
    responses (the worklist), and other tests' accounts belong to task queues with no worker."""
    url = make_url(database_url)
    name = f"dunning_st_{uuid.uuid4().hex[:10]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    own = url.set(database=name).render_as_string(hide_password=False)
    migrate(own)
    engine = make_engine(own, pool_size=5)
    yield make_session_factory(engine)
    engine.dispose()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
            while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
                await asyncio.sleep(0.05)
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
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
        finally:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await serve
    text = out.decode(errors="replace")
    (tmp_path.parent / "schemathesis.txt").write_text(text)
    assert proc.returncode == 0, text[-6000:]
    # It really exercised the API: every operation was tested.
    assert "/accounts/{account_number}/payments" in text or "passed" in text.lower(), text[-3000:]
