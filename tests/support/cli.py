"""Running the ``dunning`` CLI from tests: in process (typer's runner) or as a real process."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from typer.testing import CliRunner, Result

from cli.main import app
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


async def run_dunning(
    env: dict[str, str], *args: str, timeout: float = CLI_TIMEOUT
) -> tuple[int, str]:
    """``dunning <args>`` as a real process (its exit code and combined output), with a deadline."""
    proc = await asyncio.create_subprocess_exec(
        DUNNING, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out = await communicate_within(proc, timeout, "dunning " + " ".join(args))
    return proc.returncode or 0, out.decode()
