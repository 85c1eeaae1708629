"""Running the ``dunning`` CLI from tests: in process (typer's runner) or as a real process."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from temporalio.client import Client
from typer.testing import CliRunner, Result

from cli.main import app
from config.settings import Settings
from tests.support.waits import communicate_within

DUNNING = str(Path(sys.executable).parent / "dunning")
CLI_TIMEOUT = 120.0

runner = CliRunner()


def invoke(*args: str) -> Result:
    """The CLI in this process, as typer's runner calls it."""
    return runner.invoke(app, list(args))


async def invoke_in_thread(*args: str) -> Result:
    """The CLI in this process, on a thread of its own: a command that runs its own event loop
    (``asyncio.run``) cannot run on the test's loop."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


def cli_env(settings: Settings, database_url: str, client: Client, **extra: str) -> dict[str, str]:
    """The environment of a ``dunning`` process that works on the test's database, data folder
    and Temporal task queue (wide output, so tables never wrap), plus ``extra``."""
    return dict(
        os.environ,
        DUNNING_DATABASE__URL=database_url,
        DUNNING_DATA_DIR=str(settings.data_dir),
        DUNNING_TEMPORAL__ADDRESS=client.service_client.config.target_host,
        DUNNING_TEMPORAL__TASK_QUEUE=settings.temporal.task_queue,
        COLUMNS="320",
        **extra,
    )


async def run_dunning(
    env: dict[str, str], *args: str, timeout: float = CLI_TIMEOUT
) -> tuple[int, str]:
    """``dunning <args>`` as a real process (its exit code and combined output), with a deadline."""
    proc = await asyncio.create_subprocess_exec(
        DUNNING, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out = await communicate_within(proc, timeout, "dunning " + " ".join(args))
    return proc.returncode or 0, out.decode()
